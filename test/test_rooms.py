"""Tests of the room memory: bounded LRU, atomic files, refusal of foreign files, recognition."""

from __future__ import annotations

import pytest
import torch

from depth_estimator_ros.adaptation.rooms import RoomMemory, RoomMemoryError, appearance_descriptors
from depth_estimator_ros.models import build_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("fast", input_size=(48, 64)).eval()


def _delta(model, scale: float) -> dict[str, torch.Tensor]:
    return {k: v * scale for k, v in model.state_dict().items() if k.startswith("decoder.") and v.is_floating_point()}


def _memory(model, **kwargs) -> RoomMemory:
    return RoomMemory(model.state_dict(), model.arch, **kwargs)


def test_store_keeps_at_most_capacity_rooms_and_forgets_the_least_recently_used(model) -> None:
    memory = _memory(model, capacity=2)
    a, b = memory.new_name(), memory.new_name()
    memory.store(a, _delta(model, 1.1))
    memory.store(b, _delta(model, 1.2))
    memory.touch(a)  # a in force again: b is now the least recently used
    c = memory.new_name()
    memory.store(c, _delta(model, 1.3))
    assert sorted(memory.names()) == sorted([a, c])
    assert memory.forget(a) == [a] and memory.names() == [c]
    assert memory.forget("nope") == []


def test_save_and_load_round_trip_and_stale_files_are_removed(model, tmp_path) -> None:
    memory = _memory(model)
    name = memory.new_name()
    keys = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    memory.store(name, _delta(model, 1.1), keys)
    other = memory.new_name()
    memory.store(other, _delta(model, 0.9))
    memory.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{name}.safetensors", f"{other}.safetensors"])
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically: no temporary file left
    memory.forget(other)
    memory.save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.safetensors"]
    again = _memory(model)
    loaded, problems = again.load(tmp_path)
    assert loaded == [name] and problems == []
    room = again.get(name)
    assert all(torch.equal(room.delta[k], v) for k, v in _delta(model, 1.1).items())
    assert torch.equal(room.keyframes, keys)
    assert again.new_name() != name


def test_corrupt_and_foreign_files_are_refused_with_the_reason(model, tmp_path) -> None:
    memory = _memory(model)
    memory.store("room-1", _delta(model, 1.1))
    memory.save(tmp_path)
    (tmp_path / "room-9.safetensors").write_bytes(b"\x80\x04 not a room")
    other = build_model("fast", input_size=(48, 64))
    foreign = RoomMemory({f"x.{k}": v for k, v in other.state_dict().items()}, model.arch)
    foreign.store("room-5", {f"x.{k}": v for k, v in _delta(model, 1.0).items()})
    foreign.save(tmp_path / "foreign")
    (tmp_path / "foreign" / "room-5.safetensors").rename(tmp_path / "room-5.safetensors")
    loaded, problems = _memory(model).load(tmp_path)
    assert loaded == ["room-1"]
    assert len(problems) == 2
    assert any("room-9" in p and "not a readable safetensors file" in p for p in problems), problems
    assert any("room-5" in p and "is not in the model" in p for p in problems), problems
    with pytest.raises(RoomMemoryError, match="arch"):
        RoomMemory(model.state_dict(), "vgg16_coarse").read_file(tmp_path / "room-1.safetensors")
    assert _memory(model).load(tmp_path / "missing") == ([], [])


def test_store_refuses_tensors_the_model_lacks_or_non_finite(model) -> None:
    memory = _memory(model)
    with pytest.raises(RoomMemoryError, match="not in the model"):
        memory.store("room-1", {"nope": torch.zeros(1)})
    bad = _delta(model, 1.0)
    key = next(iter(bad))
    bad[key] = bad[key] * float("nan")
    with pytest.raises(RoomMemoryError, match="non-finite"):
        memory.store("room-1", bad)


def test_recognise_picks_the_room_whose_keyframes_match_and_the_base_below_the_threshold(model) -> None:
    torch.manual_seed(1)
    memory = _memory(model)
    a, b = (torch.nn.functional.normalize(torch.randn(4, 16), dim=1) for _ in range(2))
    memory.store("room-1", {}, a)
    memory.store("room-2", {}, b)
    assert memory.recognise(a[:2] + 0.01, threshold=0.9)[0] == "room-1"
    assert memory.recognise(b[1:3], threshold=0.9)[0] == "room-2"
    stranger = torch.nn.functional.normalize(torch.randn(2, 16), dim=1)
    name, similarity = memory.recognise(stranger, threshold=0.9)
    assert name is None and similarity < 0.9
    assert memory.recognise(a, threshold=0.0, margin=2.0)[0] is None  # no room leads by the margin


