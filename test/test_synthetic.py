"""Tests for the synthetic room generator."""

from __future__ import annotations

import time

import numpy as np
import pytest

from depth_estimator_ros.data.base import DataError
from depth_estimator_ros.data.synthetic import MAX_DEPTH, MIN_DEPTH, SyntheticRooms, camera_pose, make_room, render_view


@pytest.fixture(scope="module")
def rooms() -> SyntheticRooms:
    return SyntheticRooms(seed=3, frames=40, width=96, height=72)


def test_frames_are_deterministic_in_any_order(rooms: SyntheticRooms) -> None:
    later = rooms[7]
    fresh = SyntheticRooms(seed=3, frames=40, width=96, height=72)
    first = fresh[7]
    np.testing.assert_array_equal(first.rgb, later.rgb)
    np.testing.assert_array_equal(first.depth, later.depth)  # NaN positions equal too


def test_seeds_give_visibly_different_rooms() -> None:
    a = SyntheticRooms(seed=0, frames=2, width=96, height=72)[0]
    b = SyntheticRooms(seed=1, frames=2, width=96, height=72)[0]
    mean_a = a.rgb.reshape(-1, 3).mean(axis=0)
    mean_b = b.rgb.reshape(-1, 3).mean(axis=0)
    assert np.abs(mean_a - mean_b).max() > 10 or np.abs(a.rgb.astype(int) - b.rgb).mean() > 30
    room_a, room_b = make_room(0), make_room(1)
    assert not np.allclose(room_a.size, room_b.size)
    assert room_a.boxes.shape != room_b.boxes.shape or not np.allclose(room_a.boxes, room_b.boxes)


def test_frame_contract_depth_range_holes_and_intrinsics(rooms: SyntheticRooms) -> None:
    frame = rooms[0]
    assert frame.rgb.shape == (72, 96, 3) and frame.rgb.dtype == np.uint8
    assert frame.depth.shape == (72, 96) and frame.depth.dtype == np.float32
    valid = frame.depth[np.isfinite(frame.depth)]
    assert valid.min() >= MIN_DEPTH and valid.max() <= MAX_DEPTH
    holes = np.mean([np.isnan(rooms[i].depth).mean() for i in range(0, 40, 5)])
    assert 0.001 < holes < 0.3
    assert frame.intrinsics.fx == pytest.approx(525 * 96 / 640)
    assert frame.rgb.std() > 10  # textured, not flat
    assert frame.stamp == 0.0 and rooms[3].stamp == pytest.approx(0.1)


def test_noise_free_depth_matches_ray_geometry() -> None:
    room = make_room(5)
    source = SyntheticRooms(seed=5, frames=1, width=64, height=48, noise=False)
    position, rotation = camera_pose(room, 0.0)
    _, depth = render_view(room, position, rotation, source.intrinsics)
    # every valid pixel back-projects to a point inside the room (or on its walls)
    k = source.intrinsics
    v, u = np.mgrid[0:48, 0:64]
    rays = np.stack([(u - k.cx) / k.fx, (v - k.cy) / k.fy, np.ones_like(u, float)])
    points = position[:, None, None] + np.einsum("ij,jhw->ihw", rotation, rays) * depth
    ok = np.isfinite(depth)
    assert ok.mean() > 0.9
    assert (points[:, ok] >= -1e-3).all() and (points[:, ok] <= room.size[:, None] + 1e-3).all()
    on_surface = np.zeros(ok.sum(), bool)
    for axis in range(3):
        on_surface |= np.isclose(points[axis, ok], 0, atol=2e-3) | np.isclose(points[axis, ok], room.size[axis], atol=2e-3)
        for box in room.boxes:
            on_surface |= np.isclose(points[axis, ok], box[0, axis], atol=2e-3) | np.isclose(points[axis, ok], box[1, axis], atol=2e-3)
    assert on_surface.all()


def test_trajectory_is_smooth_and_consecutive(rooms: SyntheticRooms) -> None:
    room = rooms.room(0)
    poses = [camera_pose(room, i / 30) for i in range(60)]
    steps = [np.linalg.norm(b[0] - a[0]) for a, b in zip(poses[:-1], poses[1:])]
    assert max(steps) < 0.03 and np.mean(steps) > 1e-4
    turns = [np.degrees(np.arccos(np.clip((a[1][:, 2] * b[1][:, 2]).sum(), -1, 1))) for a, b in zip(poses[:-1], poses[1:])]
    assert max(turns) < 3.0
    diff_next = np.abs(rooms[10].rgb.astype(int) - rooms[11].rgb).mean()
    diff_far = np.abs(rooms[10].rgb.astype(int) - rooms[39].rgb).mean()
    assert diff_next < diff_far


