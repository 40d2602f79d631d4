"""The unit every frame source yields: an RGB image, its sensor depth and metadata."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Intrinsics", "Frame", "MIN_FOV_DEG", "MAX_FOV_DEG", "MAX_PIXEL_ASPECT", "MIN_CALIBRATED_SIDE",
           "MAX_CALIBRATED_SIDE", "check_intrinsics"]

#: Narrowest and widest horizontal field of view a calibration may describe, degrees:
#: ``fx`` in ``[width / (2 tan 85 deg), width / (2 tan 5 deg)]`` = ``[0.0437, 5.72] x width``.
#: Beyond them lie telescopes and fisheyes this pinhole model does not describe, or a broken driver.
MIN_FOV_DEG = 10.0
MAX_FOV_DEG = 170.0
#: Largest ``fy / fx`` (and ``fx / fy``): square pixels give 1; anamorphic optics stay well inside 2.
MAX_PIXEL_ASPECT = 2.0
#: Smallest and largest image side, pixels, a calibration may be for (the largest keeps
#: ``fx * fy`` far from overflowing; the fuzz tests found 1e307-pixel sides).
MIN_CALIBRATED_SIDE = 16
MAX_CALIBRATED_SIDE = 65536


def check_intrinsics(fx: float, fy: float, cx: float, cy: float, width: int, height: int) -> "Intrinsics":
    """Return the :class:`Intrinsics` of a calibration when they are plausible, else raise with the reason.

    Plausible: every number finite; ``width`` and ``height`` whole numbers of
    :data:`MIN_CALIBRATED_SIDE` to :data:`MAX_CALIBRATED_SIDE` pixels; a horizontal field of view ``2 atan(width / (2 fx))``
    between :data:`MIN_FOV_DEG` and :data:`MAX_FOV_DEG`; ``fy / fx`` within
    ``[1 / MAX_PIXEL_ASPECT, MAX_PIXEL_ASPECT]``; the principal point inside the image
    (``cx`` in ``[-0.5, width - 0.5]``, ``cy`` in ``[-0.5, height - 0.5]``, pixel-centre
    convention). The one check both nodes and the replay buffer use.

    Args:
        fx, fy: focal lengths, pixels.
        cx, cy: principal point, pixels.
        width, height: the image size the calibration is for, pixels.

    Raises:
        ValueError: the first check that fails, with the allowed range.
    """
    try:
        numbers = [float(v) for v in (fx, fy, cx, cy, width, height)]
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"intrinsics must be numbers, got {(fx, fy, cx, cy, width, height)!r}") from exc
    fx, fy, cx, cy, w, h = numbers
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError(f"intrinsics must be finite, got fx={fx} fy={fy} cx={cx} cy={cy} size={w}x{h}")
    if w != int(w) or h != int(h) or min(w, h) < MIN_CALIBRATED_SIDE or max(w, h) > MAX_CALIBRATED_SIDE:
        raise ValueError(f"calibrated image size must be whole pixels, {MIN_CALIBRATED_SIDE}-{MAX_CALIBRATED_SIDE} "
                         f"per side, got {w:g}x{h:g}")
    low = w / (2.0 * math.tan(math.radians(MAX_FOV_DEG) / 2.0))
    high = w / (2.0 * math.tan(math.radians(MIN_FOV_DEG) / 2.0))
    if not low <= fx <= high:
        raise ValueError(f"fx must give a horizontal field of view of {MIN_FOV_DEG:g}-{MAX_FOV_DEG:g} degrees: "
                         f"{low:.4g}-{high:.4g} px at width {w:g}, got {fx:g}")
    if not 1.0 / MAX_PIXEL_ASPECT <= fy / fx <= MAX_PIXEL_ASPECT:
        raise ValueError(f"fy / fx must be within {1 / MAX_PIXEL_ASPECT:g}-{MAX_PIXEL_ASPECT:g}, "
                         f"got fx={fx:g} fy={fy:g}")
    if not (-0.5 <= cx <= w - 0.5 and -0.5 <= cy <= h - 0.5):
        raise ValueError(f"principal point must lie inside the {w:g}x{h:g} image, got ({cx:g}, {cy:g})")
    return Intrinsics(fx=fx, fy=fy, cx=cx, cy=cy, width=int(w), height=int(h))


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of ``width`` x ``height``."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @property
    def normalized_focal(self) -> float:
        """Return ``sqrt(fx * fy / (width * height))``: the focal length in units of the image side.

        It is the same at every resolution of one camera and grows when the image is
        cropped (a narrower field of view); the models' camera-aware output uses it.
        """
        return float((self.fx * self.fy / (self.width * self.height)) ** 0.5)

    def cropped(self, left: int, top: int, width: int, height: int) -> "Intrinsics":
        """Return the intrinsics of the ``width`` x ``height`` window at ``(left, top)``."""
        if width <= 0 or height <= 0:
            raise ValueError(f"crop size must be positive, got {width}x{height}")
        return Intrinsics(fx=self.fx, fy=self.fy, cx=self.cx - left, cy=self.cy - top,
                          width=int(width), height=int(height))

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """Return the intrinsics of the same camera resized to ``width`` x ``height``."""
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        sx, sy = width / self.width, height / self.height
        return Intrinsics(
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5,
            cy=(self.cy + 0.5) * sy - 0.5,
            width=int(width),
            height=int(height),
        )


@dataclass
class Frame:
    """One RGB image with its (optional) sensor depth.

    Attributes:
        rgb: ``(H, W, 3)`` uint8, RGB channel order.
        depth: ``(H, W)`` float32 metres with NaN for invalid pixels, or ``None``
            when no depth sensor is available. It may differ in size from ``rgb``
            only where a source says so; consumers resize with
            :func:`depth_estimator_ros.learning.transforms.resize_depth`.
        stamp: capture time in seconds.
        intrinsics: intrinsics of the RGB image, when known.
        name: where the frame came from, used in messages.
    """

    rgb: np.ndarray
    depth: np.ndarray | None
    stamp: float
    intrinsics: Intrinsics | None = None
    name: str = ""

    def __post_init__(self) -> None:
        rgb = self.rgb
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(
                f"Frame {self.name!r}: rgb must be a (H, W, 3) uint8 array, got "
                f"{getattr(rgb, 'dtype', type(rgb).__name__)} {getattr(rgb, 'shape', '')}"
            )
        if rgb.shape[0] == 0 or rgb.shape[1] == 0:
            raise ValueError(f"Frame {self.name!r}: rgb is empty ({rgb.shape})")
        if self.depth is not None:
            depth = self.depth
            if not isinstance(depth, np.ndarray) or depth.ndim != 2 or depth.dtype != np.float32:
                raise ValueError(
                    f"Frame {self.name!r}: depth must be a (H, W) float32 array in metres, got "
                    f"{getattr(depth, 'dtype', type(depth).__name__)} {getattr(depth, 'shape', '')}"
                )

    @property
    def nbytes(self) -> int:
        """Memory held by the image arrays, in bytes."""
        return int(self.rgb.nbytes + (0 if self.depth is None else self.depth.nbytes))
