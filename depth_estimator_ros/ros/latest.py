"""A worker thread that always processes the newest item and drops the ones it could not reach.

The estimator's inference loop. Camera callbacks :meth:`LatestWorker.offer` each
frame; the worker thread takes the newest one when it is free, so a slow model drops
stale frames instead of queueing them. It is a plain thread on a condition variable,
deliberately outside the rclpy executor: a guard condition that re-triggers while its
callback group is busy kept rclpy 7.1.6's ``MultiThreadedExecutor`` spinning in Python,
holding the GIL that inference needs (ros2/rclpy#1452; the README's pipeline section has
the figures).

ROS-free: any callable works as the handler.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["LatestWorker"]

T = TypeVar("T")


class LatestWorker(Generic[T]):
    """Run ``handler(item)`` on a worker thread for the newest item offered.

    Args:
        handler: called with each item the worker takes, one at a time.
        on_error: called with an exception ``handler`` raised; the worker keeps
            running (a bad frame must never stop the loop). Exceptions from
            ``on_error`` itself are swallowed for the same reason.
        name: thread name (shows in ``py-spy`` and ``/proc``).
    """

    def __init__(
        self,
        handler: Callable[[T], None],
        *,
        on_error: Callable[[BaseException], None],
        name: str = "latest-worker",
    ) -> None:
        self._handler = handler
        self._on_error = on_error
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def offer(self, item: T) -> bool:
        """Hand ``item`` to the worker, replacing one still waiting.

        Returns:
            True when a waiting item was replaced (it will never be processed).

        Raises:
            RuntimeError: after :meth:`close`.
        """
        with self._cond:
            if self._closed:
                raise RuntimeError("LatestWorker is closed")
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
        return replaced

    def close(self, timeout: float = 10.0) -> bool:
        """Stop the worker after the item in progress; a waiting item is discarded.

        Returns:
            True when the thread ended within ``timeout`` seconds.
        """
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._item is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                item, self._item = self._item, None
            try:
                self._handler(item)
            except Exception as exc:  # noqa: BLE001 - the loop must survive any frame
                try:
                    self._on_error(exc)
                except Exception:  # noqa: BLE001
                    pass
