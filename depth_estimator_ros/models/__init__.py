"""Depth models (torchvision encoders, decoders), the registry and checkpoint I/O.

See docs/ARCHITECTURE.md for the contract every model follows.
"""

from .base import SCOPES, DepthModel, TrainingDefaults, freeze_batchnorm
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .encoders import ENCODER_WEIGHTS
from .registry import ARCHITECTURES, build_model

__all__ = [
    "ARCHITECTURES",
    "ENCODER_WEIGHTS",
    "SCOPES",
    "CheckpointError",
    "DepthModel",
    "TrainingDefaults",
    "build_model",
    "freeze_batchnorm",
    "load_checkpoint",
    "save_checkpoint",
]