def test_rooms_split_frames_into_walks() -> None:
    source = SyntheticRooms(seed=2, frames=10, width=32, height=24, rooms=3)
    assert source.frames_per_room == 4
    assert source[4].name == "synthetic-seed2/room1/frame0"
    assert source[9].name == "synthetic-seed2/room2/frame1"


def test_first_room_selects_later_rooms_of_the_same_seed_frame_for_frame() -> None:
    whole = SyntheticRooms(seed=2, frames=12, width=32, height=24, rooms=4)
    later = SyntheticRooms.from_spec("seed=2,frames=6,width=32,height=24,rooms=2,first_room=2")
    assert later.frames_per_room == whole.frames_per_room == 3
    for i in range(len(later)):
        a, b = later[i], whole[6 + i]
        assert a.name == b.name and a.name.startswith(f"synthetic-seed2/room{2 + i // 3}/")
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.depth, b.depth)
    with pytest.raises(DataError, match="first_room must be >= 0"):
        SyntheticRooms.from_spec("first_room=-1")


def test_close_range_rooms_are_small_crowded_and_leave_the_other_rooms_as_they_were() -> None:
    mixed = SyntheticRooms(seed=1, frames=40, width=64, height=48, rooms=20, close=0.5)
    regular = SyntheticRooms(seed=1, frames=40, width=64, height=48, rooms=20)
    close = [i for i in range(20) if mixed.is_close(i)]
    assert 3 <= len(close) <= 17  # about half, drawn per (seed, room)
    assert not any(regular.is_close(i) for i in range(20))
    for i in range(20):
        a, b = mixed.room(i), regular.room(i)
        assert a.close == (i in close) and not b.close
        if not a.close:  # a room that is not close-range is the regular room of its index, frame for frame
            np.testing.assert_array_equal(a.boxes, b.boxes)
            np.testing.assert_array_equal(mixed[2 * i].rgb, regular[2 * i].rgb)
        else:
            assert a.size[0] <= 3.5 and a.size[2] <= 3.5 and b.size[0] >= 4.0
            assert a.pitch < b.pitch  # looks down at tables and counters
    near = SyntheticRooms(seed=1, frames=40, width=64, height=48, rooms=20, close=1.0)
    medians = {}
    for kind, source in (("close", near), ("regular", regular)):
        medians[kind] = []
        for i in range(0, 40, 2):
            depth = source[i].depth
            valid = np.isfinite(depth)
            assert valid.mean() > 0.3, f"{kind} frame {i}: the camera is inside something"
            medians[kind].append(float(np.median(depth[valid])))
    assert np.median(medians["close"]) < 1.6 < np.median(medians["regular"])
    # the same arguments give the same close-range frames
    np.testing.assert_array_equal(near[7].depth, SyntheticRooms.from_spec("seed=1,frames=40,width=64,height=48,rooms=20,close=1")[7].depth)


def test_spec_parsing_and_refusals() -> None:
    source = SyntheticRooms.from_spec("seed=3, frames=12,width=40,height=30", frames=5)
    assert (len(source), source.intrinsics.width, source.seed) == (5, 40, 3)
    with pytest.raises(DataError, match="bad item 'colour=red'"):
        SyntheticRooms.from_spec("colour=red")
    with pytest.raises(DataError, match="frames must be int, got 'many'"):
        SyntheticRooms.from_spec("frames=many")
    with pytest.raises(DataError, match="width and height must be >= 8"):
        SyntheticRooms.from_spec("width=4")
    with pytest.raises(ValueError, match=r"rooms must be in \[1, frames=2\]"):
        SyntheticRooms(frames=2, rooms=3)
    with pytest.raises(DataError, match=r"close must be in \[0, 1\], got 1.5"):
        SyntheticRooms.from_spec("close=1.5")


def test_speed_at_320x240() -> None:
    source = SyntheticRooms(seed=0, frames=20)
    source[0]
    start = time.process_time()
    for i in range(1, 11):
        source[i]
    per_frame = (time.process_time() - start) / 10
    # issue 3 asks for 50 frames/s (about 100 measured idle); the test only guards against
    # a large regression, with CPU time and a wide margin so a busy shared machine passes
    assert per_frame < 1 / 20, f"{1 / per_frame:.1f} frames/s"
