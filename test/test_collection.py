"""A folder of room folders as sources: concatenation, rooms left out by name, per-room splits."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from depth_estimator_ros.data import DataError, open_source
from depth_estimator_ros.data.collection import ConcatSource, is_collection, open_rooms, split_sources

ROOMS = Path(__file__).resolve().parents[2] / "shared" / "data" / "rooms"


def _room(folder: Path, frames: int, depth_mm: int) -> None:
    folder.mkdir(parents=True)
    for i in range(frames):
        cv2.imwrite(str(folder / f"frame-{i:06d}.color.jpg"), np.full((24, 32, 3), 10 * i, np.uint8))
        cv2.imwrite(str(folder / f"frame-{i:06d}.depth.png"), np.full((24, 32), depth_mm, np.uint16))


def test_a_folder_of_rooms_opens_as_one_source_in_room_order(tmp_path):
    _room(tmp_path / "b_room", 3, 2000)
    _room(tmp_path / "a_room", 2, 1000)
    (tmp_path / "notes").mkdir()  # not a recording: ignored
    assert is_collection(tmp_path) and not is_collection(tmp_path / "a_room")
    source = open_source(tmp_path)
    assert isinstance(source, ConcatSource) and len(source) == 5
    assert [source.room_of(i) for i in range(5)] == [0, 0, 1, 1, 1]
    assert float(np.nanmean(source[1].depth)) == pytest.approx(1.0) and float(source[4].depth[0, 0]) == 2.0
    assert [r.name for r in open_rooms(tmp_path, exclude=["a_room"])] == ["b_room"]
    with pytest.raises(DataError, match="no room named kitchen"):
        open_rooms(tmp_path, exclude=["kitchen"])
    with pytest.raises(DataError, match="every room was left out"):
        open_rooms(tmp_path, exclude=["a_room", "b_room"])


def test_splits_are_per_room_and_never_share_a_frame(tmp_path):
    _room(tmp_path / "big", 10, 1500)
    _room(tmp_path / "tiny", 2, 3000)
    train, val, test, split = split_sources(open_rooms(tmp_path), (0.6, 0.2, 0.2), seed=0, min_frames=6)
    for name, parts in split.items():
        seen = parts["train"] + parts["val"] + parts["test"]
        assert sorted(seen) == sorted(set(seen)), name  # disjoint within a room
    assert split["tiny"]["val"] == [] and len(split["tiny"]["train"]) == 2
    assert len(train) == len(split["big"]["train"]) + 6  # the tiny room repeated up to 6 frames
    assert len(val) == len(split["big"]["val"]) and len(test) == len(split["big"]["test"])


@pytest.mark.skipif(not ROOMS.is_dir(), reason="../shared/data/rooms is absent (shared data not beside the project)")
def test_the_shared_rooms_open_with_their_intrinsics_and_never_the_kitchen():
    rooms = open_rooms(ROOMS)
    names = [r.name for r in rooms]
    assert "7scenes_kitchen" not in names and len(names) == 11
    for room in rooms:
        frame = room[0]
        assert frame.intrinsics is not None and 0.6 < frame.intrinsics.normalized_focal < 2.0, room.name
