"""Hand a :class:`~depth_estimator_ros.adaptation.rooms.RoomMemory` to others whenever it changed, throttled.

The ``online_trainer`` node publishes its whole memory (:meth:`RoomMemory.to_bytes`) on the
``rooms`` topic so that an estimator without sensor depth (a second robot, the sensor gone)
can recognise rooms by appearance. :class:`RoomBroadcast` runs a background thread that
every ``period_s`` seconds checks :attr:`RoomMemory.revision` and, when it moved, calls
``send`` with the blob: at most one blob per period however often rounds run, the last
change always sent (at the next period), and neither the image callbacks nor the
training rounds wait for the serialisation. ROS-free: ``send`` is the node's publish.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from depth_estimator_ros.adaptation.rooms import RoomMemory

__all__ = ["RoomBroadcast"]


class RoomBroadcast:
    """Call ``send(memory.to_bytes())`` at most every ``period_s`` seconds after the memory changed.

    Args:
        memory: the room memory (e.g. ``AdaptationEngine.memory``).
        send: called from the thread with the blob.
        period_s: seconds between two checks (> 0).
        on_error: called with the exception when ``send`` or the serialisation raises;
            the next period tries again.
    """

    def __init__(
        self,
        memory: RoomMemory,
        send: Callable[[bytes], None],
        *,
        period_s: float,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        if not period_s > 0:
            raise ValueError(f"period_s must be > 0, got {period_s}")
        self._memory = memory
        self._send = send
        self._period = period_s
        self._on_error = on_error
        self._sent_revision = -1  # nothing sent yet: a memory loaded at start goes out at the first check
        self._sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def sent(self) -> int:
        """Blobs sent so far."""
        return self._sent

    def start(self) -> None:
        """Start the thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="room-memory-broadcast", daemon=True)
            self._thread.start()

    def check(self) -> bool:
        """Send the memory now if it changed since the last blob sent; return whether one was sent."""
        revision = self._memory.revision  # read first: a change during the send goes out next time
        if revision == self._sent_revision or (revision == 0 and len(self._memory) == 0):
            return False
        self._send(self._memory.to_bytes())
        self._sent_revision = revision
        self._sent += 1
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (a blob being sent is finished first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - a failed send must not end the thread; reported
                if self._on_error is not None:
                    self._on_error(exc)
