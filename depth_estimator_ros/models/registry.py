"""The model registry: one name per architecture, one call to build it."""

from __future__ import annotations

from typing import Any

from .base import DepthModel
from .densenet import DenseNetDepth
from .fast import FastDepth
from .vgg import VGGCoarse, VGGCoarseConv

__all__ = ["ARCHITECTURES", "build_model"]

_REGISTRY: dict[str, type[DepthModel]] = {
    cls.arch: cls for cls in (FastDepth, VGGCoarse, VGGCoarseConv, DenseNetDepth)
}

#: Registered architecture names; the first is the default.
ARCHITECTURES: tuple[str, ...] = tuple(_REGISTRY)


def build_model(arch: str, *, encoder_weights: str | None = None, **kwargs: Any) -> DepthModel:
    """Build a depth model by registry name.

    Args:
        arch: one of :data:`ARCHITECTURES`.
        encoder_weights: ``"imagenet"`` to start the encoder from torchvision's
            ImageNet weights (torch hub cache, downloaded if missing), ``None`` for
            random initialisation. Nothing is downloaded otherwise.
        **kwargs: the architecture's options (``input_size``, ``min_depth``,
            ``max_depth``, ``progress``); ``model.config`` holds the ones that rebuild it.

    Returns:
        The model in training mode with its default trainable scope.

    Raises:
        ValueError: unknown ``arch`` or a bad option value.
        TypeError: an option the architecture does not have.
        RuntimeError: ImageNet weights were asked for and could not be obtained.
    """
    if arch not in _REGISTRY:
        raise ValueError(f"unknown architecture {arch!r}; allowed: {', '.join(ARCHITECTURES)}")
    return _REGISTRY[arch](encoder_weights=encoder_weights, **kwargs)
