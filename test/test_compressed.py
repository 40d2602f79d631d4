"""Tests of compressed colour image decoding (image_transport's compressed payloads)."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from depth_estimator_ros.data.compressed import compressed_size, decode_compressed_rgb, encode_compressed_rgb
from depth_estimator_ros.data.image_encoding import ImageDecodeError


def _scene(height: int = 48, width: int = 64) -> np.ndarray:
    """An RGB image with a pure red left half and a blue right half, plus a gradient row."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, : width // 2, 0] = 255
    rgb[:, width // 2 :, 2] = 255
    rgb[0, :, 1] = np.linspace(0, 255, width).astype(np.uint8)
    return rgb


def _encode(rgb: np.ndarray, ext: str) -> bytes:
    # What compressed_image_transport does: the bgr8 image through cv::imencode.
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    return buf.tobytes()


def test_png_decodes_exactly_in_rgb_order() -> None:
    rgb = _scene()
    out = decode_compressed_rgb("rgb8; png compressed bgr8", _encode(rgb, ".png"))
    assert out.dtype == np.uint8 and out.shape == rgb.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)
    assert compressed_size(_encode(rgb, ".png")) == ("png", 48, 64)


def test_jpeg_decodes_in_rgb_order_with_the_header_size() -> None:
    rgb = _scene(120, 160)
    data = _encode(rgb, ".jpg")
    assert compressed_size(data) == ("jpeg", 120, 160)
    for fmt in ("jpeg", "bgr8; jpeg compressed bgr8", ""):
        out = decode_compressed_rgb(fmt, data)
        assert out.shape == (120, 160, 3)
        # JPEG is lossy: colours stay where they were, within a few levels.
        assert out[60, 20, 0] > 230 and out[60, 20, 2] < 25
        assert out[60, 140, 2] > 230 and out[60, 140, 0] < 25


def test_grey_images_are_replicated_to_three_channels() -> None:
    grey = np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))
    ok, buf = cv2.imencode(".png", grey)
    out = decode_compressed_rgb("mono8; png compressed mono8", buf.tobytes())
    np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))


@pytest.mark.parametrize(
    ("payload", "fmt", "reason"),
    [
        (b"", "jpeg", "neither JPEG nor PNG"),
        (b"GIF89a" + bytes(40), "jpeg", "neither JPEG nor PNG"),
        ("truncated_jpeg", "jpeg", "truncated JPEG"),
        ("truncated_png", "png", "truncated PNG"),
        ("corrupt_jpeg_body", "jpeg", "corrupt JPEG: the decoder rejected"),
        ("png", "16UC1; compressedDepth png", "compressed depth image"),
    ],
)
def test_bad_payloads_are_refused_with_the_reason(payload, fmt, reason) -> None:
    rgb = _scene()
    if payload == "truncated_jpeg":
        payload = _encode(rgb, ".jpg")[:-200]
    elif payload == "truncated_png":
        payload = _encode(rgb, ".png")[:-30]
    elif payload == "corrupt_jpeg_body":
        data = bytearray(_encode(rgb, ".jpg"))
        sof = data.index(b"\xff\xc0")
        data[sof + 2 : len(data) - 2] = b"\xff" * (len(data) - 4 - sof)  # markers everywhere, no image
        payload = bytes(data)
    elif payload == "png":
        payload = _encode(rgb, ".png")
    with pytest.raises(ImageDecodeError, match=reason) as error:
        decode_compressed_rgb(fmt, payload)
    assert error.value.reason == ("bad_encoding" if "compressedDepth" in fmt else "corrupt_compressed")


def test_images_over_max_pixels_are_refused_from_the_header() -> None:
    big = np.zeros((2100, 2100, 3), np.uint8)  # 4.41 Mpx: a few kB as PNG or JPEG
    for ext in (".png", ".jpg"):
        data = _encode(big, ext)
        assert len(data) < 200_000
        with pytest.raises(ImageDecodeError, match="more than max_pixels=4194304") as error:
            decode_compressed_rgb("jpeg", data, max_pixels=4_194_304)
        assert error.value.reason == "too_large"
    assert decode_compressed_rgb("png", _encode(big[:100, :100], ".png"), max_pixels=4_194_304).shape == (100, 100, 3)


def test_encode_writes_what_the_decoder_and_the_plugin_format_expect() -> None:
    rgb = _scene()
    fmt, png = encode_compressed_rgb(rgb, "png")
    assert fmt == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(decode_compressed_rgb(fmt, png), rgb)  # lossless
    fmt, jpeg = encode_compressed_rgb(rgb, "jpeg")
    assert fmt == "rgb8; jpeg compressed bgr8" and compressed_size(jpeg) == ("jpeg", 48, 64)
    assert np.abs(decode_compressed_rgb(fmt, jpeg).astype(int) - rgb).mean() < 3  # quality 95
    assert len(encode_compressed_rgb(rgb, "jpeg", quality=20)[1]) < len(jpeg)
    for bad, error in ((rgb.astype(np.float32), TypeError), (rgb[..., 0], ValueError)):
        with pytest.raises(error):
            encode_compressed_rgb(bad)
    with pytest.raises(ValueError, match="container must be one of jpeg, png"):
        encode_compressed_rgb(rgb, "gif")
    with pytest.raises(ValueError, match="quality must be 1-100"):
        encode_compressed_rgb(rgb, quality=0)


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Return ``jpeg`` with an APP1 EXIF segment (little-endian TIFF, one Orientation entry) after SOI."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_ignored_like_camera_drivers_do(orientation) -> None:
    """Issue 26 (6): OpenCV applied the tag: 3 came out rotated 180 degrees, 6 and 8 were refused."""
    rgb = _scene(48, 64)
    plain = _encode(rgb, ".jpg")
    tagged = _with_exif_orientation(plain, orientation)
    # the tag is real: OpenCV's default decoding (and any EXIF reader) applies it
    applied = cv2.imdecode(np.frombuffer(tagged, np.uint8), cv2.IMREAD_COLOR)
    assert applied.shape[:2] == ((48, 64) if orientation == 3 else (64, 48))
    assert not np.array_equal(applied, cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_COLOR))
    out = decode_compressed_rgb("rgb8; jpeg compressed bgr8", tagged)
    assert out.shape == rgb.shape
    np.testing.assert_array_equal(out, decode_compressed_rgb("rgb8; jpeg compressed bgr8", plain))
    assert out[:, :32, 0].mean() > 200 and out[:, 32:, 2].mean() > 200  # red stays left, blue right
