"""Turn a user's device choice ("auto", "cpu", "cuda", "cuda:1") into a torch.device."""

from __future__ import annotations

import torch

from depth_estimator_ros import parameters

__all__ = ["DEVICE_CHOICES", "prefers_channels_last", "resolve_device"]

DEVICE_CHOICES: tuple[str, ...] = parameters.DEVICE_CHOICES
"""The device names every tool accepts (``"cuda:N"`` picks one GPU)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device for a choice, checking that it exists here.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or a ``torch.device``.

    Returns:
        The device.

    Raises:
        ValueError: an unknown name, or CUDA asked for where torch sees no GPU.
    """
    if isinstance(device, torch.device):
        spec = str(device)
    elif isinstance(device, str):
        spec = device.strip().lower()
    else:
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        try:
            resolved = torch.device(spec)
        except RuntimeError:
            raise ValueError(f"device must be one of {DEVICE_CHOICES} or 'cuda:N', got {device!r}") from None
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU here; use 'cpu' or 'auto'")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) exist")
        return resolved
    raise ValueError(f"device must be one of {DEVICE_CHOICES} or 'cuda:N', got {device!r}")


def prefers_channels_last(device: torch.device) -> bool:
    """Return whether convolutions on ``device`` should run in channels-last memory format.

    The same arithmetic in another layout: on a CPU the shipped model's inference is
    15-21 % faster and a decoder training step about 20 % (README, "Inference backends"
    and the adaptation section); on CUDA it was never measured here, so it stays off.
    """
    return device.type == "cpu"
