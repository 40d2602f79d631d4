"""Convert ``sensor_msgs/Image`` messages to numpy arrays and back.

Decoding colour images uses ROS 2's ``cv_bridge`` where it imports (a ROS
distribution) and the package's own codec (:mod:`depth_estimator_ros.data.image_encoding`)
otherwise (pip mode); :data:`BACKEND` says which. Both give identical arrays:
cv_bridge only takes the layouts it reads correctly (8-bit colour encodings,
little-endian flag, row step a whole number of pixels, exact data length);
everything else, and every malformed message, goes through the own codec,
which raises :class:`ImageDecodeError` with the reason. ``rgb8`` needs no
conversion and is always read in place by the own codec.

Depth always decodes with the own codec, because the package's invalid-pixel
rules (``16UC1`` 0 and 65535 mm, ``32FC1`` non-positive or non-finite metres ->
NaN) are not something cv_bridge implements. Encoding always uses the own
codec too (cv_bridge would need the array converted to the target encoding
first, which is exactly what the own codec does).

Copies: ``rgb8`` without row padding decodes to a view on ``msg.data`` (no copy;
the array shares memory with the message). Encoding copies the pixels once into
the message's byte array.

Colour input also comes compressed (``sensor_msgs/CompressedImage``, JPEG or PNG, as
``image_transport``'s ``compressed`` plugin publishes it on ``<image topic>/compressed``):
:func:`compressed_to_rgb` decodes it with
:func:`~depth_estimator_ros.data.compressed.decode_compressed_rgb`, and
:func:`rgb_transport` says which message type, topic suffix and decoder a node's
``rgb_transport`` parameter selects.
"""

from __future__ import annotations

import array
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from depth_estimator_ros.data.compressed import decode_compressed_rgb
from depth_estimator_ros.data.frame import Intrinsics, check_intrinsics
from depth_estimator_ros.data.image_encoding import (
    DEPTH_ENCODINGS,
    IMAGE_ENCODINGS,
    ImageDecodeError,
    decode_depth,
    decode_image,
    encode_depth,
    encode_rgb,
)
from depth_estimator_ros.parameters import RGB_TRANSPORTS

try:  # a ROS distribution; not on PyPI
    from cv_bridge import CvBridge
except ImportError:
    CvBridge = None

__all__ = [
    "BACKEND",
    "IMAGE_ENCODINGS",
    "DEPTH_ENCODINGS",
    "ImageDecodeError",
    "RGB_TRANSPORTS",
    "RgbTransport",
    "rgb_transport",
    "stamp_nanoseconds",
    "stamp_seconds",
    "image_to_rgb",
    "compressed_to_rgb",
    "image_to_depth",
    "rgb_to_image",
    "depth_to_image",
    "mono8_to_image",
    "camera_info_intrinsics",
    "depth_camera_info",
]

_BRIDGE = CvBridge() if CvBridge is not None else None

#: ``"cv_bridge"`` where ROS 2's cv_bridge imports, else ``"numpy"`` (the own codec).
BACKEND: str = "cv_bridge" if _BRIDGE is not None else "numpy"

# Encodings cv_bridge converts to rgb8 exactly as the own codec does (channel
# reorder / replication); its 16-bit scaling rounds differently, so those are not here.
_BRIDGE_CHANNELS: dict[str, int] = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}


def _bridge_can_read(msg: Image, max_pixels: int | None) -> bool:
    """Return whether cv_bridge decodes ``msg`` correctly (else the own codec must)."""
    channels = _BRIDGE_CHANNELS.get(msg.encoding)
    if channels is None or msg.is_bigendian:
        # cv_bridge byte-swaps flagged images with ndarray.newbyteorder, gone in numpy 2.
        return False
    height, width, step = msg.height, msg.width, msg.step
    return (
        height > 0
        and width > 0
        and (max_pixels is None or height * width <= max_pixels)
        and step >= width * channels
        and step % channels == 0  # cv_bridge assumes rows of whole pixels
        and len(msg.data) == height * step
    )


