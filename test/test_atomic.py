"""Atomic writes: strict JSON, the previous file kept on failure, no temporary file left."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from depth_estimator_ros import atomic


def test_write_json_is_strict_json_with_nan_as_null(tmp_path: Path) -> None:
    path = atomic.write_json(tmp_path / "sub" / "r.json", {"a": math.nan, "b": [np.float32(1.5), math.inf],
                                                           "c": tmp_path, 3: np.int64(2)})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.5, None], "c": str(tmp_path), "3": 2}
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert atomic.write_json(tmp_path / "s.json", {"b": 1, "a": 2}, sort_keys=True).read_text().index('"a"') < 10


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path, monkeypatch) -> None:
    path = atomic.write_bytes(tmp_path / "f.bin", b"old")

    def refuse(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space"):
        atomic.write_json(path, {"new": True})
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]
