"""Depth metrics against hand-computed values; pooling is per pixel, not per frame."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depth_estimator_ros.learning.metrics import (
    BOUNDARY_THRESHOLDS,
    METRIC_NAMES,
    MetricAccumulator,
    boundary_pair_distance,
    boundary_scores,
    compute_metrics,
    pool_frame_metrics,
    window_metrics,
)

NAN = float("nan")


def test_hand_computed_values():
    pred = np.array([1.5, 2.0, 4.0, 1.8, 9.0], dtype=np.float32)
    target = np.array([1.0, 3.0, 4.0, 1.0, NAN], dtype=np.float32)
    valid = np.array([True, True, True, True, False])
    m = compute_metrics(pred, target, valid)
    # errors +0.5, -1, 0, +0.8; ratios max(p/t, t/p) = 1.5, 1.5, 1, 1.8.
    assert m["n_valid"] == 4 and m["n_missing"] == 0
    assert m["rmse"] == pytest.approx(math.sqrt((0.25 + 1 + 0 + 0.64) / 4))
    assert m["mae"] == pytest.approx(2.3 / 4)
    assert m["abs_rel"] == pytest.approx((0.5 + 1 / 3 + 0 + 0.8) / 4)
    assert m["sq_rel"] == pytest.approx((0.25 + 1 / 3 + 0 + 0.64) / 4)
    assert m["log10"] == pytest.approx((2 * math.log10(1.5) + math.log10(1.8)) / 4)
    assert m["delta1"] == pytest.approx(1 / 4)  # 1.25
    assert m["delta2"] == pytest.approx(3 / 4)  # 1.5625
    assert m["delta3"] == pytest.approx(1.0)  # 1.953125


def test_torch_and_numpy_agree():
    rng = np.random.default_rng(0)
    target = rng.uniform(0.5, 8.0, (1, 1, 6, 5)).astype(np.float32)
    pred = (target * rng.uniform(0.8, 1.2, target.shape)).astype(np.float32)
    valid = rng.random(target.shape) > 0.3
    a = compute_metrics(pred, target, valid)
    b = compute_metrics(torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(valid))
    assert a.pop("boundary_counts") == b.pop("boundary_counts")
    assert a == pytest.approx(b)


def test_all_invalid_gives_nan_and_zero_count():
    m = compute_metrics(np.ones((3, 3), np.float32), np.full((3, 3), NAN, np.float32), np.zeros((3, 3), bool))
    assert m["n_valid"] == 0
    assert all(math.isnan(m[name]) for name in METRIC_NAMES)


def test_nonfinite_prediction_is_counted_not_scored_and_invalid_target_never_scored():
    pred = np.array([NAN, 2.0, 3.0], dtype=np.float32)
    target = np.array([1.0, 2.0, 0.0], dtype=np.float32)
    m = compute_metrics(pred, target, np.array([True, True, True]))
    assert m["n_valid"] == 1 and m["n_missing"] == 1 and m["rmse"] == 0.0


def test_zero_prediction_gives_finite_log_and_ratio():
    m = compute_metrics(np.array([0.0], np.float32), np.array([1.0], np.float32), np.array([True]))
    assert m["log10"] == pytest.approx(3.0)  # floored at 1 mm
    assert m["delta3"] == 0.0


def test_errors():
    with pytest.raises(ValueError, match="one shape"):
        compute_metrics(np.ones(3), np.ones(2), np.ones(3, bool))
    with pytest.raises(TypeError, match="boolean"):
        compute_metrics(np.ones(3), np.ones(3), np.ones(3))
    with pytest.raises(TypeError, match="numpy.ndarray or torch.Tensor"):
        compute_metrics([1.0], np.ones(1), np.ones(1, bool))


def test_accumulator_pools_pixels_not_frame_means():
    acc = MetricAccumulator(keep_per_frame=True)
    # Frame A: one pixel, error 3. Frame B: three pixels, error 0.
    a = acc.update(np.array([4.0]), np.array([1.0]), np.array([True]))
    b = acc.update(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]), np.array([True, True, True]))
    assert a["rmse"] == 3.0 and b["rmse"] == 0.0
    r = acc.result()
    assert r["n_valid"] == 4
    assert r["rmse"] == pytest.approx(math.sqrt(9 / 4))  # a mean of means would give 1.5
    assert r["mae"] == pytest.approx(3 / 4)
    assert r["delta1"] == pytest.approx(3 / 4)
    assert acc.frames == 2 and acc.per_frame == [a, b]
    # An all-invalid frame changes nothing but the frame count.
    acc.update(np.array([5.0]), np.array([NAN]), np.array([False]))
    assert acc.result() == r and acc.frames == 3


def test_accumulator_equals_one_shot_over_concatenation():
    rng = np.random.default_rng(1)
    frames = [
        (rng.uniform(0.5, 5, (4, 5)), rng.uniform(0.5, 5, (4, 5)), rng.random((4, 5)) > 0.4) for _ in range(3)
    ]
    acc = MetricAccumulator()
    for p, t, v in frames:
        acc.update(p, t, v)
    whole = compute_metrics(*(np.stack([f[i] for f in frames]) for i in range(3)))
    result = acc.result()
    assert result.pop("boundary_counts") == whole.pop("boundary_counts")
    assert result == pytest.approx(whole)
    assert acc.per_frame == []
    acc.reset()
    assert acc.result()["n_valid"] == 0 and acc.frames == 0


def test_pool_frame_metrics_weights_by_pixels() -> None:
    rows = [
        {"rmse": 1.0, "abs_rel": 0.1, "delta1": 1.0, "n_valid": 100},
        {"rmse": 2.0, "abs_rel": 0.3, "delta1": 0.0, "n_valid": 300},
        {"rmse": math.nan, "abs_rel": math.nan, "delta1": math.nan, "n_valid": 0},
    ]
    out = pool_frame_metrics(rows)
    assert out["rmse"] == pytest.approx(math.sqrt((1 * 100 + 4 * 300) / 400))
    assert out["abs_rel"] == pytest.approx(0.25) and out["delta1"] == pytest.approx(0.25)
    assert out["n_valid"] == 400 and out["frames"] == 3
    assert math.isnan(pool_frame_metrics(rows[2:])["rmse"])
    # the same numbers as the accumulator fed with the pixels
    rng = np.random.default_rng(0)
    acc = MetricAccumulator(keep_per_frame=True)
    for n in (10, 200, 37):
        target = rng.uniform(0.5, 5.0, n).astype(np.float32)
        acc.update(target * rng.uniform(0.7, 1.3, n).astype(np.float32), target, np.ones(n, bool))
    pooled, exact = pool_frame_metrics(acc.per_frame), acc.result()
    for key in ("rmse", "abs_rel", "delta1"):
        assert pooled[key] == pytest.approx(exact[key], rel=1e-9)


def test_window_metrics_pool_pixels_per_window_and_keep_empty_windows() -> None:
    rows = [
        {"t": 0.0, "rmse": 1.0, "abs_rel": 0.1, "delta1": 1.0, "n_valid": 100},
        {"t": 0.5, "rmse": 3.0, "abs_rel": 0.3, "delta1": 0.0, "n_valid": 300},
        {"t": 2.5, "rmse": 2.0, "abs_rel": 0.2, "delta1": 0.5, "n_valid": 10},
    ]
    windows = window_metrics(rows, 1.0, 3.0)
    assert [(w["t0"], w["t1"], w["frames"]) for w in windows] == [(0.0, 1.0, 2), (1.0, 2.0, 0), (2.0, 3.0, 1)]
    assert windows[0]["rmse"] == pytest.approx(math.sqrt((1 * 100 + 9 * 300) / 400))  # not (1 + 3) / 2
    assert math.isnan(windows[1]["rmse"]) and windows[2]["rmse"] == pytest.approx(2.0)
    assert window_metrics(rows, 2.0, 3.0)[-1]["t1"] == 3.0
    with pytest.raises(ValueError, match="window_s"):
        window_metrics(rows, 0.0, 3.0)


# Structure metrics on synthetic depth with known edges, at the 640x480.
H, W = 480, 640


def _step_scene() -> np.ndarray:
    """A wall at 3 m with a box at 1.5 m in front: four straight depth edges."""
    depth = np.full((H, W), 3.0, np.float32)
    depth[120:360, 200:440] = 1.5
    return depth


def _all(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth)


def test_boundary_pairs_scale_with_the_width():
    assert [boundary_pair_distance(w) for w in (640, 320, 192, 1280, 40)] == [4, 2, 1, 8, 1]
    with pytest.raises(ValueError, match="width"):
        boundary_pair_distance(0)


def test_step_edges_found_exactly_by_a_perfect_prediction():
    target = _step_scene()
    m = compute_metrics(target, target, _all(target))
    assert m["boundary_f1"] == m["boundary_precision"] == m["boundary_recall"] == 1.0
    assert m["si_log"] == 0.0
    # Every pair straddling the box outline: 4 pairs per crossing row or column (d = 4),
    # two crossings per row over 240 rows and per column over 240 columns; ratio 2 > every T.
    assert m["boundary_counts"] == ((4 * 2 * 240 * 2,) * 3,) * len(BOUNDARY_THRESHOLDS)
    assert m["n_pairs"] == H * (W - 4) + (H - 4) * W


def test_smooth_ramp_has_no_edges():
    target = _step_scene()
    ramp = np.tile(np.linspace(1.5, 3.0, W, dtype=np.float32), (H, 1))  # < 1 % depth change per 4 px
    m = compute_metrics(ramp, target, _all(target))
    assert m["boundary_f1"] == 0.0 and m["boundary_recall"] == 0.0
    assert all(agreed == predicted == 0 for agreed, predicted, _ in m["boundary_counts"])
    assert m["si_log"] > 0.1


def test_global_scale_changes_neither_boundaries_nor_si_log():
    target = _step_scene()
    rng = np.random.default_rng(3)
    noisy = (target * rng.choice([0.97, 1.0, 1.03], target.shape)).astype(np.float32)  # ratios far from every T
    plain, scaled = compute_metrics(noisy, target, _all(target)), compute_metrics(2.5 * noisy, target, _all(target))
    assert scaled["boundary_counts"] == plain["boundary_counts"]
    assert scaled["boundary_f1"] == plain["boundary_f1"] and 0.0 < plain["boundary_f1"] < 1.0
    assert scaled["si_log"] == pytest.approx(plain["si_log"], abs=1e-6)
    assert compute_metrics(2.5 * target, target, _all(target))["si_log"] == pytest.approx(0.0, abs=1e-6)
    assert scaled["rmse"] > 10 * plain["rmse"]


def test_an_edge_on_the_wrong_side_is_not_agreed():
    target = _step_scene()
    hole = np.where(target < 2.0, np.float32(6.0), target)  # the box pushed behind the wall
    m = compute_metrics(hole, target, _all(target))
    assert all(agreed == 0 and predicted == sensor > 0 for agreed, predicted, sensor in m["boundary_counts"])
    assert m["boundary_f1"] == 0.0


def test_invalid_sensor_pixels_are_ignored_at_both_ends_of_a_pair():
    target = _step_scene()
    pred = target.copy()
    target[:, 100:110] = NAN  # a stripe of sensor holes...
    pred[:, 100:110] = 0.2  # ...where the prediction has strong edges of its own
    m = compute_metrics(pred, target, _all(target))
    assert m["boundary_f1"] == 1.0 and m["boundary_counts"][0][0] > 0
    assert m["n_pairs"] == H * (W - 4 - 14) + (H - 4) * (W - 10)  # a pair touching the stripe is not scored
    # the sensor's own edges next to its holes do not count either: NaN is no depth
    target[200:202, :] = 0.0
    assert compute_metrics(pred, target, _all(target) & (target > 0))["boundary_f1"] == 1.0


def test_thresholds_are_applied_to_the_depth_ratio():
    target = np.full((8, 64), 2.0, np.float32)
    target[:, 32:] = 2.0 * 1.12  # an edge above 1.05 and 1.10, below 1.15 and 1.25
    m = compute_metrics(target, target, _all(target))
    assert [c[2] > 0 for c in m["boundary_counts"]] == [True, True, False, False]
    # precision and recall are 0 where neither side has an edge (Depth Pro's convention)
    assert m["boundary_f1"] == pytest.approx(0.5)


def test_structure_metrics_pool_over_frames_like_the_accumulator():
    rng = np.random.default_rng(5)
    acc = MetricAccumulator(keep_per_frame=True)
    for _ in range(3):
        target = _step_scene()[::4, ::4] * rng.uniform(0.5, 2.0)
        pred = (target * rng.uniform(0.8, 1.25, target.shape) * rng.uniform(0.5, 2.0)).astype(np.float32)
        acc.update(pred, target, rng.random(target.shape) > 0.1)
    exact, pooled = acc.result(), pool_frame_metrics(acc.per_frame)
    for key in ("si_log", "boundary_f1", "boundary_precision", "boundary_recall"):
        assert pooled[key] == pytest.approx(exact[key], rel=1e-9)
    assert exact["boundary_f1"] == pytest.approx(boundary_scores(exact["boundary_counts"])["boundary_f1"])
    # si_log removes each frame's own scale, not one scale for the whole stream
    target = _step_scene()
    acc = MetricAccumulator()
    acc.update(2.0 * target, target, _all(target))
    acc.update(0.5 * target, target, _all(target))
    assert acc.result()["si_log"] == pytest.approx(0.0, abs=1e-6)
    assert compute_metrics(np.concatenate([2.0 * target, 0.5 * target]), np.concatenate([target, target]),
                           np.ones((2 * H, W), bool))["si_log"] == pytest.approx(math.log(2.0), rel=1e-4)  # fmt: skip


def test_one_dimensional_input_has_no_pairs():
    m = compute_metrics(np.array([1.0, 2.0]), np.array([1.0, 3.0]), np.array([True, True]))
    assert m["n_pairs"] == 0 and math.isnan(m["boundary_f1"]) and m["si_log"] > 0
