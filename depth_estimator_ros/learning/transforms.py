"""Image/depth transforms for training and inference: crop, resize, seed 1 augmentation, batching.

RGB leaves this module as float32 in ``[0, 1]`` (ImageNet normalisation happens inside
the models) and depth as float32 metres with NaN for every invalid pixel.

Depth is never resampled by mixing valid and invalid pixels. :func:`resize_depth` and
the rotation in :func:`augment` use a *mask-weighted average*: the interpolation is run
on the depth with invalid pixels set to 0 and, separately, on the validity mask; each
output pixel is the ratio of the two (so only valid source pixels contribute, each
with its interpolation weight) and is valid only where at least ``min_valid`` of its
interpolation weight fell on valid source pixels. A NaN hole therefore never bleeds a
value into its neighbours and a valid value is never pulled toward 0 or NaN; valid
neighbours on either side of a depth edge are still averaged with each other, as any
resize of a depth map does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from depth_estimator_ros.data.frame import Frame
from depth_estimator_ros.models.base import CANONICAL_FOCAL

__all__ = [
    "MAX_ROTATION_DEG",
    "COLOR_SCALE",
    "border_crop",
    "resize_rgb",
    "resize_depth",
    "to_float_rgb",
    "augment",
    "frame_focal",
    "random_zoom",
    "to_tensor_batch",
]

#: Seed 1: "rotation angle ranging from -5 degrees to 5 degrees".
MAX_ROTATION_DEG = 5.0
#: Seed 1: "multiply each color channel by constants ranging from .95 to 1.05".
COLOR_SCALE = (0.95, 1.05)


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise TypeError(f"size must be a (height, width) pair of ints, got {size!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive (height, width), got {size!r}")
    return h, w


def border_crop(rgb: np.ndarray, depth: np.ndarray | None, px: int = 10) -> tuple[np.ndarray, np.ndarray | None]:
    """Cut ``px`` pixels off every border of an RGB image and its depth (seed 1: 10 px).

    Registered RGB-D pairs often have invalid borders. A depth map of another size
    than the RGB image loses the same fraction of its size.

    Args:
        rgb: ``(H, W, 3)`` image.
        depth: ``(h, w)`` depth in metres, or ``None``.
        px: pixels to remove from each of the four RGB borders; 0 returns the inputs.

    Returns:
        ``(rgb[px:-px, px:-px], depth cropped alike)`` as views, not copies.
    """
    if px < 0:
        raise ValueError(f"border crop must be >= 0 pixels, got {px}")
    if px == 0:
        return rgb, depth
    h, w = rgb.shape[:2]
    if 2 * px >= min(h, w):
        raise ValueError(f"border crop of {px} px leaves nothing of a {w}x{h} image")
    rgb = rgb[px : h - px, px : w - px]
    if depth is not None:
        dh, dw = depth.shape
        py, pxx = round(px * dh / h), round(px * dw / w)
        depth = depth[py : dh - py, pxx : dw - pxx]
    return rgb, depth


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB image (area averaging when shrinking, bilinear when enlarging).

    Shrinking by a factor of 2 or more first averages whole ``k x k`` blocks (the largest
    ``k`` up to the factor that divides both sides; OpenCV's fast integer area path),
    then finishes the remaining factor bilinearly when it is below 2 (area otherwise):
    several times faster than a direct area resize with a non-integer factor such as
    640x480 -> 256x192 and close to it in grey levels (README, pipeline section).

    Args:
        rgb: ``(H, W, 3)`` uint8 or float32 image.
        size: output ``(height, width)``.

    Returns:
        ``(height, width, 3)`` image of the input's dtype (the input itself if the
        size already matches).
    """
    h, w = _check_size(size)
    src_h, src_w = rgb.shape[:2]
    if (src_h, src_w) == (h, w):
        return rgb
    if h * w >= src_h * src_w:
        return cv2.resize(rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    factor = min(src_h / h, src_w / w)
    block = _block_factor(src_h, src_w, factor)
    if block > 1:
        rgb = cv2.resize(rgb, (src_w // block, src_h // block), interpolation=cv2.INTER_AREA)
        if rgb.shape[:2] == (h, w):
            return rgb
    # what is left of the factor: bilinear below 2 (every source pixel still counts), else area
    rest = cv2.INTER_LINEAR if factor / block < 2 else cv2.INTER_AREA
    return cv2.resize(rgb, (w, h), interpolation=rest)


def _block_factor(height: int, width: int, factor: float) -> int:
    """Return the largest integer ``k <= factor`` dividing both sides (1 when none does)."""
    for k in range(int(factor), 1, -1):
        if height % k == 0 and width % k == 0:
            return k
    return 1


def _masked_resample(
    depth: np.ndarray, resample: Callable[[np.ndarray], np.ndarray], min_valid: float
) -> np.ndarray:
    """Apply a linear resampling to depth as a mask-weighted average (see the module docstring)."""
    if not 0.0 < min_valid <= 1.0:
        raise ValueError(f"min_valid must be in (0, 1], got {min_valid}")
    depth = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
    weight = resample(valid.astype(np.float32))
    total = resample(np.where(valid, depth, np.float32(0)))
    ok = weight >= min_valid
    out = np.full(weight.shape, np.nan, dtype=np.float32)
    np.divide(total, weight, out=out, where=ok)
    return out


def resize_depth(depth: np.ndarray, size: tuple[int, int], *, min_valid: float = 0.5) -> np.ndarray:
    """Resize depth without ever mixing valid and invalid pixels (mask-weighted average).

    Area averaging when shrinking, bilinear when enlarging, both applied as a
    mask-weighted average: an output pixel is the weighted mean of the *valid* source
    pixels under it, and NaN unless at least ``min_valid`` of its weight is valid.

    Args:
        depth: ``(H, W)`` metres; NaN, 0 and negative values are invalid.
        size: output ``(height, width)``.
        min_valid: smallest valid weight fraction for an output pixel to be valid.

    Returns:
        ``(height, width)`` float32 metres, NaN invalid (a new array, also when the
        size is unchanged, with every invalid value turned into NaN).
    """
    h, w = _check_size(size)
    if depth.ndim != 2:
        raise ValueError(f"depth must be (H, W), got shape {depth.shape}")
    if depth.shape == (h, w):
        return _masked_resample(depth, lambda img: img, min_valid)
    shrink = h * w < depth.shape[0] * depth.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return _masked_resample(depth, lambda img: cv2.resize(img, (w, h), interpolation=interp), min_valid)


def to_float_rgb(rgb: np.ndarray) -> np.ndarray:
    """Convert a uint8 RGB image to float32 in ``[0, 1]``.

    Args:
        rgb: ``(H, W, 3)`` uint8.

    Returns:
        ``(H, W, 3)`` float32 in ``[0, 1]``.
    """
    if rgb.dtype != np.uint8:
        raise TypeError(f"rgb must be uint8, got {rgb.dtype}")
    return rgb.astype(np.float32) * np.float32(1.0 / 255.0)


def augment(
    rgb: np.ndarray,
    depth: np.ndarray,
    rng: np.random.Generator,
    *,
    rotate_p: float = 0.5,
    color_p: float = 0.5,
    flip_p: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply seed 1's augmentation to one RGB-D pair, identically to image and depth.

    Each step is drawn independently from ``rng``: a rotation by an angle uniform in
    ±5° about the image centre (probability ``rotate_p``), a per-channel colour scale
    uniform in [0.95, 1.05] (probability ``color_p``) and a horizontal flip
    (probability ``flip_p``). Seed 1 augments "randomly selected images" without
    giving the fraction; 0.5 each is this project's choice. The rotated RGB
    reflects at the borders; the rotated depth is resampled mask-weighted and is NaN
    wherever it came from outside the image or from invalid pixels, so the loss
    ignores those pixels.

    Args:
        rgb: ``(H, W, 3)`` float32 in ``[0, 1]``.
        depth: ``(H, W)`` float32 metres, NaN invalid.
        rng: the random generator (seeded by the caller).
        rotate_p: probability of a rotation.
        color_p: probability of a colour scale.
        flip_p: probability of a horizontal flip.

    Returns:
        ``(rgb, depth)`` of the input shapes and dtypes (new arrays, or the inputs
        when no step was drawn).
    """
    if rgb.dtype != np.float32 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise TypeError(f"rgb must be a (H, W, 3) float32 array in [0, 1], got {rgb.dtype} {rgb.shape}")
    if depth.shape != rgb.shape[:2]:
        raise ValueError(f"depth {depth.shape} must match the rgb size {rgb.shape[:2]}")
    for name, p in (("rotate_p", rotate_p), ("color_p", color_p), ("flip_p", flip_p)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    # Draw every number whether or not it is used, so one pair's choices never shift
    # the random stream of the next one.
    do_rotate, do_color, do_flip = rng.random(3) < (rotate_p, color_p, flip_p)
    angle = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    scale = rng.uniform(*COLOR_SCALE, size=3).astype(np.float32)
    h, w = depth.shape
    if do_rotate:
        matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(angle), 1.0)
        rgb = cv2.warpAffine(rgb, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)

        def rotate(img: np.ndarray) -> np.ndarray:
            return cv2.warpAffine(
                img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0
            )

        depth = _masked_resample(depth, rotate, 0.5)
    if do_color:
        rgb = np.clip(rgb * scale, 0.0, 1.0)
    if do_flip:
        rgb = np.ascontiguousarray(rgb[:, ::-1])
        depth = np.ascontiguousarray(depth[:, ::-1])
    return rgb, depth


def frame_focal(frame: Frame, border_crop: int = 0) -> float:
    """Return the normalised focal length of ``frame``'s RGB image (after a border crop).

    Args:
        frame: a frame; without intrinsics it is taken to be the canonical camera.
        border_crop: pixels cut from every border (a crop narrows the field of view).

    Returns:
        ``sqrt(fx * fy / (W * H))`` (:data:`~depth_estimator_ros.models.base.CANONICAL_FOCAL`
        when the frame has no intrinsics).
    """
    k = frame.intrinsics
    if k is None:
        return CANONICAL_FOCAL
    if border_crop:
        k = k.cropped(border_crop, border_crop, k.width - 2 * border_crop, k.height - 2 * border_crop)
    return k.normalized_focal


def random_zoom(
    rgb: np.ndarray, depth: np.ndarray, rng: np.random.Generator, max_zoom: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """Crop a random window and resize it back: the same scene through a longer lens.

    The window keeps the aspect ratio and covers ``1/z`` of each side, ``z`` uniform in
    ``[1, max_zoom]``, at a uniform random position. Metric depth does not change; the
    camera's normalised focal length grows by ``z``, which the caller multiplies into the
    frame's focal so the camera-aware output learns to tell a near scene from a zoomed one.

    Args:
        rgb: ``(H, W, 3)`` float32 in ``[0, 1]``.
        depth: ``(H, W)`` float32 metres, NaN invalid.
        rng: the random generator (two numbers drawn per call, used or not).
        max_zoom: largest zoom factor (``>= 1``; 1 returns the inputs).

    Returns:
        ``(rgb, depth, z)``: arrays of the input shapes and the zoom factor applied.
    """
    if not max_zoom >= 1.0:
        raise ValueError(f"max_zoom must be >= 1, got {max_zoom}")
    zoom = float(rng.uniform(1.0, max_zoom))
    x_frac, y_frac = rng.random(2)
    h, w = depth.shape
    ch, cw = max(1, round(h / zoom)), max(1, round(w / zoom))
    if (ch, cw) == (h, w):
        return rgb, depth, 1.0
    top, left = int(y_frac * (h - ch)), int(x_frac * (w - cw))
    window = (slice(top, top + ch), slice(left, left + cw))
    rgb = cv2.resize(np.ascontiguousarray(rgb[window]), (w, h), interpolation=cv2.INTER_LINEAR)
    depth = resize_depth(depth[window], (h, w))
    return rgb, depth, float(np.sqrt((h / ch) * (w / cw)))


def to_tensor_batch(
    frames: Sequence[Frame],
    input_size: tuple[int, int],
    *,
    augment: bool = False,
    rng: np.random.Generator | None = None,
    border_crop: int = 0,
    max_zoom: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Turn frames into a model-ready batch: crop, resize, optionally augment, stack.

    Args:
        frames: frames with ``rgb`` ``(H, W, 3)`` uint8 and ``depth`` ``(h, w)``
            metres or ``None`` (a frame without depth gives an all-NaN target).
        input_size: the model's ``(height, width)``.
        augment: apply :func:`augment` to every pair (needs ``rng``), and
            :func:`random_zoom` when ``max_zoom > 1``.
        rng: the generator augmentation draws from.
        border_crop: pixels cut from every border first (seed 1 uses 10).
        max_zoom: largest random zoom of the augmentation (1 = none).

    Returns:
        ``(rgb, depth, focal)``: ``(B, 3, H, W)`` float32 in ``[0, 1]``, ``(B, 1, H, W)``
        float32 metres with NaN invalid, and ``(B,)`` float32 normalised focal lengths
        (:func:`frame_focal`, times the zoom), on the CPU.
    """
    h, w = _check_size(input_size)
    if len(frames) == 0:
        raise ValueError("to_tensor_batch needs at least one frame")
    if augment and rng is None:
        raise ValueError("augment=True needs a numpy Generator as rng (seeded by the caller)")
    rgb_out = np.empty((len(frames), 3, h, w), dtype=np.float32)
    depth_out = np.empty((len(frames), 1, h, w), dtype=np.float32)
    focal_out = np.empty((len(frames),), dtype=np.float32)
    for i, frame in enumerate(frames):
        rgb, depth = _crop_pair(frame.rgb, frame.depth, border_crop)
        focal_out[i] = frame_focal(frame, border_crop)
        rgb = to_float_rgb(resize_rgb(rgb, (h, w)))
        depth = np.full((h, w), np.nan, np.float32) if depth is None else resize_depth(depth, (h, w))
        if augment:
            if max_zoom > 1.0:
                rgb, depth, zoom = random_zoom(rgb, depth, rng, max_zoom)
                focal_out[i] *= zoom
            rgb, depth = _augment_pair(rgb, depth, rng)
        rgb_out[i] = rgb.transpose(2, 0, 1)
        depth_out[i, 0] = depth
    return torch.from_numpy(rgb_out), torch.from_numpy(depth_out), torch.from_numpy(focal_out)


# ``to_tensor_batch`` takes keyword arguments named like these functions.
_crop_pair = border_crop
_augment_pair = augment
