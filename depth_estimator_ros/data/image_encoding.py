"""Convert raw ``sensor_msgs/Image`` fields to numpy arrays and back, without ROS.

Both the rosbag2 code (``data/rosbag.py``) and the ROS nodes (through
``ros/codec.py``) use these functions, so they take the message's plain fields
(``encoding``, ``height``, ``width``, ``step``, ``is_bigendian``, ``data``) rather
than a message object.

Conventions (as in ``depth_image_proc``):

- colour images decode to ``(H, W, 3)`` uint8 in RGB order;
- depth decodes to ``(H, W)`` float32 metres with NaN for invalid pixels:
  ``16UC1`` / ``mono16`` hold millimetres with 0 (and the saturation value 65535)
  invalid, ``32FC1`` holds metres with NaN, +-inf, 0 and negative values invalid.

Strictness: ``data`` must hold exactly ``height * step`` bytes, as the message
definition requires. Shorter data cannot be decoded; longer data means ``height``
or ``step`` is wrong, so it is refused as well rather than silently cropped.
Callers that must survive bad messages (the nodes) catch :class:`ImageDecodeError`,
log it and count the drop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "ImageDecodeError",
    "DECODE_REASONS",
    "IMAGE_ENCODINGS",
    "DEPTH_ENCODINGS",
    "decode_image",
    "decode_depth",
    "encode_rgb",
    "encode_depth",
]


#: Why an image was refused, as :attr:`ImageDecodeError.reason` carries it (the nodes'
#: ``dropped_<reason>`` diagnostics keys).
DECODE_REASONS: tuple[str, ...] = (
    "bad_encoding", "zero_size", "too_large", "bad_step", "bad_data_length", "corrupt_compressed"
)


class ImageDecodeError(ValueError):
    """Raised when raw image fields cannot be decoded; the message says why for people.

    Attributes:
        reason: the same for counters, one of :data:`DECODE_REASONS`.
    """

    def __init__(self, message: str, reason: str) -> None:
        if reason not in DECODE_REASONS:
            raise ValueError(f"reason must be one of {DECODE_REASONS}, got {reason!r}")
        super().__init__(message)
        self.reason = reason


# encoding -> (channels, bytes per channel, numpy kind)
_LAYOUT: dict[str, tuple[int, int, str]] = {
    "rgb8": (3, 1, "u"),
    "bgr8": (3, 1, "u"),
    "rgba8": (4, 1, "u"),
    "bgra8": (4, 1, "u"),
    "mono8": (1, 1, "u"),
    "rgb16": (3, 2, "u"),
    "bgr16": (3, 2, "u"),
    "mono16": (1, 2, "u"),
    "16UC1": (1, 2, "u"),
    "32FC1": (1, 4, "f"),
}

#: Encodings :func:`decode_image` and :func:`encode_rgb` accept.
IMAGE_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "rgb16", "bgr16", "mono16")
#: Encodings :func:`decode_depth` and :func:`encode_depth` accept.
DEPTH_ENCODINGS: tuple[str, ...] = ("16UC1", "mono16", "32FC1")

# channel index order that turns the stored channels into R, G, B
_TO_RGB: dict[str, tuple[int, int, int]] = {
    "rgb8": (0, 1, 2),
    "rgba8": (0, 1, 2),
    "rgb16": (0, 1, 2),
    "bgr8": (2, 1, 0),
    "bgra8": (2, 1, 0),
    "bgr16": (2, 1, 0),
}

_MM_INVALID = 65535  # saturated / "no return" value some drivers write in 16UC1


def _view(
    encoding: str,
    allowed: tuple[str, ...],
    height: int,
    width: int,
    step: int,
    is_bigendian: bool | int,
    data: Any,
    max_pixels: int | None,
) -> np.ndarray:
    """Validate the fields and return a zero-copy ``(H, W, C)`` view of ``data``."""
    if encoding not in allowed:
        raise ImageDecodeError(f"unsupported encoding {encoding!r}; supported: {', '.join(allowed)}", "bad_encoding")
    channels, size, kind = _LAYOUT[encoding]
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"image size must be positive, got {width}x{height} (width x height)", "zero_size")
    if max_pixels is not None and height * width > max_pixels:
        raise ImageDecodeError(
            f"image of {width}x{height} = {height * width} pixels exceeds the limit of {max_pixels} pixels",
            "too_large",
        )
    row = width * channels * size
    if step < row:
        raise ImageDecodeError(
            f"step {step} is smaller than width * pixel size = {width} * {channels * size} = {row} bytes "
            f"for {encoding}",
            "bad_step",
        )
    try:
        buf = np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError) as exc:
        raise ImageDecodeError(f"data is not a byte buffer ({type(data).__name__}): {exc}", "bad_data_length") from exc
    expected = height * step
    if buf.size != expected:
        relation = "short" if buf.size < expected else "long"
        raise ImageDecodeError(
            f"data too {relation}: {buf.size} bytes, expected height * step = {height} * {step} = {expected}",
            "bad_data_length",
        )
    dtype = np.dtype(f"{'>' if is_bigendian else '<'}{kind}{size}")
    return np.ndarray(
        shape=(height, width, channels),
        dtype=dtype,
        buffer=buf,
        strides=(step, channels * size, size),
    )


def decode_image(
    encoding: str,
    height: int,
    width: int,
    step: int,
    is_bigendian: bool | int,
    data: Any,
    *,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode raw image fields to an RGB array.

    Args:
        encoding: one of :data:`IMAGE_ENCODINGS`. 16-bit encodings keep their high byte.
        height: rows.
        width: columns.
        step: bytes per row, including any padding (``>= width * pixel size``).
        is_bigendian: byte order of multi-byte channels (ignored for 8-bit encodings).
        data: bytes-like of exactly ``height * step`` bytes.
        max_pixels: refuse images with more than this many pixels before allocating.

    Returns:
        ``(H, W, 3)`` uint8 RGB. For unpadded ``rgb8`` this is a view on ``data``
        (no copy; read-only when ``data`` is immutable); otherwise a new
        C-contiguous array.

    Raises:
        ImageDecodeError: unknown encoding, zero size, too many pixels, step too
            small, or data length different from ``height * step``.
    """
    view = _view(encoding, IMAGE_ENCODINGS, height, width, step, is_bigendian, data, max_pixels)
    if view.dtype.itemsize == 2:
        view = (view >> 8).astype(np.uint8)
    if encoding in ("rgb8", "rgb16"):
        return view if view.flags.c_contiguous else np.ascontiguousarray(view)
    # one strided copy per channel is several times faster than fancy indexing
    order = (0, 0, 0) if encoding.startswith("mono") else _TO_RGB[encoding]
    out = np.empty(view.shape[:2] + (3,), dtype=np.uint8)
    for dst, src in enumerate(order):
        out[:, :, dst] = view[:, :, src]
    return out