def test_appearance_descriptors_are_unit_vectors_per_image(model) -> None:
    features = model.encode(torch.rand(3, 3, 48, 64))
    d = appearance_descriptors(features)
    assert d.shape == (3, sum(f.shape[1] for f in features[-3:]))
    assert torch.allclose(d.norm(dim=1), torch.ones(3), atol=1e-5)


def test_save_deletes_only_the_files_of_rooms_it_dropped_and_load_keeps_the_lru_order_and_capacity(model, tmp_path) -> None:
    memory = _memory(model, capacity=3)
    for scale in (1.1, 1.2, 1.3):
        memory.store(memory.new_name(), _delta(model, scale))
    memory.touch("room-1")  # most recently used now: room-1, room-3, room-2
    revision = memory.revision
    (tmp_path / "notes.safetensors").write_bytes(b"not a room")  # refused at load, never deleted
    memory.save(tmp_path)
    memory.store(memory.new_name(), _delta(model, 1.4))  # evicts room-2, the least recently used
    assert memory.revision > revision and "room-2" not in memory.names()
    memory.save(tmp_path, ["room-4"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.safetensors", "room-1.safetensors", "room-3.safetensors", "room-4.safetensors"
    ]
    memory.save(tmp_path)
    loaded, problems = _memory(model, capacity=2).load(tmp_path)
    assert loaded == ["room-4", "room-1"]  # most recently used first; room-3 beyond the capacity
    assert any("notes.safetensors" in p for p in problems)
    assert any("room-3.safetensors: not loaded" in p and "max_rooms" in p for p in problems), problems
    (tmp_path / "room-1.safetensors").rename(tmp_path / "copy.safetensors")
    _, problems = _memory(model).load(tmp_path)
    assert any("copy.safetensors: holds room 'room-1'" in p for p in problems), problems


def test_whole_memory_round_trips_as_one_blob_and_replaces_the_content(model) -> None:
    memory = _memory(model)
    a, b = memory.new_name(), memory.new_name()
    keys = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    memory.store(a, _delta(model, 1.1), keys)
    memory.store(b, _delta(model, 0.9), keys[:1])
    memory.store(b, _delta(model, 0.8))  # b: 2 rounds, most recently used
    receiver = _memory(model)
    receiver.store("old", _delta(model, 1.5))
    names, problems = receiver.load_bytes(memory.to_bytes())
    assert names == [b, a] and problems == [] and receiver.names() == [b, a]
    assert receiver.get("old") is None
    assert receiver.get(b).rounds == 2 and torch.equal(receiver.get(a).keyframes, keys)
    assert all(torch.equal(receiver.get(b).delta[k], v) for k, v in _delta(model, 0.8).items())
    assert _memory(model).load_bytes(_memory(model).to_bytes()) == ([], [])  # an empty memory too


def test_corrupt_and_foreign_blobs_are_refused_and_the_memory_is_left_as_it_was(model) -> None:
    from safetensors.torch import save

    memory = _memory(model)
    memory.store("room-1", _delta(model, 1.1), torch.nn.functional.normalize(torch.randn(2, 8), dim=1))
    blob = memory.to_bytes()
    receiver = _memory(model)
    receiver.store("kept", _delta(model, 1.2))
    foreign = {"format": "something.else", "arch": model.arch, "rooms": "[]"}
    other_arch = {"format": "depth_estimator_ros.rooms", "arch": "vgg16_coarse", "rooms": "[]"}
    bad_list = {"format": "depth_estimator_ros.rooms", "arch": model.arch, "rooms": "{not json"}
    for data, reason in [
        (blob[: len(blob) // 2], "truncated"),
        (b"\x00" * 4 + blob[4:], "room memory blob"),
        (b"garbage", "truncated"),
        (save({"x": torch.zeros(1)}, metadata=foreign), "format"),
        (save({"x": torch.zeros(1)}, metadata=other_arch), "arch"),
        (save({"x": torch.zeros(1)}, metadata=bad_list), "malformed room list"),
    ]:
        with pytest.raises(RoomMemoryError, match=reason):
            receiver.load_bytes(data)
        assert receiver.names() == ["kept"]
    # a room with an unknown or misshapen tensor is left out and reported; the others load
    meta = {"format": "depth_estimator_ros.rooms", "arch": model.arch,
            "rooms": '[{"name": "good", "rounds": 1, "last_used": 2}, {"name": "bad", "rounds": 1, "last_used": 1}]'}
    key = next(iter(_delta(model, 1.0)))
    tensors = {f"good/{key}": _delta(model, 1.1)[key], "bad/nope.weight": torch.zeros(2), "stray": torch.zeros(1)}
    names, problems = receiver.load_bytes(save(tensors, metadata=meta))
    assert names == ["good"] and receiver.names() == ["good"]
    assert any("'bad'" in p and "not in the model" in p for p in problems)
    assert any("'stray'" in p for p in problems)
