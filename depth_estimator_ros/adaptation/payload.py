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

:func:`read_payload` recognises a payload by its structure (safetensors length, JSON
header, offsets inside the payload; never by a sniffed first byte) and checks its
metadata against a schema; :func:`import_payload` then validates everything
(architecture, config, names, shapes, dtypes, finiteness) before copying a single
tensor, so a refused payload leaves the receiving model untouched. Every refusal is a
:class:`PayloadError`.

Versions are ordered per trainer *run*: the metadata carries the sender's run id
(:func:`new_run_id`, one per adaptation engine), and :class:`RunOrder` refuses a
version older than or equal to the one in force of the same run while accepting any
version of a new run (a restarted trainer counts from 1 again).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn

from depth_estimator_ros.safetensors_format import SafetensorsFormatError, looks_like_pickle, parse_header

__all__ = [
    "PAYLOAD_FORMAT",
    "PAYLOAD_FORMAT_VERSION",
    "PayloadError",
    "RunOrder",
    "apply_payload",
    "check_payload",
    "export_payload",
    "import_payload",
    "new_run_id",
    "read_payload",
]

PAYLOAD_FORMAT = "depth_estimator_ros.weights"
PAYLOAD_FORMAT_VERSION = "1"

_REQUIRED_KEYS = ("arch", "config", "version", "tensors")
_MAX_VERSION = 2**63 - 1
_RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def new_run_id() -> str:
    """Return a fresh random run id (a uuid4 in hex) for one trainer run."""
    return uuid.uuid4().hex


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
    run_id: str | None = None,
) -> bytes:
    """Serialise the tensors of ``model`` that differ from ``base_state``.

    Args:
        model: the adapted model (a ``DepthModel``, or any module with ``arch`` and
            ``config`` attributes, or pass ``arch``).
        version: the weights version (>= 0) stored in the metadata.
        base_state: the base weights (``state_dict`` of the model before adaptation);
            ``None`` exports every tensor.
        arch: architecture name to record when ``model`` has no ``arch`` attribute.
        run_id: the sender's run id (:func:`new_run_id`; 1-64 characters of
            ``A-Z a-z 0-9 . _ -``): receivers refuse a version older than or equal to
            the one in force of the same run (:class:`RunOrder`). ``None`` = a new
            random id, i.e. a payload ordered against no other.

    Returns:
        The ``safetensors`` bytes.

    Raises:
        ValueError: ``version`` outside ``0 .. 2**63 - 1`` or a malformed ``run_id``.
    """
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= _MAX_VERSION:
        raise ValueError(f"version must be an integer in 0..{_MAX_VERSION}, got {version!r}")
    run_id = new_run_id() if run_id is None else run_id
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"run_id must be 1-64 characters of A-Z a-z 0-9 . _ -, got {run_id!r}")
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
        "run": run_id,
        "tensors": json.dumps(sorted(tensors)),
    }
    return st_save(tensors, metadata=metadata)