def decode_depth(
    encoding: str,
    height: int,
    width: int,
    step: int,
    is_bigendian: bool | int,
    data: Any,
    *,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode raw depth image fields to metres.

    Args:
        encoding: ``"16UC1"`` or ``"mono16"`` (millimetres; 0 and 65535 invalid) or
            ``"32FC1"`` (metres; NaN, +-inf, 0 and negative invalid).
        height: rows.
        width: columns.
        step: bytes per row, including any padding.
        is_bigendian: byte order of the stored values.
        data: bytes-like of exactly ``height * step`` bytes.
        max_pixels: refuse images with more than this many pixels before allocating.

    Returns:
        ``(H, W)`` float32 metres, NaN where invalid; always a new writable array.

    Raises:
        ImageDecodeError: as :func:`decode_image`.
    """
    view = _view(encoding, DEPTH_ENCODINGS, height, width, step, is_bigendian, data, max_pixels)[:, :, 0]
    if view.dtype.kind == "u":
        depth = view.astype(np.float32)
        depth *= np.float32(0.001)
        depth[(view == 0) | (view == _MM_INVALID)] = np.nan
        return depth
    depth = view.astype(np.float32)  # native order, and a copy we may modify
    with np.errstate(invalid="ignore"):
        depth[~(depth > 0) | np.isinf(depth)] = np.nan
    return depth


def encode_rgb(array: np.ndarray, encoding: str = "rgb8") -> tuple[int, bytes]:
    """Encode an RGB array as raw image bytes (little-endian, no row padding).

    Args:
        array: ``(H, W, 3)`` uint8 RGB.
        encoding: one of :data:`IMAGE_ENCODINGS`. ``mono*`` store the luma
            ``(77 R + 150 G + 29 B) / 256``; 16-bit encodings store ``value * 257``
            so that full scale maps to full scale. Alpha is 255.

    Returns:
        ``(step, data)``: bytes per row and the ``height * step`` bytes of the image.
        The message's ``is_bigendian`` is 0.

    Raises:
        TypeError: ``array`` is not a uint8 numpy array.
        ValueError: wrong shape or unknown encoding.
    """
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        raise TypeError(f"rgb must be a uint8 numpy array, got {getattr(array, 'dtype', type(array).__name__)}")
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"rgb must have shape (H, W, 3) with H, W > 0, got {array.shape}")
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported encoding {encoding!r}; supported: {', '.join(IMAGE_ENCODINGS)}")
    channels, size, _ = _LAYOUT[encoding]
    if encoding.startswith("mono"):
        wide = array.astype(np.uint16)
        out = ((77 * wide[..., 0] + 150 * wide[..., 1] + 29 * wide[..., 2] + 128) >> 8).astype(np.uint8)
        out = out[..., None]
    else:
        out = array[..., list(_TO_RGB[encoding])] if _TO_RGB[encoding] != (0, 1, 2) else array
        if channels == 4:
            out = np.concatenate([out, np.full(out.shape[:2] + (1,), 255, np.uint8)], axis=2)
    if size == 2:
        out = out.astype("<u2") * np.uint16(257)
    step = array.shape[1] * channels * size
    return step, np.ascontiguousarray(out).tobytes()


def encode_depth(depth_m: np.ndarray, encoding: str = "32FC1") -> tuple[int, bytes]:
    """Encode a depth map in metres as raw image bytes (little-endian, no row padding).

    Args:
        depth_m: ``(H, W)`` float metres, NaN (or any non-positive / non-finite
            value) invalid.
        encoding: ``"32FC1"`` (metres, invalid written as NaN) or ``"16UC1"``
            (millimetres rounded to the nearest integer; invalid pixels and depths
            beyond 65.534 m, which 16 bits cannot hold, are written as 0 = invalid).

    Returns:
        ``(step, data)``: bytes per row and the ``height * step`` bytes; ``is_bigendian`` is 0.

    Raises:
        TypeError: ``depth_m`` is not a floating-point numpy array.
        ValueError: wrong shape or unknown encoding.
    """
    if not isinstance(depth_m, np.ndarray) or depth_m.dtype.kind != "f":
        raise TypeError(
            f"depth must be a float numpy array in metres, got {getattr(depth_m, 'dtype', type(depth_m).__name__)}"
        )
    if depth_m.ndim != 2 or depth_m.shape[0] == 0 or depth_m.shape[1] == 0:
        raise ValueError(f"depth must have shape (H, W) with H, W > 0, got {depth_m.shape}")
    if encoding == "32FC1":
        with np.errstate(invalid="ignore"):
            invalid = ~(depth_m > 0) | np.isinf(depth_m)
        out = depth_m.astype("<f4")
        out[invalid] = np.nan
        return depth_m.shape[1] * 4, out.tobytes()
    if encoding == "16UC1":
        # in place, in float64 (exact rounding to the millimetre), without temporaries
        mm = depth_m.astype(np.float64)
        mm *= 1000.0
        np.rint(mm, out=mm)
        with np.errstate(invalid="ignore"):  # NaN, <= 0 and inf all fail these
            keep = (mm > 0) & (mm < _MM_INVALID)
        out = np.zeros(depth_m.shape, "<u2")
        np.copyto(out, mm, where=keep, casting="unsafe")
        return depth_m.shape[1] * 2, out.tobytes()
    raise ValueError(f"unsupported depth encoding {encoding!r}; supported: 32FC1, 16UC1")
