"""Room memory: what each room taught, kept apart from the base weights, bounded and persisted.

The base model is never overwritten. A *room* is the set of tensors that adapting to it
changed (with the default ``scope="decoder"``: the decoder, about 0.2 MB of the shipped
model) plus a few *keyframe descriptors*: the L2-normalised global average of the
encoder's deepest feature maps of frames seen there. The engine scores rooms against live
sensor depth (test, then train; :class:`~depth_estimator_ros.adaptation.engine.AdaptationEngine`);
without sensor depth a room is recognised by appearance (:meth:`RoomMemory.recognise`):
the mean over a few query frames of each room's best cosine similarity, with a
threshold below which the base stays in force.

The memory holds at most ``capacity`` rooms and forgets the least recently used one
when a new room needs a slot. On disk each room is one safetensors file
``<name>.safetensors`` in a folder (tensors: the changed weights and ``__keyframes__``;
metadata: format, arch, name, counters), written atomically (temporary file + rename).
A file that is not a room of this model (corrupt, another format, another
architecture, unknown or misshapen tensors, a file name that is not its room's) is
refused with :class:`RoomMemoryError` naming the reason; :meth:`RoomMemory.load` skips
such files and reports them, and never deletes them. :meth:`RoomMemory.save` deletes
only the files of rooms this memory forgot or evicted.

A whole memory also travels as one safetensors blob (:meth:`RoomMemory.to_bytes`, the
trainer's ``rooms`` topic; tensors ``<room>/<tensor>`` and ``<room>/__keyframes__``,
metadata: format :data:`ROOMS_FORMAT`, arch, the rooms with their counters), read back
with :meth:`RoomMemory.load_bytes` under the same refusals as files.

Thread-safety: one lock guards the entries; tensors handed out are never written again
(an update replaces a room's dict).
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from depth_estimator_ros.atomic import write_bytes

__all__ = [
    "ROOM_FORMAT",
    "ROOMS_FORMAT",
    "RECOGNITION_THRESHOLD",
    "RECOGNITION_MARGIN",
    "KEYFRAMES_KEY",
    "Room",
    "RoomMemory",
    "RoomMemoryError",
    "appearance_descriptors",
]

ROOM_FORMAT = "depth_estimator_ros.room"
#: The format of a whole memory in one blob (:meth:`RoomMemory.to_bytes`).
ROOMS_FORMAT = "depth_estimator_ros.rooms"
#: Recognition by appearance: the least mean cosine similarity of a few frames to a room's
#: keyframes, and the lead over the second room. Chosen on ``rooms/`` (windows of 5 frames
#: of another scene scored at most 0.842; docs/EXPERIMENTS.md), never on the kitchen.
RECOGNITION_THRESHOLD = 0.85
RECOGNITION_MARGIN = 0.02
KEYFRAMES_KEY = "__keyframes__"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class RoomMemoryError(ValueError):
    """A room file or request that cannot be used; the message says why."""


@torch.no_grad()
def appearance_descriptors(features: Sequence[Tensor], levels: int = 3) -> Tensor:
    """Return one appearance descriptor per image from its encoder features.

    The global average of each of the ``levels`` deepest feature maps, each scaled to
    unit length, concatenated and scaled to unit length again: mid-level maps tell rooms
    apart that the deepest one alone (mostly "what kind of scene") confuses. On the
    ``rooms/`` scenes, windows of 5 frames of another room scored at most 0.84 against
    a room's keyframes with this descriptor, 0.97 with the deepest map alone
    (docs/EXPERIMENTS.md).

    Args:
        features: the encoder's feature maps (:meth:`DepthModel.encode`), each
            ``(B, C, h, w)``, shallow to deep.
        levels: how many of the deepest maps to use.

    Returns:
        ``(B, C1 + C2 + ...)`` float32, L2-normalised.
    """
    pooled = [
        torch.nn.functional.normalize(m.float().mean(dim=(2, 3)), dim=1) for m in list(features)[-levels:]
    ]
    return torch.nn.functional.normalize(torch.cat(pooled, dim=1), dim=1).cpu()


@dataclass
class Room:
    """One remembered room.

    Attributes:
        name: unique name (``room-1``, ...), also the file name.
        delta: the weights that differ from the base (CPU tensors, never written).
        keyframes: ``(K, C)`` float32 appearance descriptors of frames seen there.
        rounds: accepted training rounds that updated it.
        last_used: the memory's use clock when it was last in force (LRU order).
    """

    name: str
    delta: dict[str, Tensor]
    keyframes: Tensor
    rounds: int = 0
    last_used: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored tensors."""
        return sum(t.numel() * t.element_size() for t in self.delta.values()) + self.keyframes.numel() * 4

    def summary(self) -> dict[str, Any]:
        """Return a JSON-able description (no tensors)."""
        return {
            "name": self.name,
            "rounds": self.rounds,
            "keyframes": int(self.keyframes.shape[0]),
            "tensors": len(self.delta),
            "nbytes": self.nbytes,
            "last_used": self.last_used,
        }


