"""Tests of the bounded replay buffer: bound, memory, old frames kept, entry filters."""

from __future__ import annotations

import numpy as np
import pytest

from depth_estimator_ros.adaptation.buffer import ReplayBuffer, prepare_frame, stack_frames
from depth_estimator_ros.data.frame import Frame, Intrinsics
from depth_estimator_ros.models import CANONICAL_FOCAL

SIZE = (24, 32)


def make_frame(i: int, *, h: int = 48, w: int = 64, depth: float | None = 2.0) -> Frame:
    """Return a frame whose RGB is distinct per ``i`` and whose depth is a flat ``depth`` m."""
    rng = np.random.default_rng(i)
    rgb = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    d = None if depth is None else np.full((h, w), depth, np.float32)
    return Frame(rgb=rgb, depth=d, stamp=i / 30.0, name=f"f{i}")


def test_never_exceeds_capacity_and_memory_is_exact() -> None:
    buf = ReplayBuffer(20, SIZE, recent_fraction=0.5, seed=1)
    for i in range(300):
        assert buf.add(make_frame(i))
        assert len(buf) <= 20
    assert len(buf) == 20
    assert buf.frame_nbytes == 24 * 32 * 5
    assert buf.nbytes == 20 * buf.frame_nbytes
    counters = buf.counters()
    assert counters["offered"] == 300 and counters["kept"] == 300 and counters["evicted"] == 290


def test_keeps_frames_from_the_start_after_ten_times_capacity() -> None:
    capacity = 40
    buf = ReplayBuffer(capacity, SIZE, recent_fraction=0.25, seed=3)
    for i in range(10 * capacity):
        buf.add(make_frame(i))
    indices = buf.indices()
    assert len(indices) == capacity
    # The recent ring holds the newest 10 frames exactly.
    assert indices[:10] == list(range(10 * capacity - 10, 10 * capacity))
    # The reservoir is spread over the whole history, including its first tenth.
    reservoir = np.array(indices[10:])
    assert (reservoir < capacity).sum() >= 1
    assert reservoir.min() < capacity and reservoir.max() > 5 * capacity


def test_recent_only_buffer_forgets_old_frames() -> None:
    buf = ReplayBuffer(10, SIZE, recent_fraction=1.0)
    for i in range(50):
        buf.add(make_frame(i))
    assert sorted(buf.indices()) == list(range(40, 50))


def test_drops_duplicates_subsampled_and_invalid_frames() -> None:
    buf = ReplayBuffer(10, SIZE, subsample=2, duplicate_threshold=2.0, min_valid_fraction=0.5)
    assert buf.add(make_frame(0))  # offered #0 kept
    assert not buf.add(make_frame(1))  # offered #1 sub-sampled
    assert not buf.add(make_frame(0))  # offered #2: same image again -> duplicate
    assert not buf.add(make_frame(5))  # sub-sampled
    nan_depth = make_frame(6, depth=float("nan"))
    assert not buf.add(nan_depth)  # no valid depth
    assert not buf.add(make_frame(7))  # sub-sampled
    assert not buf.add(make_frame(8, depth=50.0))  # depth out of range -> invalid
    assert not buf.add(make_frame(9))
    assert not buf.add(make_frame(10, depth=None))  # no depth sensor
    assert not buf.add(make_frame(11))
    assert buf.add(make_frame(12))
    c = buf.counters()
    assert c == {
        "offered": 11, "kept": 2, "evicted": 0, "removed": 0, "pending": 2,
        "dropped_subsampled": 5, "dropped_duplicate": 1, "dropped_invalid": 3, "dropped_invalid_intrinsics": 0,
    }


