"""Depth models (torchvision encoders, decoders), the registry and checkpoint I/O.

See docs/ARCHITECTURE.md for the contract every model follows.
"""

from .base import CANONICAL_FOCAL, SCOPES, DepthModel, TrainingDefaults, camera_scale, freeze_batchnorm
from .checkpoint import (
    DEFAULT_CHECKPOINT,
    SHIPPED_CHECKPOINT,
    CheckpointError,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from .encoders import ENCODER_WEIGHTS
from .registry import ARCHITECTURES, build_model

__all__ = [
    "ARCHITECTURES",
    "CANONICAL_FOCAL",
    "DEFAULT_CHECKPOINT",
    "SHIPPED_CHECKPOINT",
    "ENCODER_WEIGHTS",
    "SCOPES",
    "CheckpointError",
    "DepthModel",
    "TrainingDefaults",
    "build_model",
    "camera_scale",
    "freeze_batchnorm",
    "load_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]
