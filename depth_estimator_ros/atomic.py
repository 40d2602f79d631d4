"""Atomic file writes: a reader sees the previous file or the new one, never half of one.

Every file the package writes for others to read (checkpoints, their JSON metadata, logs,
reports, benchmark results, the ONNX cache) goes through :func:`write_bytes`: the data is
written to a temporary file in the same folder, flushed to disk, and renamed over the
target with ``os.replace``; the rename itself is made durable too. A failed write
(disk full, a read-only folder, a kill) leaves the previous file and no temporary one.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["json_ready", "write_bytes", "write_json"]


def write_bytes(path: str | Path, payload: bytes, *, mode: int = 0o644) -> Path:
    """Write ``payload`` to ``path`` through a fsynced temporary file and a rename; return the path.

    Args:
        path: the file to replace or create (its folder must exist).
        payload: the whole content.
        mode: permission bits of the new file (``mkstemp`` would leave it private).

    Raises:
        OSError: the folder cannot be written; the previous file is then untouched.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
    return path


def json_ready(value: Any) -> Any:
    """Return ``value`` with NaN/inf as ``None``, numpy scalars as Python numbers and paths as strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return json_ready(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | Path, data: Any, *, sort_keys: bool = False) -> Path:
    """Write ``data`` as indented, strictly valid JSON (NaN/inf become ``null``), atomically.

    Creates the parent folders. Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_ready(data), indent=2, sort_keys=sort_keys, allow_nan=False) + "\n"
    return write_bytes(path, text.encode("utf-8"))