def test_take_new_and_sample_mix_recent_and_reservoir() -> None:
    buf = ReplayBuffer(16, SIZE, recent_fraction=0.5, seed=0)
    for i in range(40):
        buf.add(make_frame(i))
    assert buf.new_count == 8  # pending is capped by the recent ring
    new = buf.take_new(5)
    assert [f.index for f in new] == [35, 36, 37, 38, 39]
    assert buf.new_count == 0 and buf.take_new(5) == []
    rng = np.random.default_rng(0)
    picked = buf.sample(100, rng, exclude=[f.index for f in new])
    assert len(picked) == 11  # 16 stored - 5 excluded
    indices = {f.index for f in picked}
    assert not indices & {35, 36, 37, 38, 39}
    assert any(i < 32 for i in indices) and any(i >= 32 for i in indices)


def test_stored_form_and_batch() -> None:
    frame = make_frame(1, depth=3.0)
    frame.depth[:10] = np.nan
    stored = prepare_frame(frame, SIZE, 7)
    assert stored.rgb.dtype == np.uint8 and stored.rgb.shape == (24, 32, 3)
    assert stored.depth.dtype == np.float16 and stored.depth.shape == SIZE
    assert np.isnan(stored.depth[:4]).all() and np.allclose(stored.depth[6:].astype(np.float32), 3.0)
    kinect = Intrinsics(585.0, 585.0, 320.0, 240.0, 640, 480).scaled(64, 48)
    with_camera = prepare_frame(Frame(rgb=frame.rgb, depth=frame.depth, stamp=0.0, intrinsics=kinect), SIZE, 8)
    rgb, depth, focal = stack_frames([stored, with_camera])
    assert rgb.shape == (2, 3, 24, 32) and depth.shape == (2, 1, 24, 32)
    # no intrinsics = the canonical camera; the frame's own camera otherwise, whatever the stored size
    assert focal.tolist() == pytest.approx([CANONICAL_FOCAL, kinect.normalized_focal])
    assert float(rgb.min()) >= 0.0 and float(rgb.max()) <= 1.0
    assert depth.dtype.is_floating_point and bool(depth.isnan().any())


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(1, SIZE)
    with pytest.raises(ValueError, match="recent_fraction"):
        ReplayBuffer(10, SIZE, recent_fraction=0.0)
    with pytest.raises(ValueError, match="subsample"):
        ReplayBuffer(10, SIZE, subsample=0)
    with pytest.raises(ValueError, match="stack_frames"):
        stack_frames([])


@pytest.mark.parametrize("fx", [float("inf"), float("nan"), 1e200, 1e9, 1e-30, -525.0])
def test_frames_with_implausible_intrinsics_never_enter(fx: float) -> None:
    buf = ReplayBuffer(10, SIZE)
    bad = Intrinsics(fx, fx, 31.5, 23.5, 64, 48)
    assert not buf.add(Frame(rgb=make_frame(1).rgb, depth=make_frame(1).depth, stamp=0.0, intrinsics=bad))
    good = Intrinsics(585.0, 585.0, 320.0, 240.0, 640, 480).scaled(64, 48)
    assert buf.add(Frame(rgb=make_frame(2).rgb, depth=make_frame(2).depth, stamp=0.1, intrinsics=good))
    assert buf.counters()["dropped_invalid_intrinsics"] == 1 and len(buf) == 1


def test_removed_frames_are_never_sampled_or_taken_again() -> None:
    buf = ReplayBuffer(8, SIZE, recent_fraction=0.5, seed=0)
    for i in range(10):
        buf.add(make_frame(i))
    assert buf.new_count == 4
    # 9 is pending in the ring, 0 went to the reservoir, 42 was never held
    assert buf.remove([9, 0, 42]) == 2
    assert 9 not in buf.indices() and 0 not in buf.indices() and len(buf) == 6
    assert buf.new_count == 3 and [f.index for f in buf.take_new(10)] == [6, 7, 8]
    rng = np.random.default_rng(0)
    assert {f.index for f in buf.sample(100, rng)} == set(buf.indices())
    assert buf.counters()["removed"] == 2
