"""Checkpoint files: safetensors tensors + JSON metadata, written atomically, never unpickled."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from .. import __version__
from ..atomic import write_bytes
from ..safetensors_format import SafetensorsFormatError, looks_like_pickle, parse_header
from .base import DepthModel
from .registry import ARCHITECTURES, build_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "DEFAULT_CHECKPOINT",
    "SHIPPED_CHECKPOINT",
    "CheckpointError",
    "load_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]

#: ``format`` value in the safetensors metadata of every checkpoint this package writes.
CHECKPOINT_FORMAT = "depth_estimator_ros.checkpoint"
#: Newest metadata layout this code reads and the one it writes.
CHECKPOINT_VERSION = 1

# A safetensors header larger than this is not one of ours (ours are a few hundred kB).
_MAX_HEADER_BYTES = 64 * 1024 * 1024
_REQUIRED_KEYS = ("format", "format_version", "arch", "config")


#: The base model shipped with the package (package data, also installed into
#: ``share/depth_estimator_ros/weights/``): ``fast`` with an ImageNet MobileNetV2 encoder,
#: trained on the real rooms of ``../shared/data/rooms`` (README, "Base model").
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent.parent / "weights" / "fast_rooms.safetensors"
#: The ``checkpoint`` parameter value that names :data:`SHIPPED_CHECKPOINT`.
DEFAULT_CHECKPOINT = "default"


def resolve_checkpoint(checkpoint: str | os.PathLike[str]) -> Path:
    """Return the file a ``checkpoint`` setting names: ``"default"`` is the shipped base model.

    Raises:
        CheckpointError: ``"default"`` and the package was installed without its checkpoint.
    """
    if os.fspath(checkpoint) == DEFAULT_CHECKPOINT:
        if not SHIPPED_CHECKPOINT.is_file():
            raise CheckpointError(f"the shipped checkpoint {SHIPPED_CHECKPOINT} is missing from this "
                                  "installation (reinstall the package, or give a checkpoint path)")
        return SHIPPED_CHECKPOINT
    return Path(checkpoint).expanduser()


class CheckpointError(ValueError):
    """A file is not a usable checkpoint; the message names the file and the problem."""


def save_checkpoint(
    path: str | os.PathLike[str],
    model: DepthModel,
    *,
    provenance: dict | None = None,
    dtype: torch.dtype | None = None,
) -> None:
    """Write ``model`` to a safetensors checkpoint atomically.

    The tensors are the full ``state_dict`` (parameters and persistent buffers);
    the safetensors ``__metadata__`` holds ``format``, ``format_version``, ``arch``,
    ``config``, ``input_size``, ``min_depth``, ``max_depth``, ``provenance``,
    ``package_version`` and ``created`` (UTC, ISO 8601). The data goes to a
    temporary file in the same directory, is flushed and fsynced, then renamed
    over ``path``: a reader sees the old file or the new one, never a mix, and a
    failed write leaves the old file untouched.

    Args:
        path: destination file (conventionally ``*.safetensors``).
        model: the model to save.
        provenance: JSON-able description of how the weights were made
            (dataset, epochs, metrics, ...).
        dtype: store floating tensors as this type (``torch.float16`` halves a shipped
            file); :func:`load_checkpoint` turns them back into the model's own type.

    Raises:
        TypeError: ``model`` is not a DepthModel or ``provenance`` is not JSON-able.
        CheckpointError: the model holds NaN/inf values.
        OSError: the file could not be written (the previous file is kept).
    """
    if not isinstance(model, DepthModel):
        raise TypeError(f"model must be a DepthModel, got {type(model).__name__}")
    path = Path(path)
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "format_version": str(CHECKPOINT_VERSION),
        "arch": model.arch,
        "config": json.dumps(model.config, sort_keys=True),
        "input_size": json.dumps(list(model.input_size)),
        "min_depth": repr(model.min_depth),
        "max_depth": repr(model.max_depth),
        "provenance": _json_or_type_error(provenance or {}, "provenance"),
        "package_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    tensors = {
        name: (tensor.detach().to("cpu", dtype=dtype) if dtype is not None and tensor.is_floating_point()
               else tensor.detach().to("cpu")).contiguous()
        for name, tensor in model.state_dict().items()
    }
    bad = _non_finite(tensors)
    if bad:
        raise CheckpointError(f"refusing to save {path}: tensor(s) with NaN/inf values: {', '.join(bad)}")
    payload = safetensors_save(tensors, metadata=metadata)
    write_bytes(path, payload)


def load_checkpoint(
    path: str | os.PathLike[str], *, arch: str | None = None, map_location: str | torch.device = "cpu"
) -> tuple[DepthModel, dict[str, Any]]:
    """Read a checkpoint written by :func:`save_checkpoint` and rebuild its model.

    Only the safetensors format is read, so loading cannot execute code.

    Args:
        path: the checkpoint file, or ``"default"`` for :data:`SHIPPED_CHECKPOINT`.
        arch: if given, the architecture the caller expects; any other is refused.
        map_location: device to put the model on.

    Returns:
        ``(model, metadata)``: the model in eval mode with its default trainable
        scope, and the decoded metadata (``format``, ``format_version`` (int),
        ``arch``, ``config`` (dict), ``input_size`` (tuple), ``min_depth``,
        ``max_depth`` (float), ``provenance`` (dict), ``package_version``, ``created``).

    Raises:
        CheckpointError: missing file, a directory, truncated or foreign file, a
            pickle/``torch.save`` file, missing or foreign metadata, another
            architecture than ``arch``, tensors not matching the architecture, or
            NaN/inf values.
    """
    path = resolve_checkpoint(path)
    if arch is not None and arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {ARCHITECTURES} or None, got {arch!r}")
    data = _read_file(path)
    header = _check_header(path, data)
    try:
        tensors = safetensors_load(data)
    except (SafetensorError, KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a valid safetensors file: {exc}") from exc
    metadata = _decode_metadata(path, header.get("__metadata__"))
    if arch is not None and metadata["arch"] != arch:
        raise CheckpointError(f"{path}: checkpoint is for {metadata['arch']!r}, expected {arch!r}")
    try:
        model = build_model(metadata["arch"], **metadata["config"])
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise CheckpointError(f"{path}: its config {metadata['config']} does not build "
                              f"{metadata['arch']!r}: {exc}") from exc
    expected = model.state_dict()
    tensors = {  # a checkpoint stored in float16 (a shipped file) widens to the model's float32
        name: t.to(expected[name].dtype) if name in expected and t.dtype == torch.float16
        and expected[name].dtype == torch.float32 else t
        for name, t in tensors.items()
    }
    _check_tensors(path, model, tensors)
    model.load_state_dict(tensors, strict=True)
    return model.to(map_location).eval(), metadata


def _json_or_type_error(value: Any, what: str) -> str:
    """Return ``value`` as JSON text or raise TypeError naming ``what``."""
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be JSON-able (finite numbers, str, list, dict): {exc}") from exc


def _non_finite(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Return the names of floating tensors holding NaN or inf."""
    return [name for name, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def _read_file(path: Path) -> bytes:
    """Return the file's bytes or raise CheckpointError for a missing file or a directory."""
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc


def _check_header(path: Path, data: bytes) -> dict[str, Any]:
    """Return the parsed safetensors header, or raise CheckpointError for a foreign or truncated file.

    The file is recognised by its structure (:func:`~depth_estimator_ros.safetensors_format.parse_header`),
    never by its first bytes: those are the low bytes of the header length and can be
    anything, 0x80 included. Only the wording of a refusal looks at them.
    """
    try:
        return parse_header(data, max_header_bytes=_MAX_HEADER_BYTES)
    except SafetensorsFormatError as exc:
        if exc.truncated:
            raise CheckpointError(f"{path} is truncated or too short ({exc})") from None
        if looks_like_pickle(data):
            raise CheckpointError(f"{path} looks like a torch.save/pickle file; pickles are never loaded "
                                  "(they can run code). Re-save the weights with save_checkpoint().") from None
        raise CheckpointError(f"{path} is not a safetensors checkpoint ({exc})") from None


def _decode_metadata(path: Path, raw: dict[str, str] | None) -> dict[str, Any]:
    """Return the typed metadata or raise CheckpointError naming what is missing or foreign."""
    if not raw:
        raise CheckpointError(f"{path} has no metadata; it is a safetensors file but not a "
                              f"{CHECKPOINT_FORMAT} checkpoint")
    if raw.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint (format {raw.get('format')!r})")
    missing = [key for key in _REQUIRED_KEYS if key not in raw]
    if missing:
        raise CheckpointError(f"{path}: metadata lacks {', '.join(missing)}")
    try:
        version = int(raw["format_version"])
        decoded: dict[str, Any] = {
            "format": raw["format"],
            "format_version": version,
            "arch": raw["arch"],
            "config": json.loads(raw["config"]),
            "input_size": tuple(json.loads(raw.get("input_size", "[]"))),
            "min_depth": float(raw.get("min_depth", "nan")),
            "max_depth": float(raw.get("max_depth", "nan")),
            "provenance": json.loads(raw.get("provenance", "{}")),
            "package_version": raw.get("package_version", ""),
            "created": raw.get("created", ""),
        }
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. input_size "5": not a list
        raise CheckpointError(f"{path}: malformed metadata: {exc}") from None
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} has format version {version}; this code reads up to "
                              f"{CHECKPOINT_VERSION} (written by a newer depth_estimator_ros)")
    if decoded["arch"] not in ARCHITECTURES:
        raise CheckpointError(f"{path}: unknown architecture {decoded['arch']!r}; "
                              f"allowed: {', '.join(ARCHITECTURES)}")
    if not isinstance(decoded["config"], dict):
        raise CheckpointError(f"{path}: metadata config must be a JSON object, got {raw['config']!r}")
    return decoded


def _check_tensors(path: Path, model: DepthModel, tensors: dict[str, torch.Tensor]) -> None:
    """Raise CheckpointError unless ``tensors`` match the model's state exactly and are finite."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: tensors do not match architecture {model.arch!r}: "
            f"{len(missing)} missing {_first(missing)}, {len(unexpected)} unexpected {_first(unexpected)}"
        )
    wrong = [
        f"{name} {tuple(tensors[name].shape)}/{tensors[name].dtype} vs {tuple(ref.shape)}/{ref.dtype}"
        for name, ref in expected.items()
        if tensors[name].shape != ref.shape or tensors[name].dtype != ref.dtype
    ]
    if wrong:
        raise CheckpointError(f"{path}: tensor shapes/dtypes do not match architecture {model.arch!r} "
                              f"(saved vs expected): {_first(wrong)}")
    bad = _non_finite(tensors)
    if bad:
        raise CheckpointError(f"{path}: tensor(s) with NaN/inf values: {_first(bad)}")


def _first(items: list[str], count: int = 5) -> str:
    """Return up to ``count`` items as a bracketed list, noting how many were left out."""
    more = f", ... {len(items) - count} more" if len(items) > count else ""
    return "[" + ", ".join(items[:count]) + more + "]"
