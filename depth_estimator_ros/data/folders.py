"""RGB-D frames from image files: 7-Scenes, TUM RGB-D and Redwood/Open3D folders, single pairs.

Depth file formats (``depth_format``), all 16-bit single-channel images:

- ``"mm"``: millimetres (7-Scenes, Redwood, most RealSense/Kinect recorders);
  0 and 65535 invalid.
- ``"tum"``: TUM RGB-D, value / 5000 = metres; 0 and 65535 invalid.
- ``"sun"``: SUN RGB-D, bits rotated: ``(v >> 3) | (v << 13)`` gives millimetres; 0 invalid.
- ``"nyu_raw"``: NYU Depth v2 raw Kinect frames (``.pgm``). The stored bytes are
  swapped relative to the PGM header's byte order; after swapping them back the
  11-bit Kinect disparity ``r`` converts with the NYU toolbox formula
  ``351.3 / (1092.5 - r)`` metres. The toolbox clamps the result to [0, 10] m;
  here depths outside (0, 10] m (including the Kinect's "no return" 2047) are NaN.

Error policy: structural problems (a colour image without its depth, an empty or
unparsable list file, a missing folder) stop with :class:`DataError` when the
source is opened; a file that turns out unreadable, 8-bit, multi-channel or of a
size different from its colour image raises :class:`DataError` naming the file
when that frame is loaded. Nothing is skipped silently: TUM colour images with no
depth within the association tolerance are left out and counted in
:attr:`TumSource.unmatched`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from depth_estimator_ros.data.base import DataError, FrameSource, associate
from depth_estimator_ros.data.frame import Frame, Intrinsics

__all__ = [
    "DEPTH_FORMATS",
    "FOLDER_LAYOUTS",
    "read_rgb",
    "read_depth",
    "read_intrinsics_matrix",
    "RgbdFilesSource",
    "SevenScenesSource",
    "TumSource",
    "RedwoodSource",
    "open_image_pair",
    "detect_layout",
    "open_folder",
]

DEPTH_FORMATS: tuple[str, ...] = ("mm", "tum", "sun", "nyu_raw")
FOLDER_LAYOUTS: tuple[str, ...] = ("7scenes", "tum", "redwood", "image")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp", ".tif", ".tiff")

# Default pinhole models (640x480) where a dataset ships none.
SEVEN_SCENES_INTRINSICS = Intrinsics(585.0, 585.0, 320.0, 240.0, 640, 480)
KINECT_DEFAULT_INTRINSICS = Intrinsics(525.0, 525.0, 319.5, 239.5, 640, 480)
# NYU Depth v2 colour camera (toolbox camera_params.m)
NYU_INTRINSICS = Intrinsics(518.8579, 519.4696, 325.5824, 253.7362, 640, 480)

_SEVEN_SCENES_COLOR = re.compile(r"^(frame-\d+)\.color\.(png|jpg|jpeg)$")


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read a colour image file.

    Args:
        path: any image OpenCV reads (png, jpg, ppm, ...); grey images are expanded.

    Returns:
        ``(H, W, 3)`` uint8 RGB.

    Raises:
        DataError: the file is missing or cannot be decoded.
    """
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if image is None:
        reason = "file not found" if not os.path.exists(path) else "not a readable image"
        raise DataError(f"{path}: {reason}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_depth(path: str | os.PathLike, depth_format: str = "mm") -> np.ndarray:
    """Read a 16-bit depth image file and convert it to metres.

    Args:
        path: 16-bit single-channel png / pgm / tif.
        depth_format: one of :data:`DEPTH_FORMATS` (see the module docstring).

    Returns:
        ``(H, W)`` float32 metres, NaN invalid.

    Raises:
        ValueError: unknown ``depth_format``.
        DataError: the file is missing, unreadable, not 16-bit or not single-channel.
    """
    if depth_format not in DEPTH_FORMATS:
        raise ValueError(f"unknown depth_format {depth_format!r}; expected one of {', '.join(DEPTH_FORMATS)}")
    raw = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        reason = "file not found" if not os.path.exists(path) else "not a readable image"
        raise DataError(f"{path}: {reason}")
    if raw.ndim != 2:
        raise DataError(f"{path}: depth image has {raw.shape[2]} channels, expected 1")
    if raw.dtype != np.uint16:
        bits = raw.dtype.itemsize * 8
        raise DataError(f"{path}: depth image is {bits}-bit {raw.dtype}, expected 16-bit (uint16)")
    if depth_format == "nyu_raw":
        disparity = raw.byteswap().astype(np.float32)
        depth = np.float32(351.3) / (np.float32(1092.5) - disparity)
        depth[~((depth > 0) & (depth <= 10.0))] = np.nan
        return depth
    if depth_format == "sun":
        raw = (raw >> 3) | (raw << 13)
    depth = raw.astype(np.float32)
    depth *= np.float32(1.0 / 5000.0 if depth_format == "tum" else 0.001)
    invalid = raw == 0
    if depth_format != "sun":
        invalid |= raw == 65535
    depth[invalid] = np.nan
    return depth


def read_intrinsics_matrix(path: str | os.PathLike, width: int, height: int) -> Intrinsics:
    """Read a 3x3 camera matrix text file (7-Scenes ``camera-intrinsics.txt``).

    Raises:
        DataError: the file does not hold a 3x3 matrix of numbers.
    """
    try:
        matrix = np.loadtxt(os.fspath(path), dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read a camera matrix ({exc})") from exc
    if matrix.shape != (3, 3) or matrix[0, 0] <= 0 or matrix[1, 1] <= 0:
        raise DataError(f"{path}: expected a 3x3 camera matrix with positive focal lengths, got {matrix.shape}")
    return Intrinsics(
        fx=float(matrix[0, 0]), fy=float(matrix[1, 1]), cx=float(matrix[0, 2]), cy=float(matrix[1, 2]),
        width=int(width), height=int(height),
    )


def _image_size(path: Path) -> tuple[int, int]:
    """Return ``(width, height)`` of a colour image file."""
    rgb = read_rgb(path)
    return rgb.shape[1], rgb.shape[0]


class RgbdFilesSource(FrameSource):
    """Frames from explicit (colour file, depth file) pairs.

    The building block of the folder layouts; use it directly for a custom list.
    """

    def __init__(
        self,
        pairs: Sequence[tuple[str | os.PathLike, str | os.PathLike | None]],
        *,
        depth_format: str = "mm",
        stamps: Sequence[float] | None = None,
        rate_hz: float = 30.0,
        intrinsics: Intrinsics | None = None,
        name: str = "",
    ) -> None:
        """Describe the frames; no image is read here.

        Args:
            pairs: ``(colour path, depth path or None)`` per frame, in stream order.
            depth_format: one of :data:`DEPTH_FORMATS`.
            stamps: seconds per frame; defaults to ``index / rate_hz``.
            rate_hz: frame rate used when ``stamps`` is None.
            intrinsics: intrinsics of the colour images, when known.
            name: source name used in messages.

        Raises:
            ValueError: unknown ``depth_format``, non-positive ``rate_hz`` or
                ``stamps`` of the wrong length.
            DataError: ``pairs`` is empty.
        """
        if depth_format not in DEPTH_FORMATS:
            raise ValueError(f"unknown depth_format {depth_format!r}; expected one of {', '.join(DEPTH_FORMATS)}")
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.pairs = [(Path(c), None if d is None else Path(d)) for c, d in pairs]
        if not self.pairs:
            raise DataError(f"{name or 'RGB-D files'}: no frames")
        if stamps is None:
            self.stamps = [i / rate_hz for i in range(len(self.pairs))]
        else:
            if len(stamps) != len(self.pairs):
                raise ValueError(f"got {len(stamps)} stamps for {len(self.pairs)} frames")
            self.stamps = [float(s) for s in stamps]
        self.depth_format = depth_format
        self.intrinsics = intrinsics
        self.name = name or str(self.pairs[0][0].parent)

    def __len__(self) -> int:
        return len(self.pairs)

    def _load(self, index: int) -> Frame:
        color_path, depth_path = self.pairs[index]
        rgb = read_rgb(color_path)
        depth = None
        if depth_path is not None:
            depth = read_depth(depth_path, self.depth_format)
            if depth.shape != rgb.shape[:2]:
                raise DataError(
                    f"{depth_path}: depth is {depth.shape[1]}x{depth.shape[0]} but its colour image "
                    f"{color_path.name} is {rgb.shape[1]}x{rgb.shape[0]}"
                )
        intrinsics = self.intrinsics
        if intrinsics is not None and (intrinsics.width, intrinsics.height) != (rgb.shape[1], rgb.shape[0]):
            intrinsics = intrinsics.scaled(rgb.shape[1], rgb.shape[0])
        return Frame(rgb=rgb, depth=depth, stamp=self.stamps[index], intrinsics=intrinsics, name=str(color_path))


def _require_dir(root: str | os.PathLike) -> Path:
    path = Path(root)
    if not path.is_dir():
        raise DataError(f"{path}: not a folder")
    return path


class SevenScenesSource(RgbdFilesSource):
    """A 7-Scenes sequence folder: ``frame-NNNNNN.color.jpg`` + ``frame-NNNNNN.depth.png`` (mm).

    Stamps are ``index / rate_hz`` (the Kinect's 30 Hz); intrinsics come from
    ``camera-intrinsics.txt`` when present, else the dataset's documented
    fx = fy = 585, cx = 320, cy = 240.
    """

    def __init__(self, root: str | os.PathLike, *, rate_hz: float = 30.0, intrinsics: Intrinsics | None = None) -> None:
        """Index the folder.

        Raises:
            DataError: not a folder, no ``frame-*.color.*`` files, or a colour
                image without its ``.depth.png``.
        """
        root = _require_dir(root)
        names = sorted(os.listdir(root))
        present = set(names)
        pairs = []
        for file_name in names:
            match = _SEVEN_SCENES_COLOR.match(file_name)
            if match is None:
                continue
            depth_name = f"{match.group(1)}.depth.png"
            if depth_name not in present:
                raise DataError(f"{root / file_name}: missing depth image {depth_name}")
            pairs.append((root / file_name, root / depth_name))
        if not pairs:
            raise DataError(f"{root}: no 7-Scenes frames (frame-NNNNNN.color.jpg)")
        if intrinsics is None:
            width, height = _image_size(pairs[0][0])
            matrix = root / "camera-intrinsics.txt"
            if matrix.is_file():
                intrinsics = read_intrinsics_matrix(matrix, width, height)
            else:
                intrinsics = SEVEN_SCENES_INTRINSICS.scaled(width, height)
        super().__init__(pairs, depth_format="mm", rate_hz=rate_hz, intrinsics=intrinsics, name=root.name)


def _read_tum_list(path: Path) -> list[tuple[float, str]]:
    """Parse a TUM ``rgb.txt`` / ``depth.txt``: ``timestamp filename`` lines, ``#`` comments."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        try:
            entries.append((float(fields[0]), fields[1]))
        except (IndexError, ValueError):
            raise DataError(f"{path}:{number}: expected 'timestamp filename', got {line!r}") from None
    if not entries:
        raise DataError(f"{path}: no entries")
    return entries


class TumSource(RgbdFilesSource):
    """A TUM RGB-D sequence: ``rgb.txt`` + ``depth.txt`` lists, depth PNG value / 5000 = metres.

    Colour and depth are associated one-to-one by nearest timestamp within
    ``max_dt`` like TUM's ``associate.py``; colour images left without depth are
    not loaded and counted in :attr:`unmatched`. Stamps are the colour stamps.
    """

    unmatched: int
    """Colour images of ``rgb.txt`` with no depth image within ``max_dt``."""

    def __init__(
        self, root: str | os.PathLike, *, max_dt: float = 0.02, intrinsics: Intrinsics | None = None
    ) -> None:
        """Read the lists and associate them.

        Args:
            root: the sequence folder.
            max_dt: association tolerance in seconds (``associate.py`` default 0.02).
            intrinsics: defaults to TUM's ROS default 525/525/319.5/239.5 at 640x480.

        Raises:
            DataError: a list is missing or malformed, a listed file is missing,
                or no colour image has a depth image within ``max_dt``.
        """
        root = _require_dir(root)
        if not max_dt > 0:
            raise ValueError(f"max_dt must be > 0 s, got {max_dt}")
        rgb_list = _read_tum_list(root / "rgb.txt")
        depth_list = _read_tum_list(root / "depth.txt")
        for list_name, entries in (("rgb.txt", rgb_list), ("depth.txt", depth_list)):
            for _, file_name in entries:
                if not (root / file_name).is_file():
                    raise DataError(f"{root / list_name}: listed file {file_name} not found")
        matches = associate([s for s, _ in rgb_list], [s for s, _ in depth_list], max_dt)
        if not matches:
            raise DataError(f"{root}: no colour image has a depth image within {max_dt} s")
        self.unmatched = len(rgb_list) - len(matches)
        pairs = [(root / rgb_list[i][1], root / depth_list[j][1]) for i, j in matches]
        stamps = [rgb_list[i][0] for i, _ in matches]
        if intrinsics is None:
            width, height = _image_size(pairs[0][0])
            intrinsics = KINECT_DEFAULT_INTRINSICS.scaled(width, height)
        super().__init__(pairs, depth_format="tum", stamps=stamps, intrinsics=intrinsics, name=root.name)


class RedwoodSource(RgbdFilesSource):
    """A Redwood / Open3D folder: ``color/`` + ``depth/`` (mm), optional ``rgbd.match``.

    ``rgbd.match`` lines are ``depth/NNNNN.png color/NNNNN.jpg``; without it,
    colour and depth pair by file stem. Stamps are ``index / rate_hz``.
    """

    def __init__(self, root: str | os.PathLike, *, rate_hz: float = 30.0, intrinsics: Intrinsics | None = None) -> None:
        """Index the folder.

        Raises:
            DataError: a sub-folder or matched file is missing, ``rgbd.match`` is
                malformed, or a colour image has no depth image of the same stem.
        """
        root = _require_dir(root)
        match_file = root / "rgbd.match"
        pairs: list[tuple[Path, Path]] = []
        if match_file.is_file():
            for number, line in enumerate(match_file.read_text().splitlines(), start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2:
                    raise DataError(f"{match_file}:{number}: expected 'depth_file color_file', got {line!r}")
                depth_path, color_path = root / fields[0], root / fields[1]
                for path in (color_path, depth_path):
                    if not path.is_file():
                        raise DataError(f"{match_file}:{number}: {path} not found")
                pairs.append((color_path, depth_path))
        else:
            color_dir, depth_dir = root / "color", root / "depth"
            for folder in (color_dir, depth_dir):
                if not folder.is_dir():
                    raise DataError(f"{folder}: folder not found")
            depth_by_stem = {p.stem: p for p in depth_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
            for color_path in sorted(p for p in color_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                depth_path = depth_by_stem.get(color_path.stem)
                if depth_path is None:
                    raise DataError(f"{color_path}: missing depth image depth/{color_path.stem}.png")
                pairs.append((color_path, depth_path))
        if not pairs:
            raise DataError(f"{root}: no colour images")
        if intrinsics is None:
            width, height = _image_size(pairs[0][0])
            intrinsics = KINECT_DEFAULT_INTRINSICS.scaled(width, height)
        super().__init__(pairs, depth_format="mm", rate_hz=rate_hz, intrinsics=intrinsics, name=root.name)


_PREFIX_FORMATS = {"tum": "tum", "sun": "sun", "nyu": "nyu_raw"}


def open_image_pair(
    color: str | os.PathLike,
    depth: str | os.PathLike | None = None,
    *,
    depth_format: str | None = None,
    intrinsics: Intrinsics | None = None,
) -> RgbdFilesSource:
    """Open one colour image and its depth image as a one-frame source.

    Args:
        color: colour image file.
        depth: depth image file; by default the file whose name is the colour
            file's with ``color`` replaced by ``depth`` (any image suffix).
        depth_format: one of :data:`DEPTH_FORMATS`; by default taken from a
            ``TUM_`` / ``SUN_`` / ``NYU_`` file name prefix or a ``.pgm`` depth
            file (``nyu_raw``), else it must be given.
        intrinsics: of the colour image; by default the dataset's usual model
            (NYU colour camera for NYU, Kinect 525 px otherwise).

    Raises:
        DataError: the depth file cannot be found or the format cannot be told.
    """
    color = Path(color)
    if not color.is_file():
        raise DataError(f"{color}: file not found")
    if depth is None:
        if "color" not in color.name:
            raise DataError(f"{color}: cannot find its depth image (no 'color' in the name); pass depth=")
        base = color.name.replace("color", "depth").rsplit(".", 1)[0]
        found = [color.with_name(base + suffix) for suffix in IMAGE_SUFFIXES if color.with_name(base + suffix).is_file()]
        if not found:
            raise DataError(f"{color}: missing depth image {base}.png (or .pgm/.tif)")
        depth = found[0]
    depth = Path(depth)
    if depth_format is None:
        prefix = color.name.split("_", 1)[0].lower()
        depth_format = _PREFIX_FORMATS.get(prefix, "nyu_raw" if depth.suffix.lower() == ".pgm" else None)
        if depth_format is None:
            raise DataError(f"{depth}: cannot tell the depth format; pass depth_format= one of {', '.join(DEPTH_FORMATS)}")
    if intrinsics is None:
        width, height = _image_size(color)
        model = NYU_INTRINSICS if depth_format == "nyu_raw" else KINECT_DEFAULT_INTRINSICS
        intrinsics = model.scaled(width, height)
    return RgbdFilesSource(
        [(color, depth)], depth_format=depth_format, intrinsics=intrinsics, name=color.stem
    )


def detect_layout(path: str | os.PathLike) -> str:
    """Tell the layout of an RGB-D folder or image file.

    Returns:
        ``"tum"`` (``rgb.txt`` + ``depth.txt``), ``"7scenes"`` (``frame-*.color.*``),
        ``"redwood"`` (``color/`` + ``depth/`` or ``rgbd.match``) or ``"image"``
        (a single colour image file).

    Raises:
        DataError: the path is missing or matches no layout.
    """
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return "image"
        raise DataError(f"{path}: not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder")
    if (path / "rgb.txt").is_file() and (path / "depth.txt").is_file():
        return "tum"
    if any(_SEVEN_SCENES_COLOR.match(name) for name in os.listdir(path)):
        return "7scenes"
    if (path / "rgbd.match").is_file() or ((path / "color").is_dir() and (path / "depth").is_dir()):
        return "redwood"
    raise DataError(
        f"{path}: unknown RGB-D folder layout; expected rgb.txt + depth.txt (TUM), "
        "frame-NNNNNN.color.jpg + .depth.png (7-Scenes) or color/ + depth/ (Redwood)"
    )


def open_folder(path: str | os.PathLike, layout: str | None = None, **kwargs) -> RgbdFilesSource:
    """Open an RGB-D folder (or a single colour image) in the given or detected layout.

    Args:
        path: the folder or image file.
        layout: one of :data:`FOLDER_LAYOUTS`; detected when None.
        **kwargs: passed to the layout's source class.

    Raises:
        ValueError: unknown ``layout``.
        DataError: as the layout's source class.
    """
    if layout is None:
        layout = detect_layout(path)
    if layout == "7scenes":
        return SevenScenesSource(path, **kwargs)
    if layout == "tum":
        return TumSource(path, **kwargs)
    if layout == "redwood":
        return RedwoodSource(path, **kwargs)
    if layout == "image":
        return open_image_pair(path, **kwargs)
    raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(FOLDER_LAYOUTS)}")
