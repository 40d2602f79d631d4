"""Several RGB-D recordings as one source: a folder of room folders, rooms left out by name."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from depth_estimator_ros.data.base import DataError, FrameSource, Subset, split_indices
from depth_estimator_ros.data.folders import detect_layout, open_folder
from depth_estimator_ros.data.frame import Frame

__all__ = ["ConcatSource", "is_collection", "open_rooms", "open_training_sources", "split_sources"]


class ConcatSource(FrameSource):
    """The frames of several sources one after the other; ``room_of`` tells which source a frame is from."""

    def __init__(self, sources: Sequence[FrameSource], name: str = "") -> None:
        if not sources:
            raise DataError("ConcatSource needs at least one source")
        self.sources = list(sources)
        self.name = name or "+".join(s.name for s in self.sources)
        self._ends = np.cumsum([len(s) for s in self.sources])

    def __len__(self) -> int:
        return int(self._ends[-1])

    def room_of(self, index: int) -> int:
        """Return the position in ``sources`` of frame ``index``."""
        return int(np.searchsorted(self._ends, index, side="right"))

    def _load(self, index: int) -> Frame:
        room = self.room_of(index)
        start = 0 if room == 0 else int(self._ends[room - 1])
        return self.sources[room][index - start]


def is_collection(path: str | os.PathLike) -> bool:
    """Return whether ``path`` is a folder of RGB-D folders (and not one itself)."""
    path = Path(path)
    if not path.is_dir():
        return False
    try:
        detect_layout(path)
        return False
    except DataError:
        pass
    return any(_is_recording(child) for child in path.iterdir())


def _is_recording(path: Path) -> bool:
    if not path.is_dir():
        return False
    try:
        detect_layout(path)
    except DataError:
        return False
    return True


def open_rooms(
    root: str | os.PathLike, *, exclude: Sequence[str] = (), only: Sequence[str] | None = None
) -> list[FrameSource]:
    """Open every RGB-D folder inside ``root`` (sorted by name), leaving out rooms by name.

    Args:
        root: a folder of room folders (e.g. ``../shared/data/rooms``).
        exclude: folder names to leave out (a held-out room).
        only: when given, open just these folder names.

    Returns:
        One source per room, named after its folder.

    Raises:
        DataError: ``root`` holds no RGB-D folder, or a name in ``exclude`` / ``only``
            is not one of its rooms (a typo must not silently train on everything).
    """
    root = Path(root)
    rooms = sorted(child.name for child in root.iterdir() if _is_recording(child)) if root.is_dir() else []
    if not rooms:
        raise DataError(f"{root}: no RGB-D room folders inside")
    unknown = sorted(set(exclude) - set(rooms)) + sorted(set(only or ()) - set(rooms))
    if unknown:
        raise DataError(f"{root}: no room named {', '.join(unknown)}; rooms: {', '.join(rooms)}")
    chosen = [r for r in rooms if r not in set(exclude) and (only is None or r in set(only))]
    if not chosen:
        raise DataError(f"{root}: every room was left out")
    return [open_folder(root / name) for name in chosen]


def open_training_sources(specs: Sequence[str], leave_out: Sequence[str] = ()) -> list[FrameSource]:
    """Open every ``--data`` spec; a folder of room folders gives one source per room.

    Raises:
        DataError: a spec cannot be opened, or a ``leave_out`` name matches no room.
    """
    sources: list[FrameSource] = []
    matched: set[str] = set()
    for spec in specs:
        if is_collection(spec):
            rooms = open_rooms(spec)
            names = {room.name for room in rooms}
            matched |= names & set(leave_out)
            sources += [room for room in rooms if room.name not in set(leave_out)]
        else:
            from depth_estimator_ros.data import open_source  # the package's dispatcher imports this module

            sources.append(open_source(spec))
    unmatched = sorted(set(leave_out) - matched)
    if unmatched:
        raise DataError(f"left out {', '.join(unmatched)}: no such room in {', '.join(specs)}")
    if not sources:
        raise DataError(f"{', '.join(specs)}: every source was left out")
    return sources


def split_sources(
    sources: Sequence[FrameSource], fractions: Sequence[float], seed: int, min_frames: int = 0
) -> tuple[ConcatSource, ConcatSource | None, ConcatSource | None, dict]:
    """Split each source into train / validation / test and join the parts across sources.

    Frames never cross parts. Each source's training part is repeated (whole copies,
    then a seeded remainder) up to ``min_frames`` so that small rooms are not drowned out.

    Returns:
        ``(train, val, test, split)``: val/test are ``None`` when empty; ``split`` maps
        each source's name to its index lists.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[Subset]] = {"train": [], "val": [], "test": []}
    split: dict[str, dict[str, list[int]]] = {}
    for source in sources:
        idx = dict(zip(("train", "val", "test"), split_indices(len(source), fractions, seed=seed)))
        split[source.name] = {label: part.tolist() for label, part in idx.items()}
        train = idx["train"]
        if 0 < len(train) < min_frames:
            reps = min_frames // len(train)
            extra = rng.choice(train, size=min_frames - reps * len(train), replace=False)
            train = np.concatenate([np.tile(train, reps), extra])
        for label, chosen in (("train", train), ("val", idx["val"]), ("test", idx["test"])):
            if len(chosen):
                parts[label].append(Subset(source, chosen, name=f"{source.name}[{label}]"))
    joined = {label: ConcatSource(subsets, name=label) if subsets else None for label, subsets in parts.items()}
    if joined["train"] is None:
        raise DataError("no training frames (more frames or another split)")
    return joined["train"], joined["val"], joined["test"], split
