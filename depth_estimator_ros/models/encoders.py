"""Encoder weights: torchvision's ImageNet weights API or a local safetensors state dict.

``encoder_weights`` of every architecture takes

- ``None``: random initialisation (nothing is read or downloaded);
- ``"imagenet"``: torchvision's weights API (the torch hub cache, downloaded once on a
  machine with internet);
- a path to a local ``.safetensors`` state dict of the torchvision classification model
  the encoder comes from (e.g. ``mobilenet_v2(weights=None).state_dict()``). Pickles
  (``.pth`` / ``torch.save`` files) are refused, never unpickled.

:func:`encoder_weights_provenance` says exactly which weights were used, for checkpoints.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.parse import urlparse

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from torch import Tensor, nn
from torchvision.models import WeightsEnum

from ..safetensors_format import SafetensorsFormatError, looks_like_pickle, parse_header

__all__ = [
    "ENCODER_WEIGHTS",
    "check_encoder_weights",
    "encoder_state_dict",
    "encoder_weights_provenance",
    "imagenet_state_dict",
    "load_encoder_weights",
]

#: Named values accepted for ``encoder_weights``; a path to a local safetensors file is the third form.
ENCODER_WEIGHTS = ("imagenet", None)


def check_encoder_weights(encoder_weights: str | os.PathLike[str] | None) -> None:
    """Raise ValueError unless ``encoder_weights`` is ``None``, ``"imagenet"`` or an existing file."""
    if encoder_weights in ENCODER_WEIGHTS:
        return
    if not isinstance(encoder_weights, (str, os.PathLike)):
        raise ValueError(f"encoder_weights must be one of {ENCODER_WEIGHTS} or a path to a .safetensors "
                         f"state dict, got {encoder_weights!r}")
    path = Path(encoder_weights).expanduser()
    if not path.is_file():
        raise ValueError(f"encoder_weights must be one of {ENCODER_WEIGHTS} or a path to a .safetensors "
                         f"state dict; {str(encoder_weights)!r} is not a file")


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
            f"On a machine without internet, copy that file by hand to {cache}, pass a local "
            "safetensors state dict as encoder_weights, "
            "or build the model with encoder_weights=None to start from random weights."
        ) from exc
    return _under(state, prefix)


def _under(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def _read_local(path: Path) -> dict[str, Tensor]:
    """Read a safetensors state dict, recognised by its structure; pickles are refused, never unpickled."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read encoder weights {path}: {exc}") from exc
    try:
        parse_header(data)
    except SafetensorsFormatError as exc:
        if not exc.truncated and looks_like_pickle(data):
            raise ValueError(f"encoder weights {path} look like a torch.save/pickle file; pickles are never "
                             "loaded (they can run code). Convert them once with safetensors.torch.save_file."
                             ) from None
        raise ValueError(f"encoder weights {path} are not a safetensors file: {exc}") from None
    try:
        return safetensors_load(data)
    except SafetensorError as exc:
        raise ValueError(f"encoder weights {path} are not a safetensors file: {exc}") from exc


def encoder_state_dict(
    encoder_weights: str | os.PathLike[str] | None, weights: WeightsEnum, *, prefix: str, progress: bool = True
) -> dict[str, Tensor] | None:
    """Return the encoder tensors ``encoder_weights`` asks for, keyed relative to ``prefix``.

    Args:
        encoder_weights: ``None``, ``"imagenet"`` or a local safetensors path (see the module docstring).
        weights: the torchvision weights enum member ``"imagenet"`` stands for.
        prefix: module prefix of the encoder in the classification model (e.g. ``"features."``).
        progress: show torchvision's download progress bar.

    Returns:
        ``None`` for random initialisation, else the tensors.

    Raises:
        ValueError: a local file that is missing, a pickle, not safetensors, or has no tensor under ``prefix``.
        RuntimeError: ImageNet weights could not be downloaded.
    """
    check_encoder_weights(encoder_weights)
    if encoder_weights is None:
        return None
    if encoder_weights == "imagenet":
        return imagenet_state_dict(weights, prefix=prefix, progress=progress)
    path = Path(encoder_weights).expanduser()
    state = _under(_read_local(path), prefix)
    if not state:
        raise ValueError(f"encoder weights {path} hold no tensor under {prefix!r}: not a state dict of "
                         f"the network {weights.__class__.__name__} belongs to")
    return state


def load_encoder_weights(module: nn.Module, state: dict[str, Tensor], source: object) -> None:
    """Load ``state`` into ``module`` strictly for the keys the module has.

    Tensors the module does not use (a classifier, layers after the last tap) are
    ignored; a missing tensor or a shape mismatch is an error naming ``source``.

    Raises:
        ValueError: the tensors do not fit the encoder (another architecture).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    wrong = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or wrong:
        raise ValueError(
            f"encoder weights {source} do not fit this encoder (another architecture?): "
            f"{len(missing)} tensor(s) missing {missing[:3]}, {len(wrong)} of another shape {wrong[:3]}"
        )
    module.load_state_dict({k: state[k] for k in own}, strict=True)


def encoder_weights_provenance(encoder_weights: str | os.PathLike[str] | None, weights: WeightsEnum | None) -> dict:
    """Describe which encoder weights were used, for checkpoint provenance.

    Returns:
        ``{"source": "random"}``, ``{"source": "torchvision", "weights": "<enum>", "url": ...}`` or
        ``{"source": "file", "path": ..., "sha256": ..., "bytes": ...}``.
    """
    if encoder_weights is None:
        return {"source": "random"}
    if encoder_weights == "imagenet":
        return {"source": "torchvision", **({} if weights is None else {"weights": str(weights), "url": weights.url})}
    path = Path(encoder_weights).expanduser().resolve()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"source": "file", "path": str(path), "name": path.name, "sha256": digest, "bytes": path.stat().st_size}
