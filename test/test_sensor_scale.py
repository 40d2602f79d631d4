"""Tests of the sensor scale: the depth ratio of the last pairs on the estimator's output."""

from __future__ import annotations

import numpy as np
import pytest

from depth_estimator_ros.adaptation.sensor_scale import GAIN_LIMITS, GUARD_PAIRS, SCALE_FRAMES, SensorScale


def _depth(seed: int, shape=(48, 64)) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1.0, 4.0, shape).astype(np.float32)


def test_the_next_frames_take_the_mean_ratio_of_the_last_pairs():
    scale = SensorScale(0.1, 10.0)
    assert scale.gain(0.0) == 1.0  # no pair yet: the model's own depth
    predicted = _depth(0)
    assert scale.observe(predicted, 1.5 * predicted, 0.0) == pytest.approx(np.log(1.5), abs=1e-6)
    out = scale.apply(predicted, 0.033)
    np.testing.assert_allclose(out, np.clip(1.5 * predicted, 0.1, 10.0), rtol=1e-6)
    scale.observe(predicted, 2.0 * predicted, 0.033)
    assert scale.gain(0.066) == pytest.approx(np.sqrt(1.5 * 2.0), rel=1e-6)  # the mean of the log ratios
    n = SCALE_FRAMES + GUARD_PAIRS  # the pairs the jump's wrong factor counts against it in, too
    for i in range(n):
        scale.observe(predicted, 0.8 * predicted, 0.1 + 0.01 * i)
    assert scale.gain(0.1 + 0.01 * n) == pytest.approx(0.8, rel=1e-6)  # older pairs have left the window
    assert scale.pairs == 2 + n


def test_holes_and_another_sensor_size_do_not_bias_the_ratio():
    scale = SensorScale(0.1, 10.0)
    predicted = np.full((48, 64), 2.0, np.float32)
    sensor = np.full((96, 128), 3.0, np.float32)  # twice the size, same field of view
    sensor[:, :40] = np.nan  # unmeasured
    sensor[:10] = 0.0  # out of range
    assert scale.observe(predicted, sensor, 1.0) == pytest.approx(np.log(1.5), abs=1e-6)
    assert scale.observe(predicted, np.full((48, 64), np.nan, np.float32), 1.1) is None  # nothing measured
    assert scale.pairs == 1 and scale.gain(1.1) == pytest.approx(1.5)


def test_the_factor_is_bounded_and_goes_back_to_one_without_pairs():
    scale = SensorScale(0.1, 10.0, hold_s=1.0)
    predicted = _depth(1)
    scale.observe(predicted, 5.0 * predicted, 10.0)
    assert scale.gain(10.5) == GAIN_LIMITS[1]
    assert scale.gain(11.5) == 1.0  # the sensor gone for more than hold_s
    assert scale.apply(predicted, 11.5) is predicted
    scale.observe(predicted, 1.2 * predicted, 3.0)  # a stamp from before: a bag played again starts over
    assert scale.pairs == 2 and scale.gain(3.1) == pytest.approx(1.2, rel=1e-6)
    scale.reset()
    assert scale.gain(3.1) == 1.0
    with pytest.raises(ValueError, match="frames"):
        SensorScale(0.1, 10.0, frames=0)


def test_a_factor_that_raised_the_error_of_the_last_pairs_is_not_applied():
    """Near pixels at twice the prediction, far ones where predicted: the median says 2, the error says no."""
    predicted = np.full((48, 64), 1.0, np.float32)
    predicted[:, :26] = 4.0
    sensor = np.where(predicted > 2.0, predicted, 2.0 * predicted).astype(np.float32)
    scale = SensorScale(0.1, 10.0)
    scale.observe(predicted, sensor, 0.0)
    assert scale.gain(0.01) == pytest.approx(2.0)  # nothing against it yet: the median ratio
    for i in range(1, 3):
        scale.observe(predicted, sensor, 0.01 * i)  # x2 would have made this pair worse
    assert GUARD_PAIRS > 0 and scale.gain(0.03) == 1.0
