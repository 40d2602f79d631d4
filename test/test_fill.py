"""``fill_depth``'s contract (measured pixels untouched, holes filled, mask) and its seam on known scenes."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from depth_estimator_ros.learning.fill import FILL_METHODS, fill_depth, fill_evaluation, finish_fill_evaluation, hide_blobs

H, W = 480, 640


def _scene() -> np.ndarray:
    """A sloping floor-to-wall depth with a box in front: smooth parts and sharp edges."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    depth = 2.0 + 1.5 * (1.0 - yy / H) + 0.5 * xx / W
    depth[150:330, 240:420] = 1.2
    return depth.astype(np.float32)


def _holes(depth: np.ndarray) -> np.ndarray:
    """Sensor-like holes: two blobs, a stripe beside the box, scattered pixels; NaN and 0."""
    sensor = depth.copy()
    mask = np.zeros((H, W), np.uint8)
    cv2.ellipse(mask, (100, 100), (40, 25), 30, 0, 360, 1, -1)
    cv2.ellipse(mask, (520, 380), (30, 35), 0, 0, 360, 1, -1)
    sensor[mask.astype(bool)] = np.nan
    sensor[150:330, 420:428] = 0.0  # the shadow beside an edge, as 16UC1's 0
    sensor[::37, ::41] = np.nan
    return sensor


def test_measured_pixels_untouched_holes_filled_and_mask_right():
    truth = _scene()
    sensor = _holes(truth)
    pred = (0.8 * truth).astype(np.float32)
    filled, measured = fill_depth(sensor, pred)
    expected_mask = np.isfinite(sensor) & (sensor > 0)
    assert filled.dtype == np.float32 and filled.shape == (H, W) and measured.dtype == np.bool_
    np.testing.assert_array_equal(measured, expected_mask)
    assert filled[measured].tobytes() == sensor[measured].tobytes()  # bit for bit
    assert np.isfinite(filled).all() and (~measured).sum() > 5000
    np.testing.assert_allclose(filled[~measured], truth[~measured], rtol=1e-4)  # one ratio: recovered exactly


def test_no_seam_where_the_prediction_scale_drifts_across_the_image():
    truth = _scene()
    sensor = _holes(truth)
    _, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    gain = 1.0 + 0.25 * xx / W  # the prediction's scale error drifts by 25 % from left to right
    pred = (1.3 * truth * gain).astype(np.float32)
    filled, measured = fill_depth(sensor, pred)
    holes = ~measured
    border = holes & cv2.dilate(measured.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    rel = np.abs(filled - truth) / truth
    assert border.sum() > 500
    assert rel[border].max() < 0.05  # within 5 % of the sensor at every hole border pixel
    assert rel[holes].max() < 0.05
    # one global ratio leaves a seam: the local alignment is what makes the difference
    ratio = np.median(sensor[measured] / pred[measured])
    assert (np.abs(pred * ratio - truth) / truth)[border].max() > 0.08


def test_a_hole_without_a_rim_and_a_frame_without_pairs():
    truth = _scene()
    sensor = truth.copy()
    sensor[:, : W // 2] = np.nan  # half the image: its far side has no measured pixel near
    filled, measured = fill_depth(sensor, (2.0 * truth).astype(np.float32))
    np.testing.assert_allclose(filled[:, : W // 2], truth[:, : W // 2], rtol=1e-4)
    empty = np.full((H, W), np.nan, np.float32)
    filled, measured = fill_depth(empty, truth)
    assert not measured.any() and filled.tobytes() == truth.tobytes()  # ratio 1
    pred = truth.copy()
    pred[:10] = np.nan  # neither sensor nor prediction there: stays NaN
    filled, _ = fill_depth(empty, pred)
    assert np.isnan(filled[:10]).all() and np.isfinite(filled[10:]).all()


def test_small_and_odd_sizes():
    for shape in ((1, 1), (3, 5), (121, 163), (240, 320)):
        truth = np.random.default_rng(0).uniform(1, 3, shape).astype(np.float32)
        sensor = truth.copy()
        sensor.flat[:: 3] = np.nan
        filled, measured = fill_depth(sensor, 0.5 * truth)
        assert filled.shape == shape and np.isfinite(filled).all()


def test_bad_inputs():
    with pytest.raises(ValueError, match="one shape"):
        fill_depth(np.ones((4, 4), np.float32), np.ones((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        fill_depth(np.ones((1, 4, 4), np.float32), np.ones((1, 4, 4), np.float32))
    with pytest.raises(TypeError, match="numpy"):
        fill_depth([[1.0]], np.ones((1, 1), np.float32))


def test_fill_evaluation_hides_only_valid_pixels_and_scores_every_method():
    truth = _scene()
    sensor = _holes(truth)
    valid = np.isfinite(sensor) & (sensor > 0)
    hidden = hide_blobs(valid, np.random.default_rng(1))
    assert hidden.any() and not (hidden & ~valid).any()
    row = fill_evaluation(sensor, (1.3 * truth).astype(np.float32), valid, np.random.default_rng(1))
    assert row["hidden"] == int(hidden.sum()) and 0 < row["border"] < row["hidden"]
    result = finish_fill_evaluation([row, row])
    assert result["frames"] == 2 and result["hidden"] == 2 * row["hidden"]
    assert set(FILL_METHODS) <= set(result)
    assert result["fill"]["rmse"] < 1e-3 and result["fill"]["coverage"] == 1.0
    assert result["fill"]["rmse"] < result["inpaint_telea"]["rmse"]  # the box edges are lost by interpolation
    assert math.isfinite(result["fill_ms_mean"])
