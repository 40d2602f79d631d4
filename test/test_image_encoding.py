"""Tests for the ROS-free raw image codec."""

from __future__ import annotations

import numpy as np
import pytest

from depth_estimator_ros.data.image_encoding import (
    DECODE_REASONS,
    DEPTH_ENCODINGS,
    IMAGE_ENCODINGS,
    ImageDecodeError,
    decode_depth,
    decode_image,
    encode_depth,
    encode_rgb,
)


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)


def _pad_rows(data: bytes, height: int, step: int, pad: int) -> bytes:
    """Insert ``pad`` junk bytes after every row of ``step`` bytes."""
    rows = [data[r * step : (r + 1) * step] + b"\xab" * pad for r in range(height)]
    return b"".join(rows)


def _to_bigendian(data: bytes, itemsize: int) -> bytes:
    return np.frombuffer(data, dtype=f"<u{itemsize}").astype(f">u{itemsize}").tobytes()


@pytest.mark.parametrize("encoding", [e for e in IMAGE_ENCODINGS if not e.startswith("mono")])
def test_colour_round_trip_is_exact(rgb: np.ndarray, encoding: str) -> None:
    step, data = encode_rgb(rgb, encoding)
    out = decode_image(encoding, 5, 7, step, False, data)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_mono_round_trip_of_grey_image_is_exact(rgb: np.ndarray, encoding: str) -> None:
    grey = np.repeat(rgb[:, :, :1], 3, axis=2)
    step, data = encode_rgb(grey, encoding)
    np.testing.assert_array_equal(decode_image(encoding, 5, 7, step, 0, data), grey)


def test_mono_encoding_stores_luma() -> None:
    pixel = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    step, data = encode_rgb(pixel, "mono8")
    assert step == 3
    assert list(data) == [77, 149, 29]  # (77*255 + 128) >> 8 = 77, etc.


def test_channel_order_is_rgb() -> None:
    bgr = bytes([10, 20, 30])  # one pixel, blue first
    np.testing.assert_array_equal(decode_image("bgr8", 1, 1, 3, 0, bgr)[0, 0], [30, 20, 10])
    np.testing.assert_array_equal(decode_image("bgra8", 1, 1, 4, 0, bgr + b"\x07")[0, 0], [30, 20, 10])
    np.testing.assert_array_equal(decode_image("rgba8", 1, 1, 4, 0, bgr + b"\x07")[0, 0], [10, 20, 30])


@pytest.mark.parametrize("encoding", IMAGE_ENCODINGS)
@pytest.mark.parametrize("bigendian", [False, True])
def test_row_padding_and_byte_order(rgb: np.ndarray, encoding: str, bigendian: bool) -> None:
    grey = encoding.startswith("mono")
    image = np.repeat(rgb[:, :, :1], 3, axis=2) if grey else rgb
    step, data = encode_rgb(image, encoding)
    if bigendian and encoding.endswith("16"):
        data = _to_bigendian(data, 2)
    padded = _pad_rows(data, 5, step, 3)
    out = decode_image(encoding, 5, 7, step + 3, bigendian, padded)
    np.testing.assert_array_equal(out, image)
    assert out.flags.c_contiguous


def test_unpadded_rgb8_is_zero_copy(rgb: np.ndarray) -> None:
    buf = bytearray(rgb.tobytes())
    out = decode_image("rgb8", 5, 7, 21, 0, buf)
    assert np.shares_memory(out, np.frombuffer(buf, np.uint8))


def test_accepts_numpy_and_memoryview_data(rgb: np.ndarray) -> None:
    step, data = encode_rgb(rgb)
    for buf in (np.frombuffer(data, np.uint8), memoryview(data)):
        np.testing.assert_array_equal(decode_image("rgb8", 5, 7, step, 0, buf), rgb)


def test_16uc1_millimetres_and_invalid_values() -> None:
    raw = np.array([[0, 1, 1500], [65535, 65534, 4000]], dtype="<u2")
    depth = decode_depth("16UC1", 2, 3, 6, 0, raw.tobytes())
    assert depth.dtype == np.float32 and depth.shape == (2, 3)
    assert np.isnan(depth[0, 0]) and np.isnan(depth[1, 0])
    np.testing.assert_allclose(depth[0, 1:], [0.001, 1.5], rtol=1e-6)
    np.testing.assert_allclose(depth[1, 1:], [65.534, 4.0], rtol=1e-6)
    big = decode_depth("mono16", 2, 3, 6, 1, raw.astype(">u2").tobytes())
    np.testing.assert_array_equal(np.isnan(big), np.isnan(depth))
    np.testing.assert_allclose(big[~np.isnan(big)], depth[~np.isnan(depth)])


def test_32fc1_invalid_values_become_nan() -> None:
    raw = np.array([[1.25, 0.0, -1.0, np.inf, -np.inf, np.nan, 7.5]], dtype="<f4")
    depth = decode_depth("32FC1", 1, 7, 28, 0, raw.tobytes())
    np.testing.assert_array_equal(np.isnan(depth), [[False, True, True, True, True, True, False]])
    assert depth[0, 0] == np.float32(1.25) and depth[0, 6] == np.float32(7.5)
    big = decode_depth("32FC1", 1, 7, 30, True, _pad_rows(raw.astype(">f4").tobytes(), 1, 28, 2))
    np.testing.assert_array_equal(big, depth)


