"""Keep a :class:`~depth_estimator_ros.adaptation.rooms.RoomMemory` in a folder: loaded at start, saved as it changes.

The ``online_trainer`` node's persistence, ROS-free. :meth:`RoomFolder.load` reads the
folder once; a background thread then checks every ``period_s`` seconds whether the
memory changed (:attr:`RoomMemory.revision`) and writes only the rooms whose weights
changed since they were last written (the room in force, after accepted rounds),
deleting the files of rooms forgotten or evicted. So the weights of a room are written
at most once per period however often rounds run (flash storage wears with every
write), nothing waits for the disk but this thread, and :meth:`RoomFolder.close` writes
every room once more at shutdown, their least-recently-used order included.

Every write is atomic (a temporary file renamed over the old one): a kill at any
moment leaves each room's previous file or its new one, and no temporary file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

from depth_estimator_ros.adaptation.rooms import Room, RoomMemory

__all__ = ["RoomFolder"]


class RoomFolder:
    """Load ``memory`` from ``folder`` and keep the folder up to date in a background thread.

    Args:
        memory: the room memory (e.g. ``AdaptationEngine.memory``).
        folder: where the rooms live (created on the first save).
        period_s: least seconds between two background saves; 0 = no background
            thread (saves only on :meth:`save` and :meth:`close`).
        on_error: called with the reason when a background save fails (from the thread);
            the next period tries again.
    """

    def __init__(
        self,
        memory: RoomMemory,
        folder: str | os.PathLike[str],
        *,
        period_s: float,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        if period_s < 0:
            raise ValueError(f"period_s must be >= 0, got {period_s}")
        self._memory = memory
        self._folder = Path(folder)
        self._period = period_s
        self._on_error = on_error
        self._lock = threading.Lock()  # one save at a time (the thread, a service, close)
        self._written: dict[str, Room] = {}  # the room objects last written (a store replaces the object)
        # What the memory holds is unsaved until load() (or a save) says otherwise.
        self._saved_revision = self._full_revision = -1
        self._error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def folder(self) -> Path:
        """The folder."""
        return self._folder

    @property
    def last_error(self) -> str:
        """Why the last save failed, or ``""`` after a successful one."""
        with self._lock:
            return self._error

    def load(self) -> tuple[list[str], list[str]]:
        """Load the folder's rooms into the memory (:meth:`RoomMemory.load`).

        Returns:
            ``(names loaded, problems)``: one line per file not loaded, naming it and why.

        Raises:
            OSError: the folder exists but cannot be listed.
        """
        with self._lock:
            loaded, problems = self._memory.load(self._folder)
            self._written = {n: room for n in loaded if (room := self._memory.get(n)) is not None}
            self._saved_revision = self._full_revision = self._memory.revision
        return loaded, problems

    def start(self) -> None:
        """Start the background saves (nothing with ``period_s`` 0, or when already started)."""
        if self._period <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="room-memory-saver", daemon=True)
        self._thread.start()

    def save(self, *, changed_only: bool = False) -> list[Path]:
        """Write the rooms now and delete the files of rooms forgotten or evicted.

        Args:
            changed_only: write only rooms whose weights changed since they were last written.

        Returns:
            The files written.

        Raises:
            OSError: the folder cannot be created or written; the reason is kept in
                :attr:`last_error` too.
        """
        with self._lock:
            revision = self._memory.revision  # read first: a change during the write is saved next time
            rooms = {n: room for n in self._memory.names() if (room := self._memory.get(n)) is not None}
            names = [n for n, room in rooms.items() if not changed_only or self._written.get(n) is not room]
            try:
                written = self._memory.save(self._folder, names)
            except OSError as exc:
                self._error = f"room memory not saved to {self._folder}: {exc}"
                raise
            self._error = ""
            self._written = {n: room for n, room in rooms.items() if n in names or self._written.get(n) is room}
            self._saved_revision = revision
            if not changed_only:
                self._full_revision = revision
            return written

    def close(self, timeout: float = 10.0) -> list[Path]:
        """Stop the background saves, then write every room if the memory changed since the last full save.

        Returns:
            The files written (none when nothing changed).

        Raises:
            OSError: the final save failed.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._memory.revision == self._full_revision:
            return []
        return self.save()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            if self._memory.revision == self._saved_revision:
                continue
            try:
                self.save(changed_only=True)
            except OSError:
                if self._on_error is not None:
                    self._on_error(self.last_error)
