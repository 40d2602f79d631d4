"""Weight payloads: versioned safetensors bytes of the tensors adaptation changed.

A payload is what travels on the ``weights`` topic (``std_msgs/UInt8MultiArray``) from
the online trainer to estimators, possibly on another machine. It is a plain
``safetensors`` blob (no pickle, nothing executable) whose metadata names the format,
the architecture and its build config, the weights version and the tensors inside.

:func:`export_payload` writes only the tensors that differ from the base weights, so a
decoder-only adaptation of a large model sends a fraction of it. The delta is always
taken against the *base* weights, never against the previous version, so every
payload is complete on its own: a receiver that holds the base weights (or any earlier
version from the same base) and applies one payload gets exactly the sender's model,
and a late-joining estimator needs only the latest message (transient-local QoS).

:func:`import_payload` validates everything (format, architecture, config, names,
shapes, dtypes, finiteness) before copying a single tensor, so a refused payload leaves
the receiving model untouched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

__all__ = [
    "PAYLOAD_FORMAT",
    "PAYLOAD_FORMAT_VERSION",
    "PayloadError",
    "export_payload",
    "import_payload",
    "read_payload",
]

PAYLOAD_FORMAT = "depth_estimator_ros.weights"
PAYLOAD_FORMAT_VERSION = "1"


class PayloadError(ValueError):
    """A weight payload that cannot be applied to a model (the model is left untouched)."""


def _identity(model: nn.Module, arch: str | None) -> tuple[str, dict[str, Any]]:
    name = arch if arch is not None else getattr(model, "arch", None)
    if not isinstance(name, str) or not name:
        raise TypeError("model has no `arch` attribute; pass arch= to name its architecture")
    config = getattr(model, "config", None)
    return name, dict(config) if isinstance(config, Mapping) else {}


def _config_json(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=list)


def export_payload(
    model: nn.Module,
    version: int,
    *,
    base_state: Mapping[str, Tensor] | None = None,
    arch: str | None = None,
) -> bytes:
    """Serialise the tensors of ``model`` that differ from ``base_state``.

    Args:
        model: the adapted model (a ``DepthModel``, or any module with ``arch`` and
            ``config`` attributes, or pass ``arch``).
        version: the weights version (>= 0) stored in the metadata.
        base_state: the base weights (``state_dict`` of the model before adaptation);
            ``None`` exports every tensor.
        arch: architecture name to record when ``model`` has no ``arch`` attribute.

    Returns:
        The ``safetensors`` bytes.
    """
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"version must be an integer >= 0, got {version!r}")
    name, config = _identity(model, arch)
    tensors: dict[str, Tensor] = {}
    for key, value in model.state_dict().items():
        base = None if base_state is None else base_state.get(key)
        if base is not None and base.shape == value.shape and base.dtype == value.dtype:
            if torch.equal(base.to(value.device), value):
                continue
        tensors[key] = value.detach().to("cpu").contiguous().clone()
    metadata = {
        "format": PAYLOAD_FORMAT,
        "format_version": PAYLOAD_FORMAT_VERSION,
        "arch": name,
        "config": _config_json(config),
        "version": str(version),
        "tensors": json.dumps(sorted(tensors)),
    }
    return st_save(tensors, metadata=metadata)


def read_payload(payload: bytes) -> tuple[dict[str, str], dict[str, Tensor]]:
    """Parse payload bytes without applying them.

    Args:
        payload: bytes from :func:`export_payload`.

    Returns:
        ``(metadata, tensors)``.

    Raises:
        PayloadError: not a safetensors weights payload of this format.
    """
    if isinstance(payload, (bytearray, memoryview)):
        payload = bytes(payload)
    if not isinstance(payload, bytes):
        raise PayloadError(f"payload must be bytes, got {type(payload).__name__}")
    if payload[:1] == b"\x80" or payload[:2] == b"PK":
        raise PayloadError("payload looks like a pickle / torch.save file; only safetensors payloads are accepted")
    if len(payload) < 8:
        raise PayloadError(f"payload is truncated ({len(payload)} bytes)")
    header_len = int.from_bytes(payload[:8], "little")
    if header_len <= 0 or 8 + header_len > len(payload):
        raise PayloadError(
            f"payload is truncated or not safetensors (header of {header_len} bytes, {len(payload)} in all)"
        )
    try:
        header = json.loads(payload[8 : 8 + header_len])
        tensors = st_load(payload)
    except (SafetensorError, ValueError, RuntimeError, UnicodeDecodeError) as exc:
        raise PayloadError(f"payload is not valid safetensors: {exc}") from exc
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        raise PayloadError("payload has no metadata; not a depth_estimator_ros weights payload")
    if metadata.get("format") != PAYLOAD_FORMAT:
        raise PayloadError(f"payload format is {metadata.get('format')!r}, expected {PAYLOAD_FORMAT!r}")
    if metadata.get("format_version") != PAYLOAD_FORMAT_VERSION:
        raise PayloadError(
            f"payload format version {metadata.get('format_version')!r} is not supported "
            f"(this build reads {PAYLOAD_FORMAT_VERSION!r})"
        )
    try:
        names = json.loads(metadata.get("tensors", ""))
        version = int(metadata.get("version", ""))
    except ValueError as exc:
        raise PayloadError(f"payload metadata is malformed: {exc}") from exc
    if sorted(names) != sorted(tensors) or version < 0:
        raise PayloadError("payload metadata does not match its tensors")
    return metadata, tensors


def import_payload(model: nn.Module, payload: bytes, *, arch: str | None = None) -> int:
    """Copy a payload's tensors into ``model`` after validating all of them.

    Args:
        model: a model of the same architecture and build config as the exporter's.
        payload: bytes from :func:`export_payload`.
        arch: architecture name when ``model`` has no ``arch`` attribute.

    Returns:
        The payload's weights version.

    Raises:
        PayloadError: wrong format, another architecture or config, unknown tensor
            names, shape or dtype mismatch, or non-finite values. ``model`` is
            unchanged then.
    """
    metadata, tensors = read_payload(payload)
    name, config = _identity(model, arch)
    if metadata["arch"] != name:
        raise PayloadError(f"payload is for architecture {metadata['arch']!r}, this model is {name!r}")
    try:
        their_config = json.loads(metadata.get("config", "{}"))
    except ValueError as exc:
        raise PayloadError(f"payload config is malformed: {exc}") from exc
    our_config = json.loads(_config_json(config))
    if their_config != our_config:
        raise PayloadError(f"payload is for {name} built with {their_config}, this model was built with {our_config}")
    state = model.state_dict()
    for key, value in tensors.items():
        if key not in state:
            raise PayloadError(f"payload tensor {key!r} does not exist in this {name} model")
        target = state[key]
        if value.shape != target.shape:
            raise PayloadError(
                f"payload tensor {key!r} has shape {tuple(value.shape)}, the model has {tuple(target.shape)}"
            )
        if value.dtype != target.dtype:
            raise PayloadError(f"payload tensor {key!r} has dtype {value.dtype}, the model has {target.dtype}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise PayloadError(f"payload tensor {key!r} holds NaN or inf")
    with torch.no_grad():
        for key, value in tensors.items():
            state[key].copy_(value)
    return int(metadata["version"])
