"""Tests for the NYU Depth v2 labeled .mat source, on small files in the same HDF5 layout."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from depth_estimator_ros.data.base import DataError, split_source
from depth_estimator_ros.data.nyu import NyuMatSource


def _write_mat(path: Path, n: int = 4, height: int = 6, width: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Write ``n`` frames the way MATLAB v7.3 stores them (transposed); return them as (N,H,W,3), (N,H,W)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    depth = rng.uniform(0.7, 9.0, (n, height, width)).astype(np.float32)
    raw = depth.copy()
    raw[:, 0, 0] = 0.0
    with h5py.File(path, "w") as f:
        f["images"] = rgb.transpose(0, 3, 2, 1)  # (N, 3, W, H)
        f["depths"] = depth.transpose(0, 2, 1)  # (N, W, H)
        f["rawDepths"] = raw.transpose(0, 2, 1)
    return rgb, depth


def test_frames_are_transposed_back(tmp_path: Path) -> None:
    rgb, depth = _write_mat(tmp_path / "nyu.mat")
    source = NyuMatSource(tmp_path / "nyu.mat")
    assert len(source) == 4 and source.name == "nyu"
    frame = source[2]
    np.testing.assert_array_equal(frame.rgb, rgb[2])
    np.testing.assert_array_equal(frame.depth, depth[2])
    assert frame.stamp == 2.0 and frame.name == "nyu/2"
    assert (frame.intrinsics.width, frame.intrinsics.height) == (8, 6)
    assert frame.intrinsics.fx == pytest.approx(518.8579 * 8 / 640)
    source.close()
    np.testing.assert_array_equal(source[-1].rgb, rgb[3])  # reopens after close


def test_raw_depth_marks_zero_invalid(tmp_path: Path) -> None:
    _, depth = _write_mat(tmp_path / "nyu.mat")
    frame = NyuMatSource(tmp_path / "nyu.mat", raw_depth=True)[1]
    assert np.isnan(frame.depth[0, 0]) and np.isfinite(frame.depth[1:]).all()
    np.testing.assert_array_equal(frame.depth[1:], depth[1, 1:])


def test_pickles_without_the_file_handle(tmp_path: Path) -> None:
    rgb, _ = _write_mat(tmp_path / "nyu.mat")
    source = NyuMatSource(tmp_path / "nyu.mat")
    copy = pickle.loads(pickle.dumps(source))
    np.testing.assert_array_equal(copy[0].rgb, rgb[0])


def test_seeded_split(tmp_path: Path) -> None:
    _write_mat(tmp_path / "nyu.mat", n=10)
    source = NyuMatSource(tmp_path / "nyu.mat")
    train, val, test = split_source(source, (0.8, 0.1, 0.1), seed=0)
    assert (len(train), len(val), len(test)) == (8, 1, 1)
    again = split_source(source, (0.8, 0.1, 0.1), seed=0)
    assert np.array_equal(train.indices, again[0].indices)


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing.mat: file not found"):
        NyuMatSource(tmp_path / "missing.mat")
    (tmp_path / "v5.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(200))
    with pytest.raises(DataError, match="v5.mat: not an HDF5"):
        NyuMatSource(tmp_path / "v5.mat")
    with h5py.File(tmp_path / "other.mat", "w") as f:
        f["images"] = np.zeros((2, 3, 8, 6), np.uint8)
    with pytest.raises(DataError, match="no 'depths' dataset"):
        NyuMatSource(tmp_path / "other.mat")
    with h5py.File(tmp_path / "shape.mat", "w") as f:
        f["images"] = np.zeros((2, 3, 8, 6), np.uint8)
        f["depths"] = np.zeros((2, 6, 8), np.float32)
    with pytest.raises(DataError, match=r"'depths' has shape \(2, 6, 8\), expected \(2, 8, 6\)"):
        NyuMatSource(tmp_path / "shape.mat")
