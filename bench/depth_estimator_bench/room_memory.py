"""A full room memory for the pipeline section's room-recognition runs.

What a trainer that has visited ``rooms`` rooms publishes on ``rooms``: a
:class:`~depth_estimator_ros.adaptation.rooms.RoomMemory` of the node's model whose
rooms hold decoder weights and keyframe descriptors, serialised by the memory itself
(:meth:`RoomMemory.to_bytes`).

- Keyframes: the estimator's own descriptors (:meth:`RoomRecognizer.describe
  <depth_estimator_ros.adaptation.recognition.RoomRecognizer.describe>`) of real frames,
  :data:`KEYFRAMES_PER_ROOM` evenly spaced ones of each recording in
  ``../shared/data/rooms`` (resized to the camera's 640x480), then synthetic rooms
  (:class:`~depth_estimator_ros.data.synthetic.SyntheticRooms`) for rooms beyond those or
  without ``../shared``. The node compares its frames with every room's keyframes.
- Weights: not learnt. Each room's delta is the base's ``decoder`` scope (the trainer's
  default ``scope``), every tensor times ``1 + 0.01 * noise`` (seeded per room): the
  tensors, shapes and bytes of a room a decoder round stores, for the node to load when
  it switches.

The camera frames of the runs are the keyframe frames of one room (:data:`CAMERA_ROOM`
where present), so the node recognises that room and puts its weights in force.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CAMERA_ROOM", "KEYFRAMES_PER_ROOM", "BenchRooms", "build_room_memory"]

#: The recording the camera plays where ``rooms_root`` has it (99 frames at 640x480, a D435).
CAMERA_ROOM = "d435_lab_ceiling_airplane"
#: Keyframes per room: as many as a :class:`RoomMemory` keeps (its default ``max_keyframes``),
#: the count of a room the trainer has seen for a while.
KEYFRAMES_PER_ROOM = 32
#: Relative size of the seeded noise that makes each room's decoder its own.
WEIGHT_NOISE = 0.01


@dataclass(frozen=True)
class BenchRooms:
    """A room memory and the camera frames of one of its rooms.

    Attributes:
        memory: the rooms (decoder deltas and keyframe descriptors of the model).
        camera_room: the room whose frames the camera plays.
        camera_frames: ``(H, W, 3)`` uint8 RGB, the camera room's keyframe frames.
        rooms: one JSON-able row per room: ``name``, ``source`` (folder or synthetic
            spec), ``keyframes``, ``delta_tensors``, ``delta_bytes``.
    """

    memory: Any
    camera_room: str
    camera_frames: list[np.ndarray]
    rooms: list[dict[str, Any]]


def build_room_memory(
    model: Any,
    rooms: int,
    *,
    rooms_root: Path | None,
    camera_size: tuple[int, int] = (480, 640),
    keyframes: int = KEYFRAMES_PER_ROOM,
    seed: int = 0,
    progress: bool = True,
) -> BenchRooms:
    """Build a memory of ``rooms`` rooms of ``model`` with real keyframe descriptors.

    Args:
        model: the node's base model (a :class:`~depth_estimator_ros.models.base.DepthModel`;
            not changed).
        rooms: how many rooms (``>= 1``).
        rooms_root: a folder of room recordings (``../shared/data/rooms``); None or missing:
            synthetic rooms only.
        camera_size: ``(height, width)`` of the camera frames the keyframes are taken from.
        keyframes: frames described per room.
        seed: seed of the weight noise and the synthetic rooms.
        progress: show a tqdm bar.

    Returns:
        The memory, the camera room and its frames (the first room), one row per room.

    Raises:
        ValueError: ``rooms`` or ``keyframes`` below 1.
    """
    import torch
    from tqdm import tqdm

    from depth_estimator_ros.adaptation.recognition import MAX_RECEIVED_ROOMS, RoomRecognizer
    from depth_estimator_ros.adaptation.rooms import RoomMemory
    from depth_estimator_ros.parameters import parameter

    if not 1 <= rooms <= MAX_RECEIVED_ROOMS:
        raise ValueError(f"rooms must be in [1, {MAX_RECEIVED_ROOMS}], got {rooms}")
    if keyframes < 1:
        raise ValueError(f"keyframes must be >= 1, got {keyframes}")
    recordings = _recordings(rooms_root, rooms, keyframes, camera_size)
    recordings += _synthetic_rooms(rooms - len(recordings), keyframes, camera_size, seed)
    recognizer = RoomRecognizer(model)
    memory = RoomMemory(model.state_dict(), model.arch, capacity=rooms, max_keyframes=keyframes)
    scope = _scope_tensors(model, parameter("scope").default)
    rows = []
    for index, (name, source, frames) in enumerate(tqdm(recordings, desc="room memory", disable=not progress)):
        descriptors = torch.cat([recognizer.describe(frame) for frame in frames])
        noise = torch.Generator().manual_seed(seed * 1000 + index)
        delta = {key: value * (1 + WEIGHT_NOISE * torch.randn(value.shape, generator=noise, dtype=value.dtype))
                 for key, value in scope.items()}
        room = memory.store(name, delta, descriptors)
        rows.append({"name": name, "source": source, "keyframes": int(room.keyframes.shape[0]),
                     "delta_tensors": len(room.delta),
                     "delta_bytes": sum(t.numel() * t.element_size() for t in room.delta.values())})
    name, _, frames = recordings[0]
    return BenchRooms(memory=memory, camera_room=name, camera_frames=frames, rooms=rows)


def _scope_tensors(model: Any, scope: str) -> dict[str, Any]:
    """Return the base tensors a training round of ``scope`` changes: its trainable parameters."""
    trainer_copy = copy.deepcopy(model)
    trainer_copy.set_trainable(scope)
    return {key: p.detach().clone() for key, p in trainer_copy.named_parameters() if p.requires_grad}


def _evenly(count: int, keep: int) -> list[int]:
    return sorted({int(i) for i in np.linspace(0, count - 1, min(count, keep)).round()})


def _camera_frame(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    height, width = size
    if rgb.shape[:2] == (height, width):
        return np.ascontiguousarray(rgb)
    return cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)


def _recordings(
    root: Path | None, count: int, keyframes: int, size: tuple[int, int]
) -> list[tuple[str, str, list[np.ndarray]]]:
    """Return up to ``count`` recordings of ``root`` as ``(name, folder, frames)``, the camera room first."""
    from depth_estimator_ros.data.collection import open_rooms

    if root is None or not Path(root).is_dir():
        return []
    sources = open_rooms(root)
    sources.sort(key=lambda s: (s.name != CAMERA_ROOM, s.name))
    if sources[0].name != CAMERA_ROOM:  # another data folder: the recording with the most frames plays
        sources.sort(key=lambda s: -len(s))
    return [
        (source.name, str(Path(root) / source.name),
         [_camera_frame(source[i].rgb, size) for i in _evenly(len(source), keyframes)])
        for source in sources[:count]
    ]


def _synthetic_rooms(
    count: int, keyframes: int, size: tuple[int, int], seed: int
) -> list[tuple[str, str, list[np.ndarray]]]:
    """Return ``count`` synthetic rooms, ``keyframes`` frames of each one's camera walk."""
    from depth_estimator_ros.data.synthetic import SyntheticRooms

    if count <= 0:
        return []
    source = SyntheticRooms(seed=seed, frames=count * keyframes, rooms=count, width=size[1], height=size[0])
    return [
        (f"synthetic-seed{seed}-room{room}", f"synthetic:seed={seed},room={room}",
         [source[room * source.frames_per_room + i].rgb for i in range(keyframes)])
        for room in range(count)
    ]

