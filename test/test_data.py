"""Tests for data.open_source: one spec string opens every kind of source."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from depth_estimator_ros import data
from depth_estimator_ros.data import (
    BagSource,
    DataError,
    NyuMatSource,
    RedwoodSource,
    SevenScenesSource,
    SyntheticRooms,
    open_source,
    write_bag,
)


def test_synthetic_specs() -> None:
    source = open_source("synthetic:seed=3,frames=200,width=320,height=240")
    assert isinstance(source, SyntheticRooms) and len(source) == 200 and source.seed == 3
    assert len(open_source("synthetic")) == 200
    assert len(open_source("synthetic:seed=1", frames=7)) == 7


def test_detects_every_layout(tmp_path: Path, shared_data: Path) -> None:
    assert isinstance(open_source(shared_data / "7scenes_kitchen"), SevenScenesSource)
    assert isinstance(open_source(str(shared_data / "format_samples")), RedwoodSource)
    tum = open_source(shared_data / "format_samples" / "other_formats" / "TUM_color.png")
    assert tum.depth_format == "tum"
    with h5py.File(tmp_path / "nyu.mat", "w") as f:
        f["images"] = np.zeros((1, 3, 8, 6), np.uint8)
        f["depths"] = np.ones((1, 8, 6), np.float32)
    assert isinstance(open_source(tmp_path / "nyu.mat"), NyuMatSource)
    write_bag(tmp_path / "bag", open_source("synthetic:frames=2,width=16,height=12"), storage="mcap")
    assert isinstance(open_source(tmp_path / "bag"), BagSource)
    assert len(open_source(tmp_path / "bag" / "bag.mcap")) == 2


def test_layout_override_and_refusals(tmp_path: Path, shared_data: Path) -> None:
    redwood = open_source(shared_data / "format_samples", layout="redwood", rate_hz=10.0)
    assert redwood[1].stamp == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown layout 'kitti'; expected one of 7scenes, tum, redwood, image, nyu_mat"):
        open_source(tmp_path, layout="kitti")
    with pytest.raises(DataError, match="missing: no such file or folder"):
        open_source(tmp_path / "missing")
    with pytest.raises(DataError, match="unknown RGB-D folder layout"):
        open_source(tmp_path)


def test_public_names() -> None:
    for name in data.__all__:
        assert hasattr(data, name), name
