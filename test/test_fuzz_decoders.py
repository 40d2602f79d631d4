"""Fuzzing (issue 26): the raw and compressed image decoders, the depth decoder, the camera_info check.

Property-based (hypothesis): random fields and mutated valid inputs either decode to what
the fields describe or raise the documented error (``ImageDecodeError`` for images,
``ValueError`` for calibrations); nothing else escapes, and invalid data never comes out
as valid output. ``make test`` runs the bounded ``default`` profile, ``make fuzz`` the
long one (``HYPOTHESIS_PROFILE=fuzz``, test/conftest.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from depth_estimator_ros.data.compressed import compressed_size, decode_compressed_rgb, encode_compressed_rgb
from depth_estimator_ros.data.frame import (
    MAX_CALIBRATED_SIDE,
    MAX_FOV_DEG,
    MIN_CALIBRATED_SIDE,
    MIN_FOV_DEG,
    check_intrinsics,
)
from depth_estimator_ros.data.image_encoding import (
    DECODE_REASONS,
    DEPTH_ENCODINGS,
    IMAGE_ENCODINGS,
    ImageDecodeError,
    decode_depth,
    decode_image,
)
from depth_estimator_ros.models import CANONICAL_FOCAL
from depth_estimator_ros.ros import codec

from test_compressed import _with_exif_orientation

#: bytes per pixel of every encoding the decoders know
_PIXEL = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "rgb16": 6, "bgr16": 6, "mono16": 2,
          "16UC1": 2, "32FC1": 4}
#: refuse anything larger (the nodes' max_pixels does the same), so a fuzzed header allocates nothing big
MAX_PIXELS = 1 << 16

_encodings = st.one_of(st.sampled_from(sorted(_PIXEL)), st.sampled_from(["", "RGB8", "rgb8 ", "32FC3", "bayer_rggb8"]),
                       st.text(max_size=8))
_sizes = st.one_of(st.integers(0, 24), st.sampled_from([-1, 2**31 - 1, 2**32 - 1, 10**12]))


@st.composite
def _raw_fields(draw, encodings: tuple[str, ...]):
    """Fields of a raw image: a well-formed one (maybe mutated) or arbitrary ones."""
    if draw(st.booleans()):
        encoding = draw(st.sampled_from(encodings))
        height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        step = width * _PIXEL[encoding] + draw(st.integers(0, 5))
        data = draw(st.binary(min_size=height * step, max_size=height * step))
        mutation = draw(st.sampled_from(["none", "cut", "extend", "step", "encoding"]))
        if mutation == "cut":
            data = data[: draw(st.integers(0, len(data) - 1))]
        elif mutation == "extend":
            data += draw(st.binary(min_size=1, max_size=9))
        elif mutation == "step":
            step = draw(st.integers(0, step - 1))
        elif mutation == "encoding":
            encoding = draw(_encodings)
    else:
        encoding, height, width = draw(_encodings), draw(_sizes), draw(_sizes)
        step = draw(st.one_of(st.integers(0, 80), st.sampled_from([2**31, 2**32 - 1])))
        data = draw(st.binary(max_size=400))
    return encoding, height, width, step, draw(st.integers(0, 255)), data


def _well_formed(encoding, height, width, step, data, allowed) -> bool:
    return (encoding in allowed and 0 < height and 0 < width and height * width <= MAX_PIXELS
            and step >= width * _PIXEL[encoding] and len(data) == height * step)


def _rows(encoding, height, width, step, bigendian, data) -> np.ndarray:
    """The stored values, ``(H, W, C)``, read row by row (the oracle)."""
    size = {"rgb16": 2, "bgr16": 2, "mono16": 2, "16UC1": 2, "32FC1": 4}.get(encoding, 1)
    kind = "f" if encoding == "32FC1" else "u"
    rows = [np.frombuffer(data[r * step : r * step + width * _PIXEL[encoding]],
                          np.dtype(f"{'>' if bigendian else '<'}{kind}{size}")) for r in range(height)]
    return np.stack(rows).reshape(height, width, _PIXEL[encoding] // size)


@given(_raw_fields(IMAGE_ENCODINGS))
@example(("rgb8", 2**31 - 1, 2**31 - 1, 2**32 - 1, 0, b"\x00" * 16))
def test_fuzz_raw_image_decoder(fields) -> None:
    encoding, height, width, step, bigendian, data = fields
    try:
        out = decode_image(encoding, height, width, step, bigendian, data, max_pixels=MAX_PIXELS)
    except ImageDecodeError as exc:
        assert exc.reason in DECODE_REASONS
        assert not _well_formed(encoding, height, width, step, data, IMAGE_ENCODINGS)
        return
    assert _well_formed(encoding, height, width, step, data, IMAGE_ENCODINGS)
    assert out.dtype == np.uint8 and out.shape == (height, width, 3)
    stored = _rows(encoding, height, width, step, bigendian, data)
    if stored.dtype.itemsize == 2:
        stored = (stored >> 8).astype(np.uint8)
    order = {"bgr8": [2, 1, 0], "bgra8": [2, 1, 0], "bgr16": [2, 1, 0]}.get(encoding, [0, 1, 2])
    expected = np.repeat(stored, 3, axis=2) if stored.shape[2] == 1 else stored[:, :, order]
    np.testing.assert_array_equal(out, expected)


@given(_raw_fields(DEPTH_ENCODINGS))
def test_fuzz_depth_decoder(fields) -> None:
    encoding, height, width, step, bigendian, data = fields
    try:
        depth = decode_depth(encoding, height, width, step, bigendian, data, max_pixels=MAX_PIXELS)
    except ImageDecodeError as exc:
        assert exc.reason in DECODE_REASONS
        assert not _well_formed(encoding, height, width, step, data, DEPTH_ENCODINGS)
        return
    assert _well_formed(encoding, height, width, step, data, DEPTH_ENCODINGS)
    assert depth.dtype == np.float32 and depth.shape == (height, width)
    stored = _rows(encoding, height, width, step, bigendian, data)[:, :, 0]
    if encoding == "32FC1":
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(stored) & (stored > 0)
        expected = stored.astype(np.float32)
    else:
        valid = (stored != 0) & (stored != 65535)
        expected = stored.astype(np.float32) * np.float32(0.001)
    # invalid stored values never come out as depth, valid ones exactly as stored
    assert np.array_equal(np.isfinite(depth), valid & np.isfinite(expected) & (expected > 0))
    np.testing.assert_array_equal(depth[np.isfinite(depth)], expected[np.isfinite(depth)])
    assert (depth[np.isfinite(depth)] > 0).all()


def _decode_msg(to_array, msg_fields: dict) -> None:
    """The node-facing adapters (codec) raise nothing but ImageDecodeError either."""
    try:
        to_array(Image(**msg_fields), max_pixels=MAX_PIXELS)
    except ImageDecodeError:
        pass


@given(_raw_fields(IMAGE_ENCODINGS + DEPTH_ENCODINGS))
def test_fuzz_codec_adapters_raise_only_the_documented_error(fields) -> None:
    encoding, height, width, step, bigendian, data = fields
    # a message field takes uint32 sizes and a bool flag; other values cannot reach a node
    assume(0 <= height < 2**32 and 0 <= width < 2**32 and 0 <= step < 2**32)
    msg = dict(encoding=encoding, height=height, width=width, step=step, is_bigendian=bool(bigendian), data=data)
    _decode_msg(codec.image_to_rgb, msg)
    _decode_msg(codec.image_to_depth, msg)


# --------------------------------------------------------------------------- compressed
def _valid_compressed(container: str, seed: int, height: int, width: int) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return encode_compressed_rgb(rgb, container, quality=90)[1]


@st.composite
def _compressed_payloads(draw):
    """Random bytes, or a valid JPEG / PNG with flipped, cut, inserted or overwritten bytes or an EXIF tag.

    Returns ``(data, truncated, original)``: ``original`` is the untouched file when the only
    change was EXIF orientation tags (which must not change the pixels), else ``None``.
    """
    if draw(st.integers(0, 4)) == 0:
        prefix = draw(st.sampled_from([b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"]))
        return prefix + draw(st.binary(max_size=300)), False, None
    container = draw(st.sampled_from(["jpeg", "png"]))
    original = _valid_compressed(container, draw(st.integers(0, 3)), draw(st.integers(1, 24)),
                                 draw(st.integers(1, 24)))
    data = bytearray(original)
    truncated, only_exif = False, True
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "cut", "insert", "header_size", "exif"]))
        only_exif = only_exif and kind == "exif"
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "exif":
            if container == "jpeg":
                data = bytearray(_with_exif_orientation(bytes(data), draw(st.integers(1, 8))))
        elif kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "cut":
            data = data[:pos]
            truncated = True
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif len(data) >= 24:  # a header that claims another size (PNG IHDR, or the bytes a JPEG SOF may hold)
            data[16:24] = draw(st.binary(min_size=8, max_size=8))
        if not data:
            break
    return bytes(data), truncated, original if only_exif and container == "jpeg" else None


@given(_compressed_payloads(), st.sampled_from(["rgb8; jpeg compressed bgr8", "jpeg", "png", "", "16UC1; compressedDepth"]))
def test_fuzz_compressed_decoder(payload, fmt) -> None:
    data, truncated, original = payload
    try:
        out = decode_compressed_rgb(fmt, data, max_pixels=MAX_PIXELS)
    except ImageDecodeError as exc:
        assert exc.reason in DECODE_REASONS
        assert original is None or "compresseddepth" in fmt.lower(), "an EXIF tag made a good JPEG undecodable"
        return
    if original is not None:  # EXIF orientation never moves a pixel (issue 26, 6)
        np.testing.assert_array_equal(out, decode_compressed_rgb(fmt, original))
    # what comes out is an RGB image of exactly the size the header states, from a complete file
    assert "compresseddepth" not in fmt.lower()
    assert not truncated or data.rstrip(b"\x00").endswith((b"\xff\xd9", b"IEND\xaeB`\x82"))
    _, height, width = compressed_size(data)
    assert out.dtype == np.uint8 and out.shape == (height, width, 3) and height * width <= MAX_PIXELS
    # and the node-facing adapter agrees
    np.testing.assert_array_equal(
        codec.compressed_to_rgb(CompressedImage(format=fmt, data=data), max_pixels=MAX_PIXELS), out)


# ------------------------------------------------------------------------ camera_info check
_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2000.0, max_value=2000.0),
    st.sampled_from([0.0, -0.0, 1e-30, 1e200, 1e308, 525.0, 319.5, 239.5]),
    st.integers(-10, 10**6),
)


@st.composite
def _calibrations(draw):
    """Six numbers: arbitrary, or a calibration near the plausible range with one field maybe replaced."""
    if draw(st.booleans()):
        return [draw(_numbers) for _ in range(6)]
    width, height = draw(st.integers(1, 5000)), draw(st.integers(1, 5000))
    fov = draw(st.floats(1.0, 179.0))
    fx = width / (2 * math.tan(math.radians(fov) / 2))
    values = [fx, fx * draw(st.floats(0.4, 2.5)), draw(st.floats(-0.1 * width, 1.1 * width)),
              draw(st.floats(-0.1 * height, 1.1 * height)), width, height]
    if draw(st.integers(0, 2)) == 0:
        values[draw(st.integers(0, 5))] = draw(_numbers)
    return values


@given(_calibrations())
@example([math.inf, math.inf, 319.5, 239.5, 640, 480])
@example([1e200, 1e200, 319.5, 239.5, 640, 480])
@example([1e9, 1e9, 319.5, 239.5, 640, 480])
@example([1e-30, 1e-30, 319.5, 239.5, 640, 480])
@example([525.0, 525.0, 0.0, 0.0, 1, 1])
@example([8.98846567431158e307, 4.49423283715579e307, 0.0, 0.0, 1.5727776979883268e307, 16.0])  # fx * fy overflowed
@example([0.6999093082073917, 0.6999093082073917, 0.0, 0.0, 16, 38])
def test_fuzz_camera_info_check(values) -> None:
    fx, fy, cx, cy, width, height = values
    try:
        k = check_intrinsics(fx, fy, cx, cy, width, height)
    except ValueError as exc:
        assert str(exc)
        return
    # accepted: plausible for its image, and usable as the model's camera scale
    assert MIN_CALIBRATED_SIDE <= min(k.width, k.height) <= max(k.width, k.height) <= MAX_CALIBRATED_SIDE
    fov = math.degrees(2 * math.atan(k.width / (2 * k.fx)))
    assert MIN_FOV_DEG - 1e-6 <= fov <= MAX_FOV_DEG + 1e-6
    assert 0.5 <= k.fy / k.fx <= 2.0
    assert -0.5 <= k.cx <= k.width - 0.5 and -0.5 <= k.cy <= k.height - 0.5
    scale = k.normalized_focal / CANONICAL_FOCAL  # the model's camera scale: must be usable
    assert math.isfinite(scale) and scale > 0


@given(st.lists(_numbers, min_size=9, max_size=9), st.lists(_numbers, min_size=12, max_size=12),
       st.integers(0, 2**32 - 1) | st.integers(0, 2000), st.integers(0, 2**32 - 1) | st.integers(0, 2000))
def test_fuzz_camera_info_adapter(k, p, width, height) -> None:
    info = CameraInfo(width=width, height=height, k=[float(v) for v in k], p=[float(v) for v in p])
    try:
        intrinsics = codec.camera_info_intrinsics(info)
    except ValueError:
        return
    if intrinsics is None:
        assert info.k[0] == 0.0  # only an uncalibrated camera says nothing
        return
    assert (intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy) == (info.k[0], info.k[4], info.k[2], info.k[5])
    assert np.isfinite(info.p).all()
    assert math.isfinite(intrinsics.normalized_focal) and intrinsics.normalized_focal > 0


def test_fuzz_camera_info_check_accepts_exactly_the_stated_range() -> None:
    """fx from w / (2 tan 85 deg) to w / (2 tan 5 deg) passes (to rounding); 1 % beyond either end fails."""
    widest = 640 / (2 * math.tan(math.radians(MAX_FOV_DEG / 2)))
    narrowest = 640 / (2 * math.tan(math.radians(MIN_FOV_DEG / 2)))
    for fx in (widest * (1 + 1e-9), 525.0, narrowest * (1 - 1e-9)):
        assert check_intrinsics(fx, fx, 319.5, 239.5, 640, 480).fx == fx
    for fx in (widest * 0.99, narrowest * 1.01):
        with pytest.raises(ValueError, match="field of view"):
            check_intrinsics(fx, fx, 319.5, 239.5, 640, 480)
