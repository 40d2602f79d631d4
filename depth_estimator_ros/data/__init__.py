"""Frame sources: RGB-D folders, NYU v2 .mat, rosbag2 bags and synthetic rooms.

Every source is a ``Sequence[Frame]`` with a ``name``; :func:`open_source` opens any
of them from one string, e.g. a folder path or ``"synthetic:seed=3,frames=200"``.
"""

from __future__ import annotations

import os
from pathlib import Path

from depth_estimator_ros.data.base import DataError, FrameSource, Subset, associate, split_indices, split_source
from depth_estimator_ros.data.folders import (
    DEPTH_FORMATS,
    FOLDER_LAYOUTS,
    RedwoodSource,
    RgbdFilesSource,
    SevenScenesSource,
    TumSource,
    detect_layout,
    open_folder,
    open_image_pair,
    read_depth,
    read_rgb,
)
from depth_estimator_ros.data.collection import ConcatSource, is_collection, open_rooms
from depth_estimator_ros.data.frame import Frame, Intrinsics
from depth_estimator_ros.data.nyu import NyuMatSource
from depth_estimator_ros.data.synthetic import SyntheticRooms

__all__ = [
    "DEPTH_FORMATS",
    "LAYOUTS",
    "BagSource",
    "ConcatSource",
    "DataError",
    "Frame",
    "FrameSource",
    "Intrinsics",
    "NyuMatSource",
    "RedwoodSource",
    "RgbdFilesSource",
    "SevenScenesSource",
    "Subset",
    "SyntheticRooms",
    "TumSource",
    "associate",
    "detect_layout",
    "iter_raw_messages",
    "open_image_pair",
    "open_source",
    "read_depth",
    "read_rgb",
    "split_indices",
    "split_source",
    "write_bag",
]

_ROSBAG_NAMES = ("BagSource", "bag_folder", "iter_raw_messages", "write_bag")


def __getattr__(name: str):
    # rosbag2 support needs the pip package `rosbags`, which a colcon install does not
    # declare: import it only when a bag is actually used.
    if name in _ROSBAG_NAMES:
        from depth_estimator_ros.data import rosbag

        return getattr(rosbag, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Values of ``open_source(..., layout=...)``.
LAYOUTS: tuple[str, ...] = FOLDER_LAYOUTS + ("nyu_mat", "bag", "synthetic")


def _detect(path: Path) -> str:
    if path.is_file() and path.suffix.lower() == ".mat":
        return "nyu_mat"
    if (path.is_dir() and (path / "metadata.yaml").is_file()) or (
        path.is_file() and path.suffix.lower() in (".mcap", ".db3")
    ):
        return "bag"
    return detect_layout(path)


def open_source(spec: str | os.PathLike, *, layout: str | None = None, **kwargs) -> FrameSource:
    """Open a frame source from a path or a ``synthetic:`` spec.

    Args:
        spec: one of
            - ``"synthetic:seed=3,frames=200,width=320,height=240"`` (keys of
              :class:`SyntheticRooms`; ``"synthetic"`` alone for the defaults);
            - a rosbag2 folder (with ``metadata.yaml``) or its ``.mcap`` / ``.db3`` file;
            - an NYU Depth v2 labeled ``.mat`` file;
            - a 7-Scenes, TUM RGB-D or Redwood folder;
            - a folder of such folders (``rooms/``): all of them, one after the other;
            - a single colour image whose depth image sits beside it.
        layout: force one of :data:`LAYOUTS` instead of detecting it.
        **kwargs: passed to the source class (e.g. ``max_dt`` for TUM and bags,
            ``raw_depth`` for NYU, ``depth_format`` for a single image).

    Returns:
        The frame source.

    Raises:
        ValueError: unknown ``layout``.
        DataError: the path is missing, its layout cannot be told, or its content is unusable.
    """
    text = os.fspath(spec)
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    if layout == "synthetic" or (layout is None and (text == "synthetic" or text.startswith("synthetic:"))):
        return SyntheticRooms.from_spec(text.partition(":")[2] if text.startswith("synthetic") else text, **kwargs)
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if layout is None and is_collection(path):
        return ConcatSource(open_rooms(path), name=path.name)
    layout = layout or _detect(path)
    if layout == "nyu_mat":
        return NyuMatSource(path, **kwargs)
    if layout == "bag":
        from depth_estimator_ros.data.rosbag import BagSource, bag_folder

        return BagSource(bag_folder(path), **kwargs)
    return open_folder(path, layout, **kwargs)
