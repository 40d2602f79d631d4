"""Tests of ``ros.filled``: depth/filled/image and its mask from a sensor depth and a prediction."""

from __future__ import annotations

import numpy as np

from depth_estimator_ros.ros.filled import MASK_FILLED, MASK_MEASURED, MASK_NONE, aspect_problem, fill_outputs


def _sensor(shape: tuple[int, int]) -> np.ndarray:
    height, width = shape
    depth = np.repeat(np.linspace(1.0, 2.0, width, dtype=np.float32)[None], height, axis=0)
    depth[: height // 2, : width // 2] = np.nan
    return depth


def test_fill_outputs_at_the_sensor_size_keeps_measured_pixels_and_marks_each_origin():
    sensor = _sensor((24, 32))
    pred = np.full((48, 64), 3.0, np.float32)  # another size: resized to the sensor's
    pred[-4:, -4:] = np.nan  # where the sensor measured: no matter
    filled, mask = fill_outputs(sensor, pred)
    measured = np.isfinite(sensor)
    assert filled.shape == mask.shape == sensor.shape and filled.dtype == np.float32 and mask.dtype == np.uint8
    np.testing.assert_array_equal(filled[measured].view(np.uint32), sensor[measured].view(np.uint32))
    assert np.isfinite(filled[~measured]).all()
    np.testing.assert_array_equal(mask, np.where(measured, MASK_MEASURED, MASK_FILLED))
    # a constant prediction is scaled to the sensor at the hole's rim: no seam
    assert abs(filled[11, 15] - sensor[12, 16]) < 0.05


def test_fill_outputs_marks_pixels_neither_measured_nor_predicted():
    sensor = _sensor((8, 8))
    pred = np.full((8, 8), 2.0, np.float32)
    pred[0, 0] = np.nan  # in the sensor's hole too
    filled, mask = fill_outputs(sensor, pred)
    assert np.isnan(filled[0, 0]) and mask[0, 0] == MASK_NONE
    assert set(np.unique(mask)) == {MASK_NONE, MASK_FILLED, MASK_MEASURED}


def test_aspect_problem_accepts_a_resize_of_registered_depth_and_names_another_field_of_view():
    assert aspect_problem((240, 320), (480, 640)) == ""
    assert aspect_problem((480, 640), (480, 640)) == ""
    problem = aspect_problem((1024, 1280), (480, 640))
    assert "1280x1024" in problem and "640x480" in problem and "registered" in problem
