"""Stamp checks and streaming RGB/depth pairing, free of ROS.

The colour and depth cameras of an RGB-D sensor are not triggered together
(a Kinect v1's streams are a few milliseconds apart), and messages of the two
topics arrive in any interleaving. :class:`StampPairer` matches each RGB frame
with the depth frame closest in time, within a tolerance, as the messages arrive
and with bounded memory. :class:`StampGuard` refuses the stamps a healthy
driver never sends (backwards, repeated, far in the future) while accepting a
deliberate time reset (a bag played in a loop, a simulator restarted).
:class:`StampHistory` keeps the last few items of one stream for a lookup by
stamp (the estimator's sensor depth, looked up for each predicted frame).

Both classes are thread-safe: callers on several threads (the executor's and the
workers') may use them at once.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["STAMP_REASONS", "StampGuard", "Pair", "StampPairer", "StampHistory"]

#: Drop reasons :meth:`StampGuard.check` can return.
STAMP_REASONS: tuple[str, ...] = ("stamp_backwards", "stamp_duplicate", "stamp_future", "stamp_invalid")

T = TypeVar("T")


class StampGuard:
    """Refuse stamps that go backwards, repeat or lie in the far future; accept time resets.

    A stamp behind the last accepted one is a **time reset** (accepted, it becomes the
    new reference and :attr:`resets` counts it) when time evidently started over:

    - it lies ``reset_after`` seconds or more back (a restarted simulation, a long bag
      looped), or
    - it lies at or before the first stamp of the current timeline (the first one
      accepted since the last reset): ``ros2 bag play --loop`` republishes the bag's
      own stamps from its start, however short the bag, or
    - :data:`RESET_AFTER_STEPS` stamps in a row lie behind the last accepted one, each
      after the one before: a new timeline whose first message was lost.

    Any other step back is a genuinely out-of-order message and refused
    (``stamp_backwards``); so is a repeat of the last stamp (``stamp_duplicate``).

    Args:
        max_future: seconds a stamp may lie ahead of the receiver's clock
            (clock offsets between machines); later stamps are refused. ``0``
            disables the check (a bag with future stamps, a simulator).
        reset_after: a step back of this many seconds or more is a time reset
            whatever came before.

    Raises:
        ValueError: a negative ``max_future`` or a non-positive ``reset_after``.
    """

    #: Consecutive, increasing stamps behind the last accepted one that make a new timeline.
    RESET_AFTER_STEPS = 3

    def __init__(self, *, max_future: float, reset_after: float) -> None:
        if not max_future >= 0.0:
            raise ValueError(f"max_future must be >= 0 seconds (0 disables the check), got {max_future}")
        if not reset_after > 0.0:
            raise ValueError(f"reset_after must be > 0 seconds, got {reset_after}")
        self.max_future = float(max_future)
        self.reset_after = float(reset_after)
        self._first: float | None = None
        self._last: float | None = None
        self._behind: list[float] = []  # consecutive increasing stamps behind _last
        self._resets = 0
        self._lock = threading.Lock()

    @property
    def resets(self) -> int:
        """Number of time resets accepted so far."""
        return self._resets

    def check(self, stamp: float, now: float) -> str | None:
        """Check ``stamp`` and remember it when accepted.

        A caller that keeps state across stamps (a pairing queue) compares
        :attr:`resets` before and after to learn that time started over.

        Args:
            stamp: the message's stamp, seconds.
            now: the receiver's current time, seconds (same clock as the stamps).

        Returns:
            ``None`` when accepted (a time reset included), otherwise the drop
            reason, one of :data:`STAMP_REASONS`.
        """
        if not math.isfinite(stamp) or stamp < 0.0:
            return "stamp_invalid"
        if self.max_future > 0.0 and stamp > now + self.max_future:
            return "stamp_future"
        with self._lock:
            last = self._last
            if last is not None:
                if stamp == last:
                    return "stamp_duplicate"
                if stamp < last:
                    if self._behind and stamp > self._behind[-1]:
                        self._behind.append(stamp)
                    else:
                        self._behind = [stamp]
                    reset = (
                        last - stamp >= self.reset_after
                        or stamp <= self._first
                        or len(self._behind) >= self.RESET_AFTER_STEPS
                    )
                    if not reset:
                        return "stamp_backwards"
                    self._resets += 1
                    self._first = stamp
            else:
                self._first = stamp
            self._behind = []
            self._last = stamp
        return None

    def clear(self) -> None:
        """Forget the stamps seen, so that the next one is accepted whatever it is."""
        with self._lock:
            self._first = self._last = None
            self._behind = []


@dataclass(frozen=True)
class Pair(Generic[T]):
    """An RGB item and the depth item closest to it in time."""

    rgb: T
    depth: T
    rgb_stamp: float
    depth_stamp: float


class StampPairer(Generic[T]):
    """Pair two message streams by nearest stamp within a tolerance.

    Each arriving item is matched with the closest not-yet-paired item of the
    other stream, if one lies within ``tolerance``; the pair is returned at
    once (no waiting for a possibly closer later message, so latency is one
    message). Items of either stream older than a produced pair can no longer
    be paired and are discarded. Unpaired items are kept up to ``queue_size``
    per stream (oldest evicted first), so memory is bounded whatever the rates.

    Choose ``tolerance`` below half the frame period of the slower stream: then
    the nearest stamp is the only candidate and greedy matching is exact.

    Args:
        tolerance: largest accepted ``|rgb_stamp - depth_stamp|``, seconds.
        queue_size: unpaired items kept per stream.

    Raises:
        ValueError: a non-positive ``tolerance`` or a ``queue_size`` below 1.
    """

    def __init__(self, tolerance: float, queue_size: int = 10) -> None:
        if not tolerance > 0.0:
            raise ValueError(f"tolerance must be > 0 seconds, got {tolerance}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self._tolerance = float(tolerance)
        self._queues: dict[str, deque[tuple[float, Any]]] = {
            "rgb": deque(maxlen=int(queue_size)),
            "depth": deque(maxlen=int(queue_size)),
        }
        self._lock = threading.Lock()
        self.paired = 0
        self.discarded = 0

    @property
    def tolerance(self) -> float:
        """Largest accepted stamp difference, seconds."""
        return self._tolerance

    @tolerance.setter
    def tolerance(self, value: float) -> None:
        if not value > 0.0:
            raise ValueError(f"tolerance must be > 0 seconds, got {value}")
        self._tolerance = float(value)

    def add_rgb(self, stamp: float, item: T) -> Pair[T] | None:
        """Add an RGB item; return the pair it completes, if any."""
        return self._add("rgb", "depth", stamp, item)

    def add_depth(self, stamp: float, item: T) -> Pair[T] | None:
        """Add a depth item; return the pair it completes, if any."""
        return self._add("depth", "rgb", stamp, item)

    def pending(self) -> tuple[int, int]:
        """Return the numbers of unpaired ``(rgb, depth)`` items held."""
        with self._lock:
            return len(self._queues["rgb"]), len(self._queues["depth"])

    def clear(self, stream: str | None = None) -> None:
        """Drop the unpaired items (counted as discarded) of ``stream``, or of both when ``None``.

        Args:
            stream: ``"rgb"``, ``"depth"`` or ``None``.

        Raises:
            ValueError: another ``stream``.
        """
        if stream is not None and stream not in self._queues:
            raise ValueError(f"stream must be 'rgb', 'depth' or None, got {stream!r}")
        with self._lock:
            for name, queue in self._queues.items():
                if stream is None or name == stream:
                    self.discarded += len(queue)
                    queue.clear()

    def _add(self, own: str, other: str, stamp: float, item: T) -> Pair[T] | None:
        with self._lock:
            candidates = self._queues[other]
            best = None
            best_gap = self._tolerance
            for index, (other_stamp, _) in enumerate(candidates):
                gap = abs(other_stamp - stamp)
                if gap <= best_gap:
                    best, best_gap = index, gap
            if best is None:
                queue = self._queues[own]
                if len(queue) == queue.maxlen:
                    self.discarded += 1
                queue.append((stamp, item))
                return None
            other_stamp, other_item = candidates[best]
            del candidates[best]
            self._discard_until(own, stamp)
            self._discard_until(other, other_stamp)
            self.paired += 1
            if own == "rgb":
                return Pair(rgb=item, depth=other_item, rgb_stamp=stamp, depth_stamp=other_stamp)
            return Pair(rgb=other_item, depth=item, rgb_stamp=other_stamp, depth_stamp=stamp)

    def _discard_until(self, name: str, stamp: float) -> None:
        """Remove the items of stream ``name`` stamped at or before ``stamp``."""
        queue = self._queues[name]
        kept = [(s, i) for s, i in queue if s > stamp]
        self.discarded += len(queue) - len(kept)
        queue.clear()
        queue.extend(kept)


class StampHistory(Generic[T]):
    """Keep the newest items of one stream and find the one nearest a stamp, within a tolerance.

    Unlike :class:`StampPairer`, nothing is consumed: a lookup leaves the items in
    place (one sensor depth may serve several colour frames), and the oldest item is
    evicted when a new one arrives at capacity, so memory is bounded.

    Args:
        capacity: items kept (the newest).

    Raises:
        ValueError: a ``capacity`` below 1.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._items: deque[tuple[float, T]] = deque(maxlen=int(capacity))
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def add(self, stamp: float, item: T) -> None:
        """Keep ``item`` stamped ``stamp`` seconds (the oldest item goes at capacity)."""
        with self._lock:
            self._items.append((float(stamp), item))

    def nearest(self, stamp: float, tolerance: float) -> tuple[float, T] | None:
        """Return ``(stamp, item)`` of the item closest to ``stamp`` (the newest of equals), or ``None``.

        Args:
            stamp: seconds.
            tolerance: largest accepted stamp difference, seconds.

        Returns:
            The kept item whose stamp is nearest ``stamp`` and at most ``tolerance`` away;
            ``None`` when none is.
        """
        with self._lock:
            best: tuple[float, T] | None = None
            best_gap = tolerance
            for kept in self._items:
                gap = abs(kept[0] - stamp)
                if gap <= best_gap:  # later items win ties: the newest
                    best, best_gap = kept, gap
            return best
