"""Learning layer: losses, metrics, transforms, hole filling, the inference predictor, the offline trainer.

See docs/ARCHITECTURE.md. The offline trainer lives in
:mod:`depth_estimator_ros.learning.trainer` and is imported from there (it pulls in the
data and plotting stack, which inference does not need).
"""

from depth_estimator_ros.learning.device import DEVICE_CHOICES, resolve_device
from depth_estimator_ros.learning.fill import fill_depth
from depth_estimator_ros.learning.losses import (
    LOSSES,
    head_l2,
    masked_l1,
    masked_mse,
    masked_rmse,
    model_loss,
    valid_mask,
)
from depth_estimator_ros.learning.metrics import METRIC_NAMES, MetricAccumulator, compute_metrics
from depth_estimator_ros.learning.predictor import Predictor
from depth_estimator_ros.learning.transforms import (
    augment,
    border_crop,
    resize_depth,
    resize_rgb,
    to_float_rgb,
    to_tensor_batch,
)

__all__ = [
    "DEVICE_CHOICES",
    "LOSSES",
    "METRIC_NAMES",
    "MetricAccumulator",
    "Predictor",
    "augment",
    "border_crop",
    "compute_metrics",
    "fill_depth",
    "head_l2",
    "masked_l1",
    "masked_mse",
    "masked_rmse",
    "model_loss",
    "resize_depth",
    "resolve_device",
    "resize_rgb",
    "to_float_rgb",
    "to_tensor_batch",
    "valid_mask",
]
