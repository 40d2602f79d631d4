"""ImageNet encoder weights through torchvision's weights API, with plain errors offline."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import torch
from torch import Tensor
from torchvision.models import WeightsEnum

__all__ = ["ENCODER_WEIGHTS", "check_encoder_weights", "imagenet_state_dict"]

#: Values accepted for ``encoder_weights``.
ENCODER_WEIGHTS = ("imagenet", None)


def check_encoder_weights(encoder_weights: str | None) -> None:
    """Raise ValueError unless ``encoder_weights`` is one of :data:`ENCODER_WEIGHTS`."""
    if encoder_weights not in ENCODER_WEIGHTS:
        raise ValueError(f"encoder_weights must be one of {ENCODER_WEIGHTS}, got {encoder_weights!r}")


def imagenet_state_dict(weights: WeightsEnum, *, prefix: str, progress: bool = True) -> dict[str, Tensor]:
    """Fetch torchvision's ImageNet weights and return the tensors under ``prefix``.

    torchvision looks in ``<torch.hub.get_dir()>/checkpoints/`` first and downloads
    only when the file is missing. The file is read with ``weights_only=True``, so
    a tampered cache file cannot run code.

    Args:
        weights: a torchvision weights enum member, e.g. ``MobileNet_V3_Large_Weights.IMAGENET1K_V2``.
        prefix: module prefix to keep and strip, e.g. ``"features."``.
        progress: show torchvision's download progress bar.

    Returns:
        The selected tensors keyed relative to ``prefix``.

    Raises:
        RuntimeError: the file is not cached and could not be downloaded.
    """
    try:
        state = weights.get_state_dict(progress=progress, check_hash=True, weights_only=True)
    except OSError as exc:  # URLError, socket and proxy errors are all OSErrors
        cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path))
        raise RuntimeError(
            f"ImageNet weights {weights} could not be downloaded from {weights.url} ({exc}). "
            f"On a machine without internet, copy that file by hand to {cache}, "
            "or build the model with encoder_weights=None to start from random weights."
        ) from exc
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
