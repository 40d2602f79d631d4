"""The unit every frame source yields: an RGB image, its sensor depth and metadata."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Intrinsics", "Frame"]


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