class RoomMemory:
    """A bounded, persistable set of :class:`Room` s of one model.

    Args:
        base_state: the base model's state dict (names and shapes every room must fit).
        arch: the model's architecture name (rooms of another one are refused).
        capacity: most rooms kept (least recently used forgotten first); 0 keeps none.
        max_keyframes: most descriptors kept per room (evenly thinned beyond that).
    """

    def __init__(
        self, base_state: Mapping[str, Tensor], arch: str, *, capacity: int = 8, max_keyframes: int = 32
    ) -> None:
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        if max_keyframes < 1:
            raise ValueError(f"max_keyframes must be >= 1, got {max_keyframes}")
        self._shapes = {k: (tuple(v.shape), v.dtype) for k, v in base_state.items()}
        self._arch = arch
        self._capacity = capacity
        self._max_keyframes = max_keyframes
        self._rooms: dict[str, Room] = {}
        self._dropped: set[str] = set()  # forgotten or evicted since the last save: their files go
        self._clock = 0
        self._next = 1
        self._revision = 0
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- queries
    @property
    def capacity(self) -> int:
        """Most rooms kept."""
        return self._capacity

    @property
    def revision(self) -> int:
        """A counter that grows with every change (store, touch, forget, eviction): unsaved changes."""
        with self._lock:
            return self._revision

    def __len__(self) -> int:
        with self._lock:
            return len(self._rooms)

    def names(self) -> list[str]:
        """Return the room names, most recently used first."""
        with self._lock:
            return [r.name for r in sorted(self._rooms.values(), key=lambda r: -r.last_used)]

    def get(self, name: str) -> Room | None:
        """Return the room ``name`` or None."""
        with self._lock:
            return self._rooms.get(name)

    def summary(self) -> list[dict[str, Any]]:
        """Return one JSON-able row per room, most recently used first."""
        with self._lock:
            return [r.summary() for r in sorted(self._rooms.values(), key=lambda r: -r.last_used)]

    # ---------------------------------------------------------------- updates
    def new_name(self) -> str:
        """Return a room name not in use."""
        with self._lock:
            while f"room-{self._next}" in self._rooms:
                self._next += 1
            name = f"room-{self._next}"
            self._next += 1
            return name

    def touch(self, name: str) -> None:
        """Mark ``name`` as in force now (LRU order)."""
        with self._lock:
            room = self._rooms.get(name)
            if room is not None:
                self._clock += 1
                room.last_used = self._clock
                self._revision += 1

    def store(self, name: str, delta: Mapping[str, Tensor], keyframes: Tensor | None = None) -> Room | None:
        """Create or update room ``name`` with the weights ``delta`` (copied to the CPU).

        ``keyframes`` (``(K, C)``) are appended to the room's descriptors. When the
        memory is full, the least recently used other room is forgotten first.

        Returns:
            The stored room, or None when the capacity is 0.

        Raises:
            RoomMemoryError: a tensor the base model lacks or of another shape.
        """
        if self._capacity == 0:
            return None
        delta = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in delta.items()}
        self._check(name, delta)
        with self._lock:
            old = self._rooms.get(name)
            frames = old.keyframes if old is not None else torch.zeros(0, 0)
            if keyframes is not None and keyframes.numel():
                keyframes = keyframes.detach().float().cpu()
                frames = keyframes if frames.numel() == 0 else torch.cat([frames, keyframes])
            frames = _thin(frames, self._max_keyframes)
            self._clock += 1
            room = Room(name, delta, frames, (old.rounds if old else 0) + 1, self._clock)
            if old is None:
                while len(self._rooms) >= self._capacity:
                    lru = min(self._rooms.values(), key=lambda r: r.last_used)
                    del self._rooms[lru.name]
                    self._dropped.add(lru.name)
            self._rooms[name] = room
            self._dropped.discard(name)
            self._revision += 1
            return room

    def forget(self, name: str | None = None) -> list[str]:
        """Forget room ``name`` (every room when None); return the names forgotten."""
        with self._lock:
            names = list(self._rooms) if name is None else [name] if name in self._rooms else []
            for n in names:
                del self._rooms[n]
            self._dropped.update(names)
            self._revision += bool(names)
            return names

    # ------------------------------------------------------------ recognition
    def recognise(
        self, queries: Tensor, *, threshold: float = RECOGNITION_THRESHOLD, margin: float = RECOGNITION_MARGIN
    ) -> tuple[str | None, float]:
        """Recognise the room ``queries`` were taken in, by appearance only.

        Args:
            queries: ``(Q, C)`` descriptors of recent frames (:func:`appearance_descriptors`).
            threshold: least mean cosine similarity to accept a room.
            margin: least lead of the best room's similarity over the second best.

        Returns:
            ``(room name, similarity)``, or ``(None, best similarity)`` when no room is
            confident enough (the base stays in force); ``(None, nan)`` without rooms.
        """
        with self._lock:  # keyframes of another width (another descriptor) cannot be compared
            rooms = [r for r in self._rooms.values() if r.keyframes.numel() and r.keyframes.shape[1] == queries.shape[-1]]
        if not rooms or queries.numel() == 0:
            return None, math.nan
        q = torch.nn.functional.normalize(queries.float(), dim=1)
        scores = sorted(
            ((float((q @ r.keyframes.T).max(dim=1).values.mean()), r.name) for r in rooms), reverse=True
        )
        best, name = scores[0]
        second = scores[1][0] if len(scores) > 1 else -1.0
        if best >= threshold and best - second >= margin:
            return name, best
        return None, best

    # ----------------------------------------------------------------- files
    def save(self, folder: str | os.PathLike[str], names: Sequence[str] | None = None) -> list[Path]:
        """Write rooms to ``folder`` atomically; delete the files of rooms forgotten or evicted since.

        Other files in the folder (refused ones included) are left alone.

        Args:
            folder: created when missing.
            names: the rooms to write (unknown names are skipped); None: every room.

        Returns:
            The files written.

        Raises:
            OSError: the folder cannot be created or written (files written before stay).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            rooms = [r for r in self._rooms.values() if names is None or r.name in names]
            dropped = set(self._dropped)
        from safetensors.torch import save

        written = []
        for room in rooms:
            tensors = {**room.delta, KEYFRAMES_KEY: room.keyframes.contiguous()}
            meta = {
                "format": ROOM_FORMAT,
                "arch": self._arch,
                "name": room.name,
                "rounds": str(room.rounds),
                "last_used": str(room.last_used),
            }
            written.append(write_bytes(folder / f"{room.name}.safetensors", save(tensors, metadata=meta)))
        for name in dropped:
            (folder / f"{name}.safetensors").unlink(missing_ok=True)
        with self._lock:
            self._dropped -= dropped
        return written

    def load(self, folder: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
        """Read every ``*.safetensors`` room of ``folder`` (missing folder: nothing).

        The rooms keep their least-recently-used order (the files' ``last_used``); beyond
        ``capacity`` the least recently used files are not loaded (reported, not deleted).

        Returns:
            ``(names loaded, most recently used first; problems)``: one line per file not
            loaded, naming it and why.

        Raises:
            OSError: the folder cannot be listed.
        """
        folder = Path(folder)
        problems: list[str] = []
        if not folder.is_dir():
            return [], problems
        found: dict[str, tuple[int, dict[str, Tensor], Tensor, int]] = {}
        for path in sorted(folder.glob("*.safetensors")):
            try:
                name, delta, keyframes, meta = self.read_file(path)
            except RoomMemoryError as exc:
                problems.append(str(exc))
                continue
            found[name] = (_count(meta, "last_used", 0), delta, keyframes, _count(meta, "rounds", 1))
        order = sorted(found, key=lambda n: found[n][0], reverse=True)
        for name in order[self._capacity :]:
            problems.append(
                f"{folder / name}.safetensors: not loaded, the memory keeps {self._capacity} rooms "
                "(max_rooms) and this one was used less recently"
            )
        loaded = order[: self._capacity]
        for name in reversed(loaded):  # least recently used first: the memory's clock keeps the order
            _, delta, keyframes, rounds = found[name]
            room = self.store(name, delta, keyframes)
            if room is not None:
                room.rounds = rounds
        return loaded, problems

    def read_file(self, path: Path) -> tuple[str, dict[str, Tensor], Tensor, dict[str, str]]:
        """Read and check one room file; raise :class:`RoomMemoryError` naming the problem."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise RoomMemoryError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
        if meta.get("format") != ROOM_FORMAT:
            raise RoomMemoryError(f"{path}: not a room file (format {meta.get('format')!r}, expected {ROOM_FORMAT!r})")
        if meta.get("arch") != self._arch:
            raise RoomMemoryError(f"{path}: a room of arch {meta.get('arch')!r}, this model is {self._arch!r}")
        name = meta.get("name", "")
        if not _NAME.match(name):
            raise RoomMemoryError(f"{path}: invalid room name {name!r}")
        if path.name != f"{name}.safetensors":
            raise RoomMemoryError(f"{path}: holds room {name!r}, whose file is {name}.safetensors (a copy?)")
        keyframes = tensors.pop(KEYFRAMES_KEY, torch.zeros(0, 0))
        if keyframes.ndim != 2 or not bool(torch.isfinite(keyframes).all()):
            raise RoomMemoryError(f"{path}: keyframes must be a finite (K, C) tensor, got {tuple(keyframes.shape)}")
        self._check(str(path), tensors)
        return name, tensors, keyframes.float(), meta

    def _check(self, what: str, delta: Mapping[str, Tensor]) -> None:
        for key, value in delta.items():
            expected = self._shapes.get(key)
            if expected is None:
                raise RoomMemoryError(f"{what}: tensor {key!r} is not in the model")
            if tuple(value.shape) != expected[0] or value.dtype != expected[1]:
                raise RoomMemoryError(
                    f"{what}: tensor {key!r} is {tuple(value.shape)} {value.dtype}, the model's is "
                    f"{expected[0]} {expected[1]}"
                )
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise RoomMemoryError(f"{what}: tensor {key!r} has non-finite values")

    # ------------------------------------------------------------------ blobs
    def to_bytes(self) -> bytes:
        """Return the whole memory as one safetensors blob (what the trainer publishes on ``rooms``).

        Returns:
            safetensors bytes: tensors ``<room>/<tensor>`` and ``<room>/__keyframes__``;
            metadata ``format`` (:data:`ROOMS_FORMAT`), ``arch`` and ``rooms``, a JSON list of
            ``{"name", "rounds", "last_used"}``, most recently used first.
        """
        from safetensors.torch import save

        with self._lock:
            rooms = sorted(self._rooms.values(), key=lambda r: -r.last_used)
        tensors: dict[str, Tensor] = {}
        for room in rooms:  # copies: safetensors refuses tensors that share memory (a keyframe view)
            tensors.update({f"{room.name}/{k}": v.clone() for k, v in room.delta.items()})
            tensors[f"{room.name}/{KEYFRAMES_KEY}"] = room.keyframes.clone()
        listed = [{"name": r.name, "rounds": r.rounds, "last_used": r.last_used} for r in rooms]
        meta = {"format": ROOMS_FORMAT, "arch": self._arch, "rooms": json.dumps(listed)}
        return save(tensors, metadata=meta)

    def load_bytes(self, data: bytes | bytearray | memoryview) -> tuple[list[str], list[str]]:
        """Replace the memory's rooms with those of a :meth:`to_bytes` blob.

        A blob that is not a memory of this model (corrupt, another format or
        architecture, malformed room list) is refused whole and the memory is left as it
        was. A room with unknown, misshapen or non-finite tensors is left out and
        reported; so are tensors of no listed room and rooms beyond ``capacity`` (the
        least recently used).

        Returns:
            ``(names loaded, most recently used first; problems)``: one line per room or
            tensor left out, with the reason.

        Raises:
            RoomMemoryError: the blob is refused (the message says why).
        """
        from safetensors.torch import load

        try:
            raw = bytes(data)
            meta = _blob_metadata(raw)
            tensors = load(raw)
        except RoomMemoryError:
            raise
        except Exception as exc:  # safetensors raises its own error types for corrupt blobs
            raise RoomMemoryError(f"room memory blob: not readable safetensors ({type(exc).__name__}: {exc})") from None
        if meta.get("format") != ROOMS_FORMAT:
            raise RoomMemoryError(
                f"room memory blob: format {meta.get('format')!r}, expected {ROOMS_FORMAT!r}"
            )
        if meta.get("arch") != self._arch:
            raise RoomMemoryError(f"room memory blob: rooms of arch {meta.get('arch')!r}, this model is {self._arch!r}")
        try:
            listed = json.loads(meta.get("rooms", ""))
            rows = [(str(r["name"]), int(r["rounds"]), int(r["last_used"])) for r in listed]
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise RoomMemoryError(f"room memory blob: malformed room list ({type(exc).__name__}: {exc})") from None
        problems: list[str] = []
        rooms: list[Room] = []
        names = {name for name, _, _ in rows}
        for key in sorted(tensors):
            if key.split("/", 1)[0] not in names or "/" not in key:
                problems.append(f"room memory blob: tensor {key!r} belongs to no listed room; left out")
        for name, rounds, last_used in rows:
            what = f"room memory blob: room {name!r}"
            if not _NAME.match(name) or any(r.name == name for r in rooms):
                problems.append(f"{what}: invalid or repeated name; left out")
                continue
            prefix = f"{name}/"
            delta = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            keyframes = delta.pop(KEYFRAMES_KEY, torch.zeros(0, 0))
            try:
                if keyframes.ndim != 2 or not bool(torch.isfinite(keyframes).all()):
                    raise RoomMemoryError(f"{what}: keyframes must be a finite (K, C) tensor, "
                                          f"got {tuple(keyframes.shape)}")
                self._check(what, delta)
            except RoomMemoryError as exc:
                problems.append(f"{exc}; left out")
                continue
            rooms.append(Room(name, delta, _thin(keyframes.float(), self._max_keyframes), rounds, last_used))
        rooms.sort(key=lambda r: -r.last_used)
        for room in rooms[self._capacity :]:
            problems.append(f"room memory blob: room {room.name!r} left out, the memory keeps {self._capacity} rooms")
        rooms = rooms[: self._capacity]
        with self._lock:
            self._dropped.update(n for n in self._rooms if n not in {r.name for r in rooms})
            self._rooms = {r.name: r for r in rooms}
            self._clock = max([self._clock, *(r.last_used for r in rooms)])
            self._revision += 1
        return [r.name for r in rooms], problems

    def describe(self, **context: Any) -> str:
        """Return the memory as one JSON object on one line (the ``~/rooms/list`` answer).

        Args:
            context: JSON-able entries put first (e.g. the room in force, the folder).

        Returns:
            ``{**context, "capacity": int, "rooms": [summary rows, most recently used first]}``.
        """
        return json.dumps({**context, "capacity": self._capacity, "rooms": self.summary()}, separators=(",", ":"))


def _blob_metadata(raw: bytes) -> dict[str, str]:
    """Return the metadata of safetensors bytes (structure checked first, nothing built)."""
    from depth_estimator_ros.safetensors_format import SafetensorsFormatError, parse_header

    try:
        header = parse_header(raw)
    except SafetensorsFormatError as exc:
        raise RoomMemoryError(f"room memory blob: {'truncated' if exc.truncated else 'not safetensors'}: "
                              f"{exc}") from None
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise RoomMemoryError("room memory blob: metadata is not a JSON object")
    return meta


def _count(meta: Mapping[str, str], key: str, default: int) -> int:
    """Return the non-negative integer ``meta[key]``, or ``default`` when absent or malformed."""
    value = meta.get(key, "")
    return int(value) if value.isdigit() else default


def _thin(frames: Tensor, keep: int) -> Tensor:
    """Keep at most ``keep`` rows of ``frames``, evenly spaced (the newest always kept)."""
    n = frames.shape[0]
    if n <= keep:
        return frames
    idx = torch.linspace(0, n - 1, keep).round().long()
    return frames[idx]
