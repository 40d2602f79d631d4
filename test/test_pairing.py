"""Tests of the ROS-free stamp guard, RGB/depth pairer and stamp history."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from depth_estimator_ros.ros.pairing import STAMP_REASONS, StampGuard, StampHistory, StampPairer


def test_guard_accepts_increasing_stamps_and_names_each_refusal():
    guard = StampGuard(max_future=10.0, reset_after=5.0)
    assert guard.check(99.0, now=100.0) is None
    assert guard.check(100.0, now=100.0) is None
    assert guard.check(100.1, now=100.1) is None
    assert guard.check(100.1, now=100.2) == "stamp_duplicate"
    assert guard.check(99.5, now=100.2) == "stamp_backwards"
    assert guard.check(200.0, now=100.2) == "stamp_future"
    assert guard.check(float("nan"), now=100.2) == "stamp_invalid"
    assert guard.check(-1.0, now=100.2) == "stamp_invalid"
    # the refusals did not move the reference: the next stamp after 100.1 passes
    assert guard.check(100.2, now=100.3) is None
    assert set(STAMP_REASONS) == {"stamp_backwards", "stamp_duplicate", "stamp_future", "stamp_invalid"}


def test_guard_takes_a_large_backward_jump_as_a_time_reset():
    guard = StampGuard(max_future=0.0, reset_after=5.0)
    assert guard.check(40.0, now=0.0) is None  # max_future 0 disables the future check
    assert guard.check(50.0, now=0.0) is None
    assert guard.check(46.0, now=0.0) == "stamp_backwards"
    assert guard.check(10.0, now=0.0) is None  # looped bag: 40 s back
    assert guard.resets == 1
    assert guard.check(10.5, now=0.0) is None
    guard.clear()
    assert guard.check(10.5, now=0.0) is None


def test_guard_keeps_a_looped_short_bag_going_and_still_drops_jitter():
    """ros2 bag play --loop republishes the same stamps: each pass is a time reset, not 'backwards'."""
    guard = StampGuard(max_future=0.0, reset_after=3.0)
    bag = [1000.0 + i / 10 for i in range(6)]  # a 0.5 s bag at 10 Hz, far under reset_after
    for loop in range(3):
        assert [guard.check(stamp, now=0.0) for stamp in bag] == [None] * 6, f"pass {loop}"
        assert guard.resets == loop
    # an out-of-order frame inside a pass is still refused, and the pass goes on
    assert guard.check(1000.0, now=0.0) is None  # pass 4
    assert guard.check(1000.1, now=0.0) is None
    assert guard.check(1000.3, now=0.0) is None
    assert guard.check(1000.2, now=0.0) == "stamp_backwards"  # late by one frame
    assert guard.check(1000.4, now=0.0) is None
    assert guard.resets == 3


def test_guard_takes_a_new_timeline_whose_first_stamp_was_lost_as_a_reset():
    guard = StampGuard(max_future=0.0, reset_after=3.0)
    for stamp in (1000.0, 1000.1, 1000.2, 1000.3, 1000.4, 1000.5):
        assert guard.check(stamp, now=0.0) is None
    # the loop's first frame (1000.0) never arrived: the next ones are behind, and increasing
    refused = [guard.check(stamp, now=0.0) for stamp in (1000.1, 1000.2)]
    assert refused == ["stamp_backwards"] * (StampGuard.RESET_AFTER_STEPS - 1)
    assert guard.check(1000.3, now=0.0) is None and guard.resets == 1
    assert guard.check(1000.4, now=0.0) is None
    # two late frames in a row that go backwards among themselves are jitter, not a timeline
    assert guard.check(1000.6, now=0.0) is None
    assert [guard.check(s, now=0.0) for s in (1000.5, 1000.45, 1000.42)] == ["stamp_backwards"] * 3
    assert guard.resets == 1


@pytest.mark.parametrize("kwargs", [{"max_future": -1.0, "reset_after": 1.0}, {"max_future": 1.0, "reset_after": 0.0}])
def test_guard_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError, match="must be"):
        StampGuard(**kwargs)


def test_pairer_pairs_offset_streams_in_any_interleaving():
    rng = np.random.default_rng(0)
    pairer: StampPairer[str] = StampPairer(tolerance=0.01, queue_size=5)
    rgb_stamps = [1.0 + i / 30.0 for i in range(60)]
    depth_stamps = [s + 0.004 for s in rgb_stamps]
    events = [("rgb", s) for s in rgb_stamps] + [("depth", s) for s in depth_stamps]
    # arrival order: by stamp plus a random network delay of up to 50 ms
    delays = rng.uniform(0.0, 0.05, len(events))
    order = np.argsort([s + d for (_, s), d in zip(events, delays)], kind="stable")
    pairs = []
    for index in order:
        kind, stamp = events[index]
        add = pairer.add_rgb if kind == "rgb" else pairer.add_depth
        pair = add(stamp, f"{kind}@{stamp:.4f}")
        if pair is not None:
            pairs.append(pair)
    assert len(pairs) >= 55  # a late arrival may lose its partner to eviction, rarely
    for pair in pairs:
        assert abs(pair.depth_stamp - pair.rgb_stamp - 0.004) < 1e-9
        assert pair.rgb == f"rgb@{pair.rgb_stamp:.4f}"
        assert pair.depth == f"depth@{pair.depth_stamp:.4f}"
    assert pairer.paired == len(pairs)
    assert sum(pairer.pending()) <= 10


def test_pairer_refuses_partners_beyond_tolerance_and_bounds_memory():
    pairer: StampPairer[int] = StampPairer(tolerance=0.005, queue_size=3)
    assert pairer.add_rgb(1.0, 1) is None
    assert pairer.add_depth(1.02, 2) is None  # 20 ms apart: no pair
    for i in range(10):
        assert pairer.add_rgb(2.0 + i, i) is None
    assert pairer.pending() == (3, 1)
    assert pairer.discarded == 8  # the rgb evicted by the bound
    pair = pairer.add_depth(11.003, 99)
    assert pair is not None and pair.rgb == 9 and pair.rgb_stamp == 11.0
    # everything at or before the pair is gone and counted
    assert pairer.pending() == (0, 0)
    assert pairer.discarded == 8 + 2 + 1


def test_pairer_picks_the_nearest_candidate():
    pairer: StampPairer[str] = StampPairer(tolerance=0.05)
    pairer.add_depth(1.00, "far")
    pairer.add_depth(1.03, "near")
    pair = pairer.add_rgb(1.035, "rgb")
    assert pair is not None and pair.depth == "near"
    with pytest.raises(ValueError, match="tolerance"):
        pairer.tolerance = 0.0
    pairer.tolerance = 0.02
    assert pairer.tolerance == 0.02


def test_pairer_is_safe_from_several_threads():
    pairer: StampPairer[int] = StampPairer(tolerance=0.001, queue_size=4)
    results: list[object] = []

    def feed(kind: str) -> None:
        add = pairer.add_rgb if kind == "rgb" else pairer.add_depth
        for i in range(2000):
            pair = add(float(i), i)
            if pair is not None:
                results.append(pair)

    threads = [threading.Thread(target=feed, args=(kind,)) for kind in ("rgb", "depth")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10.0)
    assert not any(thread.is_alive() for thread in threads)
    assert all(p.rgb == p.depth for p in results)
    assert pairer.paired == len(results) > 0


def test_pairer_clears_one_stream_or_both():
    pairer = StampPairer(tolerance=0.01)
    pairer.add_rgb(1.0, "rgb1")
    pairer.add_depth(2.0, "depth2")
    pairer.clear("rgb")
    assert pairer.pending() == (0, 1) and pairer.discarded == 1
    assert pairer.add_depth(1.004, "depth1") is None  # rgb1 is gone
    pairer.clear()
    assert pairer.pending() == (0, 0) and pairer.discarded == 3
    with pytest.raises(ValueError, match="'rgb', 'depth' or None"):
        pairer.clear("image")


def test_history_finds_the_nearest_item_within_the_tolerance_and_keeps_only_the_newest():
    history: StampHistory[str] = StampHistory(3)
    assert history.nearest(1.0, 0.1) is None
    for stamp, item in ((1.0, "a"), (1.25, "b"), (1.75, "c")):  # exact binary fractions: exact gaps
        history.add(stamp, item)
    assert history.nearest(1.125, 0.25) == (1.25, "b")  # nearest, not newest
    assert history.nearest(1.5, 0.25) == (1.75, "c")  # 1.25 and 1.75 equally near: the newest
    assert history.nearest(1.5, 0.125) is None
    assert history.nearest(1.25, 1.0) == (1.25, "b")  # a lookup consumes nothing
    history.add(2.0, "d")  # at capacity the oldest goes
    assert len(history) == 3 and history.nearest(1.0, 0.125) is None
    assert history.nearest(3.0, 1.0) == (2.0, "d")
    with pytest.raises(ValueError, match="capacity"):
        StampHistory(0)
