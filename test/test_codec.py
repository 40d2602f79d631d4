"""ros/codec.py: Image <-> numpy round trips, padding, endianness, errors, cv_bridge parity."""

from __future__ import annotations

import array
import importlib.util

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from depth_estimator_ros.data.image_encoding import decode_image, encode_depth
from depth_estimator_ros.ros import codec
from depth_estimator_ros.ros.codec import (
    ImageDecodeError,
    depth_to_image,
    image_to_depth,
    image_to_rgb,
    rgb_to_image,
)

HAS_CV_BRIDGE = importlib.util.find_spec("cv_bridge") is not None
HEADER = Header(stamp=Time(sec=17, nanosec=250_000_000), frame_id="camera_rgb_optical_frame")

# bytes per pixel of each colour encoding
PIXEL_BYTES = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "rgb16": 6, "bgr16": 6, "mono16": 2}
ITEM_BYTES = {"rgb16": 2, "bgr16": 2, "mono16": 2, "16UC1": 2, "32FC1": 4}


def _rgb(seed: int = 0, shape: tuple[int, int] = (6, 5), grey: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if grey:
        return np.repeat(rng.integers(0, 256, size=shape + (1,), dtype=np.uint8), 3, axis=2)
    return rng.integers(0, 256, size=shape + (3,), dtype=np.uint8)


def _depth(seed: int = 0, shape: tuple[int, int] = (6, 5)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.2, 9.0, size=shape).astype(np.float32)
    depth[rng.random(shape) < 0.2] = np.nan
    return depth


def _repack(msg: Image, *, pad: int = 0, bigendian: bool = False) -> Image:
    """Return a copy of ``msg`` with ``pad`` garbage bytes per row and/or byte-swapped values."""
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    if bigendian and msg.encoding in ITEM_BYTES:
        size = ITEM_BYTES[msg.encoding]
        rows = rows.reshape(msg.height, -1, size)[:, :, ::-1].reshape(msg.height, msg.step)
    padded = np.full((msg.height, msg.step + pad), 0xAB, dtype=np.uint8)
    padded[:, : msg.step] = rows
    out = Image(header=msg.header, height=msg.height, width=msg.width, encoding=msg.encoding)
    out.is_bigendian = int(bigendian)
    out.step = msg.step + pad
    out.data = array.array("B", padded.tobytes())
    return out


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "rgb16", "bgr16"])
def test_colour_round_trip_exact(encoding):
    rgb = _rgb()
    msg = rgb_to_image(rgb, HEADER, encoding)
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (6, 5, encoding, 0)
    assert msg.step == 5 * PIXEL_BYTES[encoding] and len(msg.data) == 6 * msg.step
    out = image_to_rgb(msg)
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_grey_round_trip_exact(encoding):
    grey = _rgb(grey=True)
    np.testing.assert_array_equal(image_to_rgb(rgb_to_image(grey, HEADER, encoding)), grey)


def test_bgr8_stores_blue_first():
    rgb = np.array([[[10, 20, 30]]], dtype=np.uint8)
    assert bytes(rgb_to_image(rgb, HEADER, "bgr8").data) == bytes([30, 20, 10])


def test_depth_32fc1_round_trip_keeps_nan_and_values():
    depth = _depth()
    msg = depth_to_image(depth, HEADER)
    assert (msg.encoding, msg.step, msg.is_bigendian) == ("32FC1", 5 * 4, 0)
    out = image_to_depth(msg)
    assert out.dtype == np.float32 and out.shape == (6, 5)
    np.testing.assert_array_equal(out, depth)


def test_depth_invalid_values_written_as_nan():
    depth = np.array([[1.5, 0.0, -2.0, np.inf, np.nan]], dtype=np.float32)
    out = image_to_depth(depth_to_image(depth, HEADER))
    np.testing.assert_array_equal(out, [[1.5, np.nan, np.nan, np.nan, np.nan]])


def test_depth_16uc1_millimetres_to_metres():
    step, data = encode_depth(np.array([[1.234, np.nan], [0.5, 65.6]], dtype=np.float32), "16UC1")
    msg = Image(height=2, width=2, encoding="16UC1", step=step, data=array.array("B", data))
    np.testing.assert_allclose(image_to_depth(msg), [[1.234, np.nan], [0.5, np.nan]], rtol=0, atol=1e-6)


@pytest.mark.parametrize("encoding", sorted(PIXEL_BYTES))
@pytest.mark.parametrize("pad", [1, 3, 8])
def test_colour_row_padding_ignored(encoding, pad):
    grey = encoding.startswith("mono")
    msg = rgb_to_image(_rgb(grey=grey), HEADER, encoding)
    np.testing.assert_array_equal(image_to_rgb(_repack(msg, pad=pad)), image_to_rgb(msg))


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_depth_row_padding_and_big_endian(encoding):
    step, data = encode_depth(_depth(), encoding)
    msg = Image(height=6, width=5, encoding=encoding, step=step, data=array.array("B", data))
    expected = image_to_depth(msg)
    assert np.isfinite(expected).sum() > 10
    for pad, big in [(3, False), (0, True), (5, True)]:
        np.testing.assert_array_equal(image_to_depth(_repack(msg, pad=pad, bigendian=big)), expected)


