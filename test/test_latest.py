"""Tests of LatestWorker, the estimator's newest-frame inference thread."""

from __future__ import annotations

import threading

import pytest

from depth_estimator_ros.ros.latest import LatestWorker

DEADLINE_S = 30.0


def test_worker_takes_the_newest_item_and_reports_replaced_ones() -> None:
    started, release = threading.Event(), threading.Event()
    seen: list[int] = []
    done = threading.Event()

    def handle(item: int) -> None:
        seen.append(item)
        if item == 0:
            started.set()
            release.wait(DEADLINE_S)
        if item == 3:
            done.set()

    worker = LatestWorker(handle, on_error=pytest.fail)
    try:
        assert worker.offer(0) is False
        assert started.wait(DEADLINE_S)
        # While item 0 is in the handler, 1 and 2 are replaced before the worker reaches them.
        assert worker.offer(1) is False
        assert worker.offer(2) is True
        assert worker.offer(3) is True
        release.set()
        assert done.wait(DEADLINE_S)
        assert seen == [0, 3]
    finally:
        assert worker.close(DEADLINE_S)


def test_handler_errors_are_reported_and_the_worker_goes_on() -> None:
    errors: list[BaseException] = []
    handled, failed = threading.Event(), threading.Event()

    def handle(item: str) -> None:
        if item == "bad":
            raise ValueError("broken frame")
        handled.set()

    def on_error(exc: BaseException) -> None:
        errors.append(exc)
        failed.set()
        raise RuntimeError("a failing error callback must not stop the worker either")

    worker = LatestWorker(handle, on_error=on_error)
    try:
        worker.offer("bad")
        assert failed.wait(DEADLINE_S)
        worker.offer("good")
        assert handled.wait(DEADLINE_S)
        assert len(errors) == 1 and isinstance(errors[0], ValueError) and "broken frame" in str(errors[0])
    finally:
        assert worker.close(DEADLINE_S)


def test_close_ends_the_thread_and_refuses_new_items() -> None:
    worker = LatestWorker(lambda item: None, on_error=pytest.fail, name="test-latest")
    assert worker.close(DEADLINE_S)
    with pytest.raises(RuntimeError, match="closed"):
        worker.offer(1)
    assert not any(t.name == "test-latest" for t in threading.enumerate())
