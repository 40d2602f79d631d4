"""Tests of RoomBroadcast: the memory handed on when it changed, at most once per period."""

from __future__ import annotations

import threading

import torch

from depth_estimator_ros.adaptation.room_broadcast import RoomBroadcast
from depth_estimator_ros.adaptation.rooms import RoomMemory
from depth_estimator_ros.models import build_model


def _memory() -> tuple[RoomMemory, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = build_model("fast", input_size=(48, 64))
    delta = {k: v * 1.1 for k, v in model.state_dict().items() if k.startswith("decoder.") and v.is_floating_point()}
    return RoomMemory(model.state_dict(), model.arch), delta


def test_sends_only_after_a_change_and_the_blob_holds_the_memory() -> None:
    memory, delta = _memory()
    sent: list[bytes] = []
    broadcast = RoomBroadcast(memory, sent.append, period_s=60.0)
    assert not broadcast.check() and sent == []  # an empty, unchanged memory: nothing
    memory.store("room-1", delta)
    memory.store("room-1", delta)  # two changes, one blob
    assert broadcast.check() and not broadcast.check() and broadcast.sent == 1
    receiver, _ = _memory()
    assert receiver.load_bytes(sent[0])[0] == ["room-1"]
    memory.forget()
    assert broadcast.check() and receiver.load_bytes(sent[1]) == ([], [])  # forgetting is handed on too


def test_the_thread_sends_a_change_and_survives_a_failing_send() -> None:
    memory, delta = _memory()
    errors: list[BaseException] = []
    done = threading.Event()
    calls = []

    def send(blob: bytes) -> None:
        calls.append(blob)
        if len(calls) == 1:
            raise RuntimeError("publisher gone")
        done.set()

    broadcast = RoomBroadcast(memory, send, period_s=0.01, on_error=errors.append)
    memory.store("room-1", delta)
    broadcast.start()
    try:
        assert done.wait(10.0), "the second try was never made"
    finally:
        broadcast.close()
    assert len(errors) == 1 and "publisher gone" in str(errors[0]) and broadcast.sent == 1