def read_payload(payload: bytes | bytearray | memoryview) -> tuple[dict[str, str], dict[str, Tensor]]:
    """Parse payload bytes without applying them.

    The bytes are recognised by their structure (:func:`~depth_estimator_ros.safetensors_format.parse_header`:
    length, JSON header, offsets inside the payload), then the metadata is checked
    against the schema below before any tensor is built.

    Metadata schema (every value a string): ``format`` = :data:`PAYLOAD_FORMAT`,
    ``format_version`` = :data:`PAYLOAD_FORMAT_VERSION`, ``arch`` a non-empty name,
    ``config`` a JSON object, ``version`` a decimal integer in ``0 .. 2**63 - 1``,
    ``tensors`` a JSON list of the tensor names (each once), and optionally ``run``,
    the sender's run id (1-64 characters of ``A-Z a-z 0-9 . _ -``).

    Args:
        payload: bytes from :func:`export_payload`.

    Returns:
        ``(metadata, tensors)``.

    Raises:
        PayloadError: not a safetensors weights payload of this format (and nothing else).
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise PayloadError(f"payload must be bytes, got {type(payload).__name__}")
    try:
        header = parse_header(payload)
    except SafetensorsFormatError as exc:
        if not exc.truncated and looks_like_pickle(payload):
            raise PayloadError("payload looks like a pickle / torch.save file; only safetensors payloads "
                               f"are accepted ({exc})") from None
        raise PayloadError(f"payload is {'truncated' if exc.truncated else 'not safetensors'}: {exc}") from None
    metadata = header.get("__metadata__")
    if not metadata:
        raise PayloadError("payload has no metadata; not a depth_estimator_ros weights payload")
    _check_metadata(metadata, [name for name in header if name != "__metadata__"])
    try:
        tensors = st_load(bytes(payload))
    except (SafetensorError, ValueError, RuntimeError, KeyError, TypeError, OverflowError) as exc:
        raise PayloadError(f"payload is not valid safetensors: {exc}") from exc
    return metadata, tensors


def _check_metadata(metadata: Mapping[str, str], names: list[str]) -> None:
    """Raise PayloadError unless ``metadata`` follows the schema of :func:`read_payload` for tensors ``names``."""
    if metadata.get("format") != PAYLOAD_FORMAT:
        raise PayloadError(f"payload format is {metadata.get('format')!r}, expected {PAYLOAD_FORMAT!r}")
    if metadata.get("format_version") != PAYLOAD_FORMAT_VERSION:
        raise PayloadError(
            f"payload format version {metadata.get('format_version')!r} is not supported "
            f"(this build reads {PAYLOAD_FORMAT_VERSION!r})"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in metadata]
    if missing:
        raise PayloadError(f"payload metadata lacks {', '.join(missing)}")
    if not metadata["arch"]:
        raise PayloadError("payload metadata: arch is empty")
    version = metadata["version"]
    # the length first: int() of thousands of digits raises ValueError (Python's digit limit)
    if not (version.isascii() and version.isdigit() and len(version) <= 19 and int(version) <= _MAX_VERSION):
        raise PayloadError(f"payload metadata: version {version[:40]!r} is not an integer in 0..{_MAX_VERSION}")
    if "run" in metadata and not _RUN_ID.fullmatch(metadata["run"]):
        raise PayloadError(f"payload metadata: run {metadata['run'][:80]!r} is not 1-64 characters of "
                           "A-Z a-z 0-9 . _ -")
    config, listed = _json(metadata, "config"), _json(metadata, "tensors")
    if not isinstance(config, dict):
        raise PayloadError(f"payload metadata: config must be a JSON object, got {type(config).__name__}")
    if not (isinstance(listed, list) and all(isinstance(name, str) for name in listed)):
        raise PayloadError("payload metadata: tensors must be a JSON list of tensor names")
    if len(set(listed)) != len(listed) or sorted(listed) != sorted(names):
        raise PayloadError("payload metadata does not match its tensors")


def _json(metadata: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(metadata[key])
    except (ValueError, RecursionError) as exc:
        raise PayloadError(f"payload metadata: {key} is not JSON: {exc}") from None


class RunOrder:
    """Order payloads per trainer run: refuse a version older than or equal to the one in force.

    A trainer numbers its versions 1, 2, ... per run and a restarted trainer starts again
    at 1 under a new run id, so versions are compared only within one run: a payload of
    another run is always in order (nothing orders two runs), a payload without a run id
    (from a sender older than run ids) too.
    """

    def __init__(self) -> None:
        self.run: str | None = None
        self.version: int | None = None

    def problem(self, metadata: Mapping[str, str]) -> str:
        """Return why a payload with ``metadata`` (schema-checked) is out of order, or ``""``."""
        run, version = metadata.get("run"), int(metadata["version"])
        if run is None or run != self.run or self.version is None or version > self.version:
            return ""
        return f"version {version} of trainer run {run} is not newer than version {self.version} in force"

    def accepted(self, metadata: Mapping[str, str]) -> None:
        """Record that the payload with ``metadata`` is now in force."""
        self.run, self.version = metadata.get("run"), int(metadata["version"])


def import_payload(model: nn.Module, payload: bytes | bytearray | memoryview, *, arch: str | None = None) -> int:
    """Copy a payload's tensors into ``model`` after validating all of them.

    :func:`read_payload` then :func:`apply_payload`.

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
    return apply_payload(model, metadata, tensors, arch=arch)


def check_payload(
    model: nn.Module, metadata: Mapping[str, str], tensors: Mapping[str, Tensor], *, arch: str | None = None
) -> int:
    """Validate tensors returned by :func:`read_payload` against ``model``; change nothing.

    The receiver then loads them over the base weights with a partial swap
    (``Predictor.load_over_base``), the estimator's one weights path, or with
    :func:`apply_payload` into a model of its own.

    Args:
        model: a model of the same architecture and build config as the exporter's
            (only read: names, shapes, dtypes).
        metadata: the payload's metadata (schema-checked by :func:`read_payload`).
        tensors: the payload's tensors.
        arch: architecture name when ``model`` has no ``arch`` attribute.

    Returns:
        The payload's weights version.

    Raises:
        PayloadError: another architecture or config, unknown tensor names, shape or
            dtype mismatch, or non-finite values.
    """
    name, config = _identity(model, arch)
    if metadata["arch"] != name:
        raise PayloadError(f"payload is for architecture {metadata['arch']!r}, this model is {name!r}")
    their_config = json.loads(metadata["config"])
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
    return int(metadata["version"])


def apply_payload(
    model: nn.Module, metadata: Mapping[str, str], tensors: Mapping[str, Tensor], *, arch: str | None = None
) -> int:
    """Copy tensors returned by :func:`read_payload` into ``model`` after validating all of them.

    Args:
        model, metadata, tensors, arch: as in :func:`check_payload`.

    Returns:
        The payload's weights version.

    Raises:
        PayloadError: as in :func:`check_payload`; ``model`` is unchanged then.
    """
    version = check_payload(model, metadata, tensors, arch=arch)
    state = model.state_dict()
    with torch.no_grad():
        for key, value in tensors.items():
            state[key].copy_(value)
    return version
