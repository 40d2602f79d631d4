"""Transform invariants: shapes and units, no valid/invalid mixing, seeded augmentation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from depth_estimator_ros.data.frame import Frame, Intrinsics
from depth_estimator_ros.learning.transforms import (
    augment,
    border_crop,
    frame_focal,
    random_zoom,
    resize_depth,
    resize_rgb,
    to_float_rgb,
    to_tensor_batch,
)

from depth_estimator_ros.models import CANONICAL_FOCAL

NAN = np.float32(np.nan)


def _frame(seed: int, h: int = 48, w: int = 64, depth: bool = True) -> Frame:
    rng = np.random.default_rng(seed)
    d = rng.uniform(0.5, 6.0, (h, w)).astype(np.float32) if depth else None
    return Frame(rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), depth=d, stamp=float(seed))


def test_border_crop_same_and_different_depth_size():
    rgb = np.arange(20 * 30 * 3, dtype=np.uint8).reshape(20, 30, 3)
    depth = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    r, d = border_crop(rgb, depth, 2)
    assert r.shape == (16, 26, 3) and d.shape == (16, 26)
    assert np.array_equal(r, rgb[2:18, 2:28]) and np.array_equal(d, depth[2:18, 2:28])
    _, half = border_crop(rgb, depth[::2, ::2], 2)
    assert half.shape == (8, 13)
    assert border_crop(rgb, None, 0) == (rgb, None)
    with pytest.raises(ValueError, match="leaves nothing"):
        border_crop(rgb, depth, 10)
    with pytest.raises(ValueError, match=">= 0"):
        border_crop(rgb, depth, -1)


def test_resize_rgb_keeps_dtype_and_identity():
    rgb = _frame(0).rgb
    small = resize_rgb(rgb, (24, 32))
    assert small.shape == (24, 32, 3) and small.dtype == np.uint8
    assert resize_rgb(rgb, (48, 64)) is rgb
    big = resize_rgb(to_float_rgb(rgb), (96, 128))
    assert big.dtype == np.float32 and big.shape == (96, 128, 3)
    with pytest.raises(ValueError, match="positive"):
        resize_rgb(rgb, (0, 3))
    with pytest.raises(TypeError, match="height, width"):
        resize_rgb(rgb, 5)


def test_resize_rgb_shrinks_by_whole_blocks_then_bilinear_close_to_area():
    # integer factor: exactly the k x k block means
    rgb = np.arange(8 * 12 * 3, dtype=np.float32).reshape(8, 12, 3)
    expected = rgb.reshape(2, 4, 3, 4, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(resize_rgb(rgb, (2, 3)), expected, rtol=1e-6)
    # camera frame to the fast model's input (factor 2.5: 2x2 blocks, then bilinear 1.25):
    # a smooth image comes out as a direct area resize would make it
    yy, xx = np.mgrid[0:480, 0:640]
    smooth = np.stack([xx * 255 / 639, yy * 255 / 479, (xx + yy) * 255 / 1118], axis=2).astype(np.uint8)
    fast = resize_rgb(smooth, (192, 256)).astype(np.float64)
    area = cv2.resize(smooth, (256, 192), interpolation=cv2.INTER_AREA).astype(np.float64)
    assert np.abs(fast - area).max() <= 2.0
    # sides without a common divisor: the direct area resize
    odd = smooth[:479, :639]
    np.testing.assert_array_equal(resize_rgb(odd, (192, 256)), cv2.resize(odd, (256, 192), interpolation=cv2.INTER_AREA))


def test_resize_depth_hand_computed_blocks():
    depth = np.array(
        [
            [1.0, 3.0, 2.0, 2.0],
            [NAN, NAN, 2.0, 0.0],
            [NAN, NAN, 4.0, 4.0],
            [NAN, 5.0, 4.0, 4.0],
        ],
        dtype=np.float32,
    )
    out = resize_depth(depth, (2, 2))
    # top-left: mean(1, 3) with half the block valid; top-right: 0 is invalid -> mean(2,2,2);
    # bottom-left: 1 of 4 valid -> NaN; bottom-right: all valid.
    np.testing.assert_allclose(out, [[2.0, 2.0], [NAN, 4.0]], rtol=1e-6)
    strict = resize_depth(depth, (2, 2), min_valid=0.75)
    assert np.isnan(strict[0, 0]) and strict[0, 1] == pytest.approx(2.0)


@pytest.mark.parametrize("size", [(12, 16), (30, 40), (96, 128), (48, 64)])
def test_resize_depth_hole_never_bleeds_and_valid_never_mixes_with_invalid(size):
    depth = np.full((48, 64), 2.5, np.float32)
    depth[10:30, 20:44] = NAN
    depth[40:, :8] = 0.0
    out = resize_depth(depth, size)
    assert out.dtype == np.float32 and out.shape == size
    finite = out[np.isfinite(out)]
    # Any mixing with a 0 or NaN neighbour would move a value off 2.5 (or make it NaN).
    np.testing.assert_allclose(finite, 2.5, rtol=1e-6)
    assert np.isnan(out).any() and np.isfinite(out).any()
    # The hole's centre stays a hole at every scale.
    assert np.isnan(out[int(20 / 48 * size[0]), int(32 / 64 * size[1])])
    # Zeros come out as NaN, never as 0.
    assert not (out == 0).any()


def test_resize_depth_errors():
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        resize_depth(np.ones((2, 2, 1), np.float32), (1, 1))
    with pytest.raises(ValueError, match="min_valid"):
        resize_depth(np.ones((2, 2), np.float32), (1, 1), min_valid=0.0)


def test_to_float_rgb():
    out = to_float_rgb(np.array([[[0, 128, 255]]], np.uint8))
    np.testing.assert_allclose(out, [[[0.0, 128 / 255, 1.0]]], rtol=1e-6)
    assert out.dtype == np.float32
    with pytest.raises(TypeError, match="uint8"):
        to_float_rgb(out)


def _pair(h: int = 40, w: int = 56) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = 1.0 + xx / w * 4.0 + yy / h  # smooth, 1..6 m
    rgb = np.stack([depth / 10.0, xx / w, yy / h], axis=-1).astype(np.float32)
    return rgb, depth.astype(np.float32)


def test_augment_flip_only_mirrors_both():
    rgb, depth = _pair()
    r, d = augment(rgb, depth, np.random.default_rng(0), rotate_p=0, color_p=0, flip_p=1)
    assert np.array_equal(r, rgb[:, ::-1]) and np.array_equal(d, depth[:, ::-1])


def test_augment_color_only_scales_channels_in_range_and_keeps_depth():
    rgb, depth = _pair()
    rgb = np.full_like(rgb, 0.5)
    r, d = augment(rgb, depth, np.random.default_rng(3), rotate_p=0, color_p=1, flip_p=0)
    scale = r[0, 0] / 0.5
    assert np.all((scale >= 0.95) & (scale <= 1.05)) and len(set(scale.tolist())) == 3
    assert np.allclose(r, r[0, 0]) and np.array_equal(d, depth)


def test_augment_rotation_is_identical_for_rgb_and_depth_and_outside_is_nan():
    rgb, depth = _pair()
    rotated = nan_corners = 0
    for seed in range(6):
        r, d = augment(rgb, depth, np.random.default_rng(seed), rotate_p=1, color_p=0, flip_p=0)
        assert r.dtype == np.float32 and d.dtype == np.float32 and d.shape == depth.shape
        # Corners come from outside the image unless the angle is tiny; the inside
        # (no holes in the input) stays valid.
        nan_corners += np.isnan(d[[0, 0, -1, -1], [0, -1, 0, -1]]).sum() >= 2
        inner = np.ones_like(d, dtype=bool)
        inner[:4], inner[-4:], inner[:, :4], inner[:, -4:] = False, False, False, False
        assert np.isfinite(d[inner]).all()
        # Channel 0 was depth / 10: the same warp keeps that relation everywhere inside.
        np.testing.assert_allclose(r[..., 0][inner] * 10.0, d[inner], rtol=1e-4)
        assert d[np.isfinite(d)].min() >= depth.min() - 1e-5 and d[np.isfinite(d)].max() <= depth.max() + 1e-5
        rotated += not np.array_equal(d[inner], depth[inner])
    assert rotated == 6 and nan_corners >= 4


def test_augment_rotation_keeps_holes_invalid():
    rgb, depth = _pair()
    depth = np.full_like(depth, 3.0)
    depth[15:25, 20:36] = NAN
    _, d = augment(rgb, depth, np.random.default_rng(1), rotate_p=1, color_p=0, flip_p=0)
    np.testing.assert_allclose(d[np.isfinite(d)], 3.0, rtol=1e-6)
    assert np.isnan(d[20, 28])


def test_augment_is_seeded_and_validates():
    rgb, depth = _pair()
    a = augment(rgb, depth, np.random.default_rng(7))
    b = augment(rgb, depth, np.random.default_rng(7))
    assert all(np.array_equal(x, y, equal_nan=True) for x, y in zip(a, b))
    with pytest.raises(TypeError, match="float32"):
        augment((rgb * 255).astype(np.uint8), depth, np.random.default_rng(0))
    with pytest.raises(ValueError, match="match"):
        augment(rgb, depth[1:], np.random.default_rng(0))
    with pytest.raises(ValueError, match="flip_p"):
        augment(rgb, depth, np.random.default_rng(0), flip_p=2.0)


def test_to_tensor_batch_shapes_units_and_nan():
    frames = [_frame(0), _frame(1), _frame(2, depth=False)]
    frames[0].depth[:5] = 0.0
    rgb, depth, focal = to_tensor_batch(frames, (24, 32), border_crop=2)
    assert rgb.shape == (3, 3, 24, 32) and depth.shape == (3, 1, 24, 32)
    assert focal.shape == (3,) and torch.allclose(focal, torch.full((3,), CANONICAL_FOCAL))  # no intrinsics
    assert rgb.dtype == torch.float32 and depth.dtype == torch.float32
    assert 0.0 <= rgb.min() and rgb.max() <= 1.0
    assert torch.isnan(depth[2]).all()
    assert not (depth == 0).any()
    finite = depth[:2][torch.isfinite(depth[:2])]
    assert finite.min() >= 0.5 and finite.max() <= 6.0


def test_to_tensor_batch_augmentation_is_seeded():
    frames = [_frame(i) for i in range(4)]
    a = to_tensor_batch(frames, (24, 32), augment=True, rng=np.random.default_rng(5))
    b = to_tensor_batch(frames, (24, 32), augment=True, rng=np.random.default_rng(5))
    plain = to_tensor_batch(frames, (24, 32))
    assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1], equal_nan=True)
    assert not torch.equal(a[0], plain[0])


def test_focal_is_resolution_free_and_grows_with_crops_and_zoom():
    kinect = Intrinsics(585.0, 585.0, 320.0, 240.0, 640, 480)
    frame = Frame(rgb=np.zeros((480, 640, 3), np.uint8), depth=None, stamp=0.0, intrinsics=kinect)
    half = Frame(rgb=np.zeros((240, 320, 3), np.uint8), depth=None, stamp=0.0, intrinsics=kinect.scaled(320, 240))
    assert frame_focal(frame) == pytest.approx(585.0 / np.sqrt(640 * 480))
    assert frame_focal(half) == pytest.approx(frame_focal(frame))  # resolution does not change the field of view
    # cutting 40 px off every border narrows the view: focal / sqrt(560 * 400)
    assert frame_focal(frame, 40) == pytest.approx(585.0 / np.sqrt(560 * 400))
    assert frame_focal(Frame(rgb=frame.rgb, depth=None, stamp=0.0)) == CANONICAL_FOCAL
    frames = [Frame(rgb=np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8),
                    depth=np.full((48, 64), 2.0, np.float32), stamp=0.0, intrinsics=kinect.scaled(64, 48))]
    _, depth, plain = to_tensor_batch(frames, (24, 32))
    _, zoomed_depth, zoomed = to_tensor_batch(frames, (24, 32), augment=True, rng=np.random.default_rng(3),
                                              max_zoom=2.0)
    assert 1.0 < float(zoomed[0] / plain[0]) <= 2.0 + 1e-6
    finite = zoomed_depth[torch.isfinite(zoomed_depth)]
    assert torch.allclose(finite, torch.full_like(finite, 2.0))  # a zoom changes the focal, never metric depth


def test_random_zoom_crops_a_window_and_reports_the_factor():
    rgb = np.random.default_rng(1).random((40, 60, 3), dtype=np.float32)
    depth = np.arange(40 * 60, dtype=np.float32).reshape(40, 60) / 100 + 1
    out_rgb, out_depth, factor = random_zoom(rgb, depth, np.random.default_rng(2), 2.0)
    assert out_rgb.shape == rgb.shape and out_depth.shape == depth.shape
    assert 1.0 <= factor <= 2.0
    assert np.nanmax(out_depth) <= depth.max() and np.nanmin(out_depth) >= depth.min()
    same = random_zoom(rgb, depth, np.random.default_rng(2), 1.0)
    assert same[0] is rgb and same[2] == 1.0
    with pytest.raises(ValueError, match="max_zoom"):
        random_zoom(rgb, depth, np.random.default_rng(2), 0.5)


def test_to_tensor_batch_errors():
    with pytest.raises(ValueError, match="rng"):
        to_tensor_batch([_frame(0)], (8, 8), augment=True)
    with pytest.raises(ValueError, match="at least one"):
        to_tensor_batch([], (8, 8))
