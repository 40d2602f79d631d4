"""Decode compressed colour images (``sensor_msgs/CompressedImage`` payloads) without ROS.

``image_transport``'s ``compressed`` plugin publishes a camera's colour stream on
``<topic>/compressed`` as JPEG (default) or PNG, with ``format`` like
``"rgb8; jpeg compressed bgr8"``; older publishers write just ``"jpeg"`` or ``"png"``.
The payload is an ordinary image file, so the container is recognised by its magic bytes
and the format string is only checked for what cannot be a colour image
(``compressedDepth``, the depth plugin's format).

Bad payloads raise :class:`~depth_estimator_ros.data.image_encoding.ImageDecodeError`
with the reason, like raw images: an unknown container, a truncated file (JPEG without
its end marker, PNG without its ``IEND`` chunk), an image larger than ``max_pixels``
(refused from the header, before anything is decompressed), or data the decoder rejects.
An EXIF orientation tag is ignored, as camera drivers and image_transport ignore it: the
pixels come out in the order they are stored.

:func:`encode_compressed_rgb` writes such a payload, as the plugin does (OpenCV, BGR order,
JPEG quality 95 by default), for bags and tests.
"""

from __future__ import annotations

import struct
from typing import Any

import cv2
import numpy as np

from depth_estimator_ros.data.image_encoding import ImageDecodeError

__all__ = ["COMPRESSED_CONTAINERS", "compressed_size", "decode_compressed_rgb", "encode_compressed_rgb"]

#: Containers :func:`decode_compressed_rgb` reads.
COMPRESSED_CONTAINERS: tuple[str, ...] = ("jpeg", "png")

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"
_JPEG_MAGIC = b"\xff\xd8\xff"
# Start-of-frame markers (baseline, progressive, lossless...); C4, C8 and CC are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _container(data: bytes) -> str:
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    head = data[:8].hex(" ") if data else "nothing"
    raise ImageDecodeError(f"compressed image is neither JPEG nor PNG (first bytes: {head})", "corrupt_compressed")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImageDecodeError(f"corrupt JPEG: no marker at byte {pos}", "corrupt_compressed")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return height, width
        if length < 2:
            raise ImageDecodeError(f"corrupt JPEG: segment length {length} at byte {pos}", "corrupt_compressed")
        pos += 2 + length
    raise ImageDecodeError("corrupt JPEG: no frame header (truncated?)", "corrupt_compressed")


def compressed_size(data: Any) -> tuple[str, int, int]:
    """Return ``(container, height, width)`` from a JPEG or PNG header, decoding nothing.

    Raises:
        ImageDecodeError: not JPEG or PNG, or a header that cannot be read.
    """
    data = bytes(data)
    kind = _container(data)
    if kind == "png":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageDecodeError("corrupt PNG: no IHDR header", "corrupt_compressed")
        width, height = struct.unpack(">II", data[16:24])
    else:
        height, width = _jpeg_size(data)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(
            f"compressed image size must be positive, got {width}x{height} (width x height)", "zero_size"
        )
    return kind, height, width


def decode_compressed_rgb(fmt: str, data: Any, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode a JPEG or PNG colour (or grey) image to RGB.

    Args:
        fmt: the message's ``format`` field (``"jpeg"``, ``"png"``,
            ``"rgb8; jpeg compressed bgr8"``...); ``compressedDepth`` is refused.
        data: the file's bytes (bytes-like).
        max_pixels: refuse images with more pixels than this, read from the header.

    Returns:
        ``(H, W, 3)`` uint8, RGB order, a new array (grey images are replicated).

    Raises:
        ImageDecodeError: the reason it cannot be decoded (see the module docstring).
    """
    if "compresseddepth" in str(fmt).lower():
        raise ImageDecodeError(f"format {fmt!r} is a compressed depth image, not a colour image", "bad_encoding")
    data = bytes(data)
    kind, height, width = compressed_size(data)
    if max_pixels is not None and height * width > max_pixels:
        raise ImageDecodeError(
            f"image has {height * width} pixels ({width}x{height}), more than max_pixels={max_pixels}", "too_large"
        )
    if kind == "jpeg" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        raise ImageDecodeError("truncated JPEG: no end-of-image marker", "corrupt_compressed")
    if kind == "png" and not data.endswith(_PNG_END):
        raise ImageDecodeError("truncated PNG: no IEND chunk at the end", "corrupt_compressed")
    # Camera drivers and image_transport ignore EXIF: the pixels are in the order the header
    # stamps them, and rotating them (OpenCV applies the orientation tag by default) would
    # give depth under the original header the wrong geometry, or a size the header denies.
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise ImageDecodeError(f"corrupt {kind.upper()}: the decoder rejected the data", "corrupt_compressed")
    if bgr.shape[:2] != (height, width):
        raise ImageDecodeError(
            f"corrupt {kind.upper()}: decoded {bgr.shape[1]}x{bgr.shape[0]}, header says {width}x{height}",
            "corrupt_compressed",
        )
    return np.ascontiguousarray(bgr[:, :, ::-1])


def encode_compressed_rgb(rgb: np.ndarray, container: str = "jpeg", *, quality: int = 95) -> tuple[str, bytes]:
    """Encode an RGB image as image_transport's ``compressed`` plugin publishes it.

    Args:
        rgb: ``(H, W, 3)`` uint8, RGB order.
        container: ``"jpeg"`` (lossy) or ``"png"`` (lossless).
        quality: JPEG quality 1-100 (the plugin's default: 95); ignored for PNG.

    Returns:
        ``(format, data)``: the message's ``format`` field (``"rgb8; jpeg compressed bgr8"``)
        and the file's bytes.

    Raises:
        TypeError: ``rgb`` is not a uint8 numpy array.
        ValueError: wrong shape, unknown ``container`` or ``quality`` out of range.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
        raise TypeError(f"rgb must be a uint8 numpy array, got {type(rgb).__name__} {getattr(rgb, 'dtype', '')}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ValueError(f"rgb must have shape (H, W, 3) with H, W > 0, got {rgb.shape}")
    if container not in COMPRESSED_CONTAINERS:
        raise ValueError(f"container must be one of {', '.join(COMPRESSED_CONTAINERS)}, got {container!r}")
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"quality must be 1-100, got {quality}")
    extension, params = (".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(quality)]) if container == "jpeg" else (".png", [])
    ok, data = cv2.imencode(extension, np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
        raise ValueError(f"OpenCV could not encode a {rgb.shape} image as {container}")
    return f"rgb8; {container} compressed bgr8", data.tobytes()