def test_decode_depth_returns_writable_copy() -> None:
    data = np.ones((2, 2), "<f4").tobytes()
    depth = decode_depth("32FC1", 2, 2, 8, 0, data)
    depth[0, 0] = 3.0
    assert np.frombuffer(data, "<f4")[0] == 1.0


@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_depth_round_trip(encoding: str) -> None:
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.3, 9.0, (6, 9)).astype(np.float32)
    depth[1, 2] = np.nan
    depth[3, 4] = 0.0
    depth[4, 5] = np.inf
    step, data = encode_depth(depth, encoding)
    out = decode_depth(encoding, 6, 9, step, 0, data)
    expected_invalid = np.zeros_like(depth, bool)
    expected_invalid[1, 2] = expected_invalid[3, 4] = expected_invalid[4, 5] = True
    np.testing.assert_array_equal(np.isnan(out), expected_invalid)
    tolerance = 0.0005 + 1e-6 if encoding == "16UC1" else 0.0
    assert np.nanmax(np.abs(out - depth)[~expected_invalid]) <= tolerance


def test_16uc1_marks_unrepresentable_depth_invalid() -> None:
    step, data = encode_depth(np.array([[70.0, 65.5]], np.float32), "16UC1")
    assert np.frombuffer(data, "<u2").tolist() == [0, 65500]


@pytest.mark.parametrize(
    ("fields", "message", "reason"),
    [
        (("yuv422", 2, 2, 4, 0, bytes(8)), "unsupported encoding 'yuv422'; supported: rgb8, bgr8", "bad_encoding"),
        (("rgb8", 0, 2, 6, 0, b""), "image size must be positive, got 2x0", "zero_size"),
        (("rgb8", 2, 0, 0, 0, b""), "image size must be positive, got 0x2", "zero_size"),
        (("rgb8", 2, 2, 5, 0, bytes(10)), "step 5 is smaller than width * pixel size = 2 * 3 = 6", "bad_step"),
        (("rgb8", 2, 2, 6, 0, bytes(11)), "data too short: 11 bytes, expected height * step = 2 * 6 = 12",
         "bad_data_length"),
        (("rgb8", 2, 2, 6, 0, bytes(13)), "data too long: 13 bytes, expected height * step = 2 * 6 = 12",
         "bad_data_length"),
        (("rgb8", 1, 1, 3, 0, 12345), "data is not a byte buffer (int)", "bad_data_length"),
    ],
)
def test_decode_image_refusals(fields: tuple, message: str, reason: str) -> None:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(*fields)
    assert message in str(info.value)
    assert info.value.reason == reason and reason in DECODE_REASONS  # the diagnostics key, carried by the error
    assert isinstance(info.value, ValueError)


def test_decode_depth_refuses_colour_encoding() -> None:
    with pytest.raises(ImageDecodeError, match="supported: 16UC1, mono16, 32FC1"):
        decode_depth("rgb8", 1, 1, 3, 0, bytes(3))
    assert DEPTH_ENCODINGS == ("16UC1", "mono16", "32FC1")


def test_max_pixels_refuses_before_reading_data() -> None:
    # 10000 x 10000 with only 4 bytes of data: the pixel limit fires first
    with pytest.raises(ImageDecodeError, match="10000x10000 = 100000000 pixels exceeds the limit of 1000000"):
        decode_image("rgb8", 10000, 10000, 30000, 0, bytes(4), max_pixels=1_000_000)
    with pytest.raises(ImageDecodeError, match="exceeds the limit") as info:
        decode_depth("16UC1", 10000, 10000, 20000, 0, bytes(4), max_pixels=1_000_000)
    assert info.value.reason == "too_large"
    assert decode_image("rgb8", 2, 2, 6, 0, bytes(12), max_pixels=4).shape == (2, 2, 3)


def test_encode_refusals(rgb: np.ndarray) -> None:
    with pytest.raises(TypeError, match="uint8"):
        encode_rgb(rgb.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        encode_rgb(rgb[:, :, 0])
    with pytest.raises(ValueError, match="supported: rgb8"):
        encode_rgb(rgb, "16UC1")
    with pytest.raises(TypeError, match="float"):
        encode_depth(np.ones((2, 2), np.uint16))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        encode_depth(np.ones((2, 2, 1), np.float32))
    with pytest.raises(ValueError, match="supported: 32FC1, 16UC1"):
        encode_depth(np.ones((2, 2), np.float32), "mono8")


def test_vga_rgb8_decode_is_fast() -> None:
    import time

    step, data = encode_rgb(np.zeros((480, 640, 3), np.uint8))
    start = time.perf_counter()
    for _ in range(100):
        decode_image("rgb8", 480, 640, step, 0, data)
    assert (time.perf_counter() - start) / 100 < 1e-3
