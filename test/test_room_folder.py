"""Tests of the room memory's folder: load, background saves of what changed, the final save, errors."""

from __future__ import annotations

import os
import time

import pytest
import torch

from depth_estimator_ros.adaptation.room_folder import RoomFolder
from depth_estimator_ros.adaptation.rooms import RoomMemory
from depth_estimator_ros.models import build_model

DEADLINE_S = 10.0


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("fast", input_size=(48, 64)).eval()


def _delta(model, scale: float) -> dict[str, torch.Tensor]:
    return {k: v * scale for k, v in model.state_dict().items() if k.startswith("decoder.") and v.is_floating_point()}


def _mtimes(folder) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def _wait(predicate, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_background_saves_write_only_changed_rooms_and_close_writes_every_room(model, tmp_path) -> None:
    memory = RoomMemory(model.state_dict(), model.arch)
    folder = RoomFolder(memory, tmp_path / "rooms", period_s=0.05)
    assert folder.load() == ([], [])
    folder.start()
    try:
        memory.store("room-1", _delta(model, 1.1))
        memory.store("room-2", _delta(model, 1.2))
        _wait(lambda: len(list(folder.folder.glob("*.safetensors"))) == 2, "both rooms written")
        before = _mtimes(folder.folder)
        os.utime(folder.folder / "room-1.safetensors", ns=(1, 1))  # a rewrite would change it
        memory.store("room-2", _delta(model, 1.3))  # room-2 changes; room-1 does not
        _wait(lambda: _mtimes(folder.folder)["room-2.safetensors"] != before["room-2.safetensors"], "room-2 rewritten")
        assert _mtimes(folder.folder)["room-1.safetensors"] == 1
        memory.forget("room-2")
        _wait(lambda: not (folder.folder / "room-2.safetensors").exists(), "the forgotten room's file deleted")
    finally:
        memory.touch("room-1")  # only its LRU clock changes: the final save writes it once more
        written = folder.close()
    assert [p.name for p in written] == ["room-1.safetensors"]
    assert folder.close() == []  # nothing changed since
    assert sorted(p.name for p in folder.folder.iterdir()) == ["room-1.safetensors"]  # no temporary file left
    again = RoomMemory(model.state_dict(), model.arch)
    assert RoomFolder(again, folder.folder, period_s=0).load() == (["room-1"], [])
    assert all(torch.equal(again.get("room-1").delta[k], v) for k, v in _delta(model, 1.1).items())


def test_a_failed_save_is_reported_and_kept_as_the_last_error_until_one_succeeds(model, tmp_path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    memory = RoomMemory(model.state_dict(), model.arch)
    memory.store("room-1", _delta(model, 1.1))
    errors: list[str] = []
    folder = RoomFolder(memory, blocker / "rooms", period_s=0.05, on_error=errors.append)
    folder.start()
    _wait(lambda: errors, "the background save's error")
    assert str(blocker / "rooms") in errors[0] and folder.last_error == errors[0]
    with pytest.raises(OSError):
        folder.close()
    with pytest.raises(ValueError, match="period_s"):
        RoomFolder(memory, tmp_path, period_s=-1.0)
