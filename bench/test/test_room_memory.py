"""The pipeline section's room memory: real keyframe descriptors, decoder-scope rooms, the camera's room recognised."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from depth_estimator_bench.room_memory import CAMERA_ROOM, build_room_memory
from depth_estimator_ros import models
from depth_estimator_ros.adaptation.recognition import RoomRecognizer


@pytest.fixture(scope="module")
def shipped() -> models.DepthModel:
    return models.load_checkpoint("default")[0]


def _decoder_scope(model: models.DepthModel) -> set[str]:
    """Names of the tensors a decoder-scope round trains (the trainer's default ``scope``)."""
    trainer_copy = copy.deepcopy(model)
    chosen = {id(p) for p in trainer_copy.set_trainable("decoder")}
    return {name for name, p in trainer_copy.named_parameters() if id(p) in chosen}


def _recognised(model: models.DepthModel, blob: bytes, frames: list[np.ndarray]) -> list[str | None]:
    """Receive ``blob`` as the estimator does and recognise each frame in turn."""
    recognizer = RoomRecognizer(model)
    names, problems = recognizer.memory.load_bytes(blob)
    assert names and not problems
    return [recognizer.observe(frame)[0] for frame in frames]


def test_synthetic_rooms_without_recordings_hold_decoder_deltas_and_the_camera_room_is_recognised(shipped) -> None:
    base = {k: v.clone() for k, v in shipped.state_dict().items()}
    built = build_room_memory(shipped, 3, rooms_root=None, keyframes=2, progress=False)

    assert [row["name"] for row in built.rooms] == [f"synthetic-seed0-room{i}" for i in range(3)]
    assert built.camera_room == "synthetic-seed0-room0" and len(built.camera_frames) == 2
    assert all(frame.shape == (480, 640, 3) and frame.dtype == np.uint8 for frame in built.camera_frames)
    assert all(torch.equal(v, base[k]) for k, v in shipped.state_dict().items())  # the model is left alone
    scope = _decoder_scope(shipped)
    deltas = [built.memory.get(row["name"]).delta for row in built.rooms]
    for delta in deltas:
        assert set(delta) == scope and all(not torch.equal(v, base[k]) for k, v in delta.items())
        assert all(torch.allclose(v, base[k], rtol=0.1, atol=1e-6) for k, v in delta.items())
    assert not torch.equal(deltas[0][sorted(scope)[0]], deltas[1][sorted(scope)[0]])  # each room its own weights
    assert _recognised(shipped, built.memory.to_bytes(), built.camera_frames) == [built.camera_room] * 2


def test_recordings_come_first_with_the_camera_room_and_synthetic_rooms_fill_the_rest(shipped, shared_data: Path) -> None:
    recordings = sorted(p.name for p in (shared_data / "rooms").iterdir() if p.is_dir())
    built = build_room_memory(shipped, len(recordings) + 1, rooms_root=shared_data / "rooms", keyframes=3,
                              progress=False)

    names = [row["name"] for row in built.rooms]
    assert built.camera_room == CAMERA_ROOM == names[0]
    assert sorted(names[: len(recordings)]) == recordings and names[-1] == "synthetic-seed0-room0"
    assert all(0 < row["keyframes"] <= 3 for row in built.rooms)
    assert _recognised(shipped, built.memory.to_bytes(), built.camera_frames) == [CAMERA_ROOM] * 3


def test_room_and_keyframe_counts_are_checked(shipped) -> None:
    with pytest.raises(ValueError, match="rooms must be in"):
        build_room_memory(shipped, 0, rooms_root=None)
    with pytest.raises(ValueError, match="keyframes must be >= 1"):
        build_room_memory(shipped, 1, rooms_root=None, keyframes=0)