def image_to_rgb(msg: Image, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode a colour or grey image message to RGB.

    Args:
        msg: ``sensor_msgs/Image`` in one of :data:`IMAGE_ENCODINGS` (rgb8, bgr8,
            rgba8, bgra8, mono8, rgb16, bgr16, mono16), any row padding, either
            ``is_bigendian`` flag.
        max_pixels: refuse images with more pixels than this before allocating.

    Returns:
        ``(H, W, 3)`` uint8, RGB order. May share memory with ``msg.data``.

    Raises:
        ImageDecodeError: unsupported encoding, zero size, too many pixels, step
            smaller than a row, or data length different from ``height * step``.
    """
    if _BRIDGE is not None and msg.encoding != "rgb8" and _bridge_can_read(msg, max_pixels):
        return _BRIDGE.imgmsg_to_cv2(msg, desired_encoding="rgb8")
    return decode_image(
        msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data, max_pixels=max_pixels
    )


def compressed_to_rgb(msg: CompressedImage, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode a compressed colour image message (JPEG or PNG) to RGB.

    Args:
        msg: ``sensor_msgs/CompressedImage`` as image_transport's ``compressed`` plugin
            publishes it (``format`` like ``"rgb8; jpeg compressed bgr8"``, or ``"jpeg"``).
        max_pixels: refuse images with more pixels than this, read from the file's
            header before anything is decompressed.

    Returns:
        ``(H, W, 3)`` uint8, RGB order, a new array.

    Raises:
        ImageDecodeError: not JPEG or PNG, truncated or corrupt, a compressed depth
            image, zero size or too many pixels (the reason says which).
    """
    return decode_compressed_rgb(msg.format, msg.data, max_pixels=max_pixels)


class RgbTransport(NamedTuple):
    """How a node receives its colour images (:func:`rgb_transport`)."""

    name: str
    msg_type: type
    #: appended to the resolved colour topic (image_transport's convention); "" = the topic itself
    topic_suffix: str
    #: ``decode(msg, max_pixels=...)`` -> ``(H, W, 3)`` uint8 RGB, or :class:`ImageDecodeError`
    decode: Callable[..., Any]


def stamp_nanoseconds(stamp: Time) -> int:
    """Return a ``builtin_interfaces/Time`` as integer nanoseconds (exact)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def stamp_seconds(stamp: Time) -> float:
    """Return a ``builtin_interfaces/Time`` as float seconds (the stamp checks' unit)."""
    return stamp.sec + stamp.nanosec * 1e-9


def rgb_transport(name: str) -> RgbTransport:
    """Return the message type, topic suffix and decoder of the colour transport ``name``.

    Raises:
        ValueError: ``name`` is not one of :data:`RGB_TRANSPORTS`.
    """
    if name == "raw":
        return RgbTransport(name, Image, "", image_to_rgb)
    if name == "compressed":
        return RgbTransport(name, CompressedImage, "/compressed", compressed_to_rgb)
    raise ValueError(f"rgb_transport must be one of {', '.join(RGB_TRANSPORTS)}, got {name!r}")


def image_to_depth(msg: Image, *, max_pixels: int | None = None) -> np.ndarray:
    """Decode a depth image message to metres.

    Args:
        msg: ``sensor_msgs/Image`` in ``16UC1`` / ``mono16`` (millimetres, 0 and
            65535 invalid) or ``32FC1`` (metres; NaN, inf, 0 and negative invalid),
            any row padding, either ``is_bigendian`` flag.
        max_pixels: refuse images with more pixels than this before allocating.

    Returns:
        ``(H, W)`` float32 metres, NaN where invalid; a new writable array.

    Raises:
        ImageDecodeError: as :func:`image_to_rgb`.
    """
    return decode_depth(
        msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data, max_pixels=max_pixels
    )


def _make_image(header: Header, height: int, width: int, encoding: str, step: int, data: bytes) -> Image:
    """Build an Image; ``data`` goes into the message's byte array with a single copy."""
    msg = Image()
    msg.header = Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id)
    msg.height = height
    msg.width = width
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = step
    payload = array.array("B")
    payload.frombytes(data)  # the field setter's fast path; a bytes value would be checked item by item
    msg.data = payload
    return msg


def rgb_to_image(array_rgb: np.ndarray, header: Header, encoding: str = "rgb8") -> Image:
    """Encode an RGB array as an image message.

    Args:
        array_rgb: ``(H, W, 3)`` uint8, RGB order.
        header: stamp and frame_id to copy into the message.
        encoding: one of :data:`IMAGE_ENCODINGS`.

    Returns:
        ``sensor_msgs/Image``, little-endian, no row padding.

    Raises:
        TypeError: ``array_rgb`` is not a uint8 numpy array.
        ValueError: wrong shape or unsupported encoding.
    """
    step, data = encode_rgb(array_rgb, encoding)
    return _make_image(header, array_rgb.shape[0], array_rgb.shape[1], encoding, step, data)


def depth_to_image(depth_m: np.ndarray, header: Header, encoding: str = "32FC1") -> Image:
    """Encode a depth map as an image message, like a depth camera (REP 118).

    Args:
        depth_m: ``(H, W)`` float metres; NaN, non-positive and non-finite values
            are invalid.
        header: stamp and frame_id to copy into the message (the input image's).
        encoding: ``"32FC1"`` (metres, invalid = NaN) or ``"16UC1"`` (millimetres,
            invalid = 0; half the bytes).

    Returns:
        ``sensor_msgs/Image`` in ``encoding``, little-endian, no row padding.

    Raises:
        TypeError: ``depth_m`` is not a floating-point numpy array.
        ValueError: wrong shape or unknown encoding.
    """
    step, data = encode_depth(depth_m, encoding)
    return _make_image(header, depth_m.shape[0], depth_m.shape[1], encoding, step, data)


def mono8_to_image(array_mono: np.ndarray, header: Header) -> Image:
    """Encode a single-channel uint8 array (a mask) as a ``mono8`` image message.

    Args:
        array_mono: ``(H, W)`` uint8.
        header: stamp and frame_id to copy into the message.

    Returns:
        ``sensor_msgs/Image`` ``mono8``, no row padding.

    Raises:
        TypeError: ``array_mono`` is not a uint8 numpy array.
        ValueError: not ``(H, W)`` with ``H, W > 0``.
    """
    if not isinstance(array_mono, np.ndarray) or array_mono.dtype != np.uint8:
        raise TypeError(f"mono8 needs a uint8 numpy array, got {getattr(array_mono, 'dtype', type(array_mono).__name__)}")
    if array_mono.ndim != 2 or 0 in array_mono.shape:
        raise ValueError(f"mono8 needs shape (H, W) with H, W > 0, got {array_mono.shape}")
    height, width = array_mono.shape
    return _make_image(header, height, width, "mono8", width, np.ascontiguousarray(array_mono).tobytes())


def camera_info_intrinsics(info: CameraInfo | None) -> Intrinsics | None:
    """Return the checked pinhole intrinsics of a CameraInfo, or ``None`` for an uncalibrated camera.

    ``None`` for no message and for ``K[0] == 0`` (CameraInfo's convention for an
    uncalibrated camera: a driver without calibration publishes ``K`` all zeros). Any
    other message must pass :func:`~depth_estimator_ros.data.frame.check_intrinsics`
    (finite, field of view 10-170 degrees, ``fy / fx`` within 0.5-2, principal point
    inside the image, sides 16-65536 px), and its ``D``, ``R`` and ``P`` must be finite
    (they are passed on in ``depth/camera_info``).

    Raises:
        ValueError: implausible or non-finite calibration; the reason names the check.
    """
    if info is None or info.k[0] == 0.0:
        return None
    intrinsics = check_intrinsics(info.k[0], info.k[4], info.k[2], info.k[5], info.width, info.height)
    for name in ("d", "r", "p"):
        values = np.asarray(getattr(info, name), dtype=np.float64)
        if not np.isfinite(values).all():
            raise ValueError(f"camera_info {name.upper()} must be finite, got {values.tolist()[:12]}")
    return intrinsics


def depth_camera_info(
    header: Header, width: int, height: int, info: CameraInfo | None, *, canonical_focal: float
) -> CameraInfo:
    """Return the CameraInfo that goes with a depth image, for consumers that pair them (depth_image_proc).

    Args:
        header: the depth image's header (stamp and frame_id are copied).
        width, height: the depth image's size, pixels.
        info: the colour camera's CameraInfo, or ``None``.
        canonical_focal: normalised focal length (``sqrt(fx * fy / (W * H))``) of the camera
            the depth is scaled for without ``info`` (``models.CANONICAL_FOCAL``).

    Returns:
        ``info``'s intrinsics scaled to ``width`` x ``height`` (``K`` and ``P``, pixel-centre
        convention of :meth:`Intrinsics.scaled`; ``D``, ``R`` and the distortion model are
        resolution-free and kept); without usable intrinsics (none, or ``K`` all zero) the
        canonical camera the depth is then scaled for: normalised focal ``canonical_focal``,
        principal point at the centre, no distortion.
    """
    out = CameraInfo(header=header, width=int(width), height=int(height))
    source = camera_info_intrinsics(info)
    if source is None:
        focal = canonical_focal * math.sqrt(width * height)
        k = Intrinsics(fx=focal, fy=focal, cx=(width - 1) / 2, cy=(height - 1) / 2, width=width, height=height)
        out.distortion_model = "plumb_bob"
        out.d = [0.0] * 5
        out.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        p = [k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    else:
        k = source.scaled(width, height)
        out.distortion_model = info.distortion_model
        out.d = list(info.d)
        out.r = list(info.r)
        p = [float(v) for v in info.p]
        if p[0] > 0 and p[5] > 0:
            sx, sy = width / source.width, height / source.height
            p[0], p[2], p[3] = p[0] * sx, (p[2] + 0.5) * sx - 0.5, p[3] * sx
            p[5], p[6], p[7] = p[5] * sy, (p[6] + 0.5) * sy - 0.5, p[7] * sy
        else:  # no projection matrix given: the one of K
            p = [k.fx, 0.0, k.cx, 0.0, 0.0, k.fy, k.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    out.k = [k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0]
    out.p = p
    return out
