"""Counters and meters the nodes report on ``/diagnostics``, and the message builder.

All classes are thread-safe: the callbacks and the diagnostics timer (on the executor
thread) and the inference and training worker threads touch them concurrently.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

__all__ = ["DropCounter", "RateMeter", "LatencyMeter", "build_status", "build_array", "split_drops"]


class DropCounter:
    """Count dropped messages by reason, and throttle their log lines per reason.

    rclpy's ``throttle_duration_sec`` throttles per call site, so one log call for
    every drop reason would let a frequent reason hide a rare one; here each
    reason gets its own period.

    Args:
        throttle_sec: seconds between two log lines of the same reason.
    """

    def __init__(self, throttle_sec: float) -> None:
        self.throttle_sec = float(throttle_sec)
        self._counts: dict[str, int] = {}
        self._last_logged: dict[str, float] = {}
        self._lock = threading.Lock()

    def record(self, reason: str, now: float | None = None) -> bool:
        """Count one drop for ``reason``; return whether to log it now.

        Args:
            reason: short snake_case reason, used as the diagnostics key.
            now: monotonic seconds (default ``time.monotonic()``).
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + 1
            last = self._last_logged.get(reason)
            if last is None or now - last >= self.throttle_sec:
                self._last_logged[reason] = now
                return True
            return False

    def report(self, logger: Any, reason: str, detail: str, what: str = "an input") -> None:
        """Count one drop for ``reason`` and log it as a warning unless throttled.

        Args:
            logger: the node's logger (``node.get_logger()``).
            reason: short snake_case reason, used as the diagnostics key.
            detail: what was dropped and why, for the log line.
            what: the dropped thing, for the log line (``"an image"``, ``"an input"``).
        """
        if self.record(reason):
            logger.warn(
                f"dropped {what} ({reason}): {detail}; further '{reason}' drops are logged "
                f"at most every {self.throttle_sec:g} s and counted in /diagnostics"
            )

    def counts(self) -> dict[str, int]:
        """Return a copy of ``{reason: count}``."""
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        """Return the number of drops of every reason."""
        with self._lock:
            return sum(self._counts.values())


class RateMeter:
    """Measure an event rate over a sliding time window.

    Args:
        window: seconds of history the rate is computed over.
    """

    def __init__(self, window: float = 5.0) -> None:
        self.window = float(window)
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        """Record one event at ``now`` (monotonic seconds, default now)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._times.append(now)
            self._trim(now)

    def rate(self, now: float | None = None) -> float:
        """Return events per second over the window (0 with fewer than two events)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            if len(self._times) < 2:
                return 0.0
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()


class LatencyMeter:
    """Keep the recent values of a duration and report their mean and maximum.

    Args:
        size: how many recent values are kept.
    """

    def __init__(self, size: int = 100) -> None:
        self._values: deque[float] = deque(maxlen=int(size))
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        """Record one duration in seconds."""
        with self._lock:
            self._values.append(float(seconds))

    def summary(self) -> tuple[float, float]:
        """Return ``(mean, max)`` in seconds over the kept values (``(0, 0)`` when empty)."""
        with self._lock:
            if not self._values:
                return 0.0, 0.0
            return sum(self._values) / len(self._values), max(self._values)


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def build_status(
    name: str, hardware_id: str, level: bytes, message: str, values: Mapping[str, object]
) -> DiagnosticStatus:
    """Build one :class:`DiagnosticStatus`.

    Args:
        name: status name, conventionally ``"<node name>: <what>"``.
        hardware_id: the device or source the status is about.
        level: ``DiagnosticStatus.OK``, ``WARN``, ``ERROR`` or ``STALE`` (one byte).
        message: one-line summary.
        values: key/value pairs; floats are written with 4 significant digits.

    Returns:
        The status message.
    """
    return DiagnosticStatus(
        level=level,
        name=name,
        message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=str(k), value=_format(v)) for k, v in values.items()],
    )


def build_array(stamp: Time, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    """Wrap ``statuses`` in a :class:`DiagnosticArray` stamped ``stamp`` (a ``builtin_interfaces/Time``)."""
    array = DiagnosticArray(status=statuses)
    array.header.stamp = stamp
    return array


def split_drops(stats: Mapping[str, object]) -> tuple[dict[str, object], dict[str, int]]:
    """Return a node's ``stats()`` as diagnostics values (drops flattened) and the drop counts.

    Args:
        stats: the node's counters, with ``"dropped"`` a ``{reason: count}`` mapping.

    Returns:
        ``(values, drops)``: ``values`` has every entry but ``dropped``, plus one
        ``dropped_<reason>`` per reason in sorted order; ``drops`` is ``{reason: count}``.
    """
    drops = dict(stats["dropped"])  # type: ignore[call-overload]
    values = {k: v for k, v in stats.items() if k != "dropped"}
    values.update({f"dropped_{reason}": count for reason, count in sorted(drops.items())})
    return values, drops