@pytest.mark.parametrize("encoding", ["rgb8", "bgra8", "rgb16", "mono16"])
def test_colour_big_endian_flag(encoding):
    msg = rgb_to_image(_rgb(grey=encoding.startswith("mono")), HEADER, encoding)
    np.testing.assert_array_equal(image_to_rgb(_repack(msg, bigendian=True)), image_to_rgb(msg))


def test_header_copied_not_shared():
    header = Header(stamp=Time(sec=3, nanosec=4), frame_id="cam")
    msg = depth_to_image(_depth(), header)
    header.stamp.sec = 99
    header.frame_id = "other"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (3, 4, "cam")


def test_rgb8_decode_is_a_view_on_the_message():
    msg = rgb_to_image(_rgb(), HEADER)
    assert isinstance(msg.data, array.array) and msg.data.typecode == "B"
    assert np.shares_memory(image_to_rgb(msg), np.frombuffer(msg.data, dtype=np.uint8))


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"encoding": "yuv422"}, "unsupported encoding 'yuv422'; supported: rgb8"),
        ({"height": 0}, "size must be positive"),
        ({"step": 14}, "step 14 is smaller"),
        ({"data": array.array("B", bytes(6 * 15 - 1))}, "data too short"),
        ({"data": array.array("B", bytes(6 * 15 + 15))}, "data too long"),
    ],
)
def test_bad_colour_messages_raise_decode_error(fields, match):
    msg = rgb_to_image(_rgb(), HEADER)
    for name, value in fields.items():
        setattr(msg, name, value)
    with pytest.raises(ImageDecodeError, match=match):
        image_to_rgb(msg)


def test_depth_rejects_colour_encoding_and_too_many_pixels():
    with pytest.raises(ImageDecodeError, match="supported: 16UC1, mono16, 32FC1"):
        image_to_depth(rgb_to_image(_rgb(), HEADER))
    with pytest.raises(ImageDecodeError, match="exceeds the limit of 29 pixels"):
        image_to_depth(depth_to_image(_depth(), HEADER), max_pixels=29)
    with pytest.raises(ImageDecodeError, match="exceeds the limit"):
        image_to_rgb(rgb_to_image(_rgb(), HEADER, "bgr8"), max_pixels=29)


def test_encode_rejects_bad_arrays():
    with pytest.raises(TypeError, match="uint8"):
        rgb_to_image(_rgb().astype(np.float32), HEADER)
    with pytest.raises(ValueError, match="supported: rgb8"):
        rgb_to_image(_rgb(), HEADER, "yuv422")
    with pytest.raises(TypeError, match="float"):
        depth_to_image(np.ones((2, 2), dtype=np.uint16), HEADER)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        depth_to_image(np.ones((2, 2, 1), dtype=np.float32), HEADER)


def test_backend_reports_cv_bridge_only_where_it_imports():
    assert codec.BACKEND == ("cv_bridge" if HAS_CV_BRIDGE else "numpy")


@pytest.mark.skipif(not HAS_CV_BRIDGE, reason="cv_bridge is not installed (pip mode; it comes with a ROS distro)")
def test_cv_bridge_and_own_codec_identical():
    from cv_bridge import CvBridge

    bridge = CvBridge()
    for encoding in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8"):
        for pad in (0, 1, 4, 12):
            rgb = _rgb(seed=3, shape=(7, 9), grey=encoding == "mono8")
            msg = _repack(rgb_to_image(rgb, HEADER, encoding), pad=pad)
            own = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)
            np.testing.assert_array_equal(image_to_rgb(msg), own, err_msg=f"{encoding} pad {pad}")
            if msg.step % PIXEL_BYTES[encoding] == 0:  # rows of whole pixels: the layouts cv_bridge reads
                direct = bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
                np.testing.assert_array_equal(direct, own, err_msg=f"{encoding} pad {pad}")


def test_rgb_transport_selects_message_type_topic_suffix_and_decoder():
    import cv2

    raw, compressed = codec.rgb_transport("raw"), codec.rgb_transport("compressed")
    assert (raw.msg_type, raw.topic_suffix, raw.decode) == (Image, "", codec.image_to_rgb)
    assert (compressed.msg_type, compressed.topic_suffix) == (CompressedImage, "/compressed")
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    msg = CompressedImage(format="bgr8; png compressed bgr8")
    msg.data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))[1].tobytes()
    np.testing.assert_array_equal(compressed.decode(msg, max_pixels=48), rgb)
    with pytest.raises(codec.ImageDecodeError) as refused:
        compressed.decode(msg, max_pixels=47)
    assert refused.value.reason == "too_large"
    assert set(codec.RGB_TRANSPORTS) == {"raw", "compressed"}
    with pytest.raises(ValueError, match="rgb_transport must be one of raw, compressed, got 'theora'"):
        codec.rgb_transport("theora")


def test_mono8_to_image_stores_the_mask_as_is_and_decodes_back_grey():
    mask = np.array([[0, 128, 255], [255, 0, 128]], np.uint8)
    msg = codec.mono8_to_image(mask[:, ::-1], HEADER)  # a strided view is made contiguous
    assert (msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian) == ("mono8", 2, 3, 3, 0)
    assert msg.header == HEADER
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(2, 3), mask[:, ::-1])
    np.testing.assert_array_equal(image_to_rgb(msg)[..., 0], mask[:, ::-1])
    with pytest.raises(TypeError, match="uint8"):
        codec.mono8_to_image(mask.astype(np.float32), HEADER)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        codec.mono8_to_image(np.zeros((2, 3, 1), np.uint8), HEADER)
