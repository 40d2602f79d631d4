"""The estimator's dense output while the sensor is there: ``depth/filled/image`` and its mask, from arrays.

Plain numpy glue between the node and :func:`~depth_estimator_ros.learning.fill.fill_depth`:
bring the prediction to the sensor depth's size, fill, and say which pixel came from where.
The sensor depth is assumed *registered* to the colour camera (``depth_registered``, or a
RealSense's ``aligned_depth_to_color``): the same field of view, so a resize is all it takes
to put the prediction on the sensor's pixels. A sensor image of another aspect ratio is not
registered that way (:func:`aspect_problem`), and the node drops it.
"""

from __future__ import annotations

import cv2
import numpy as np

from depth_estimator_ros.learning.fill import fill_depth

__all__ = ["MASK_MEASURED", "MASK_FILLED", "MASK_NONE", "ASPECT_TOLERANCE", "aspect_problem", "fill_outputs"]

#: ``depth/filled/mask`` values: measured by the sensor, filled from the prediction, neither (NaN).
MASK_MEASURED, MASK_FILLED, MASK_NONE = 255, 128, 0
#: Largest relative difference of the width/height ratios of a registered sensor depth and the colour image.
ASPECT_TOLERANCE = 0.02


def aspect_problem(sensor_shape: tuple[int, ...], pred_shape: tuple[int, ...]) -> str:
    """Return why a sensor depth cannot be registered to the prediction by a resize, or ``""``.

    Args:
        sensor_shape: ``(H, W)`` of the sensor depth.
        pred_shape: ``(H, W)`` of the prediction (the colour image's size).
    """
    sensor_aspect = sensor_shape[1] / sensor_shape[0]
    pred_aspect = pred_shape[1] / pred_shape[0]
    if abs(sensor_aspect - pred_aspect) <= ASPECT_TOLERANCE * pred_aspect:
        return ""
    return (f"sensor depth {sensor_shape[1]}x{sensor_shape[0]} and colour image {pred_shape[1]}x{pred_shape[0]} "
            "differ in aspect ratio: not registered depth (same field of view) as depth/filled/image needs")


def fill_outputs(sensor: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill the sensor's holes with the prediction at the sensor's size, and mark each pixel's origin.

    Args:
        sensor: ``(h, w)`` float32 sensor depth in metres, NaN invalid (registered to the colour camera).
        pred: ``(H, W)`` float32 predicted depth in metres, NaN invalid; resized (bilinear) to
            ``(h, w)`` first when the sizes differ.

    Returns:
        ``(filled, mask)``: ``filled`` is ``(h, w)`` float32 metres, the sensor's value bit for bit
        where it measured, the scale-aligned prediction in its holes, NaN where neither has a depth;
        ``mask`` is ``(h, w)`` uint8, :data:`MASK_MEASURED` / :data:`MASK_FILLED` / :data:`MASK_NONE`.
    """
    if pred.shape != sensor.shape:
        pred = cv2.resize(pred, (sensor.shape[1], sensor.shape[0]), interpolation=cv2.INTER_LINEAR)
    filled, measured = fill_depth(sensor, pred)
    mask = np.full(filled.shape, MASK_NONE, np.uint8)
    mask[np.isfinite(filled)] = MASK_FILLED
    mask[measured] = MASK_MEASURED
    return filled, mask
