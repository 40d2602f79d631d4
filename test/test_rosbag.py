"""Tests for rosbag2 writing and reading with rosbags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore
from ruamel.yaml import YAML

from depth_estimator_ros.data.base import DataError
from depth_estimator_ros.data.rosbag import BagSource, bag_folder, iter_raw_messages, write_bag
from depth_estimator_ros.data.synthetic import SyntheticRooms

START = 1_700_000_000.0


@pytest.fixture(scope="module")
def frames() -> list:
    return list(SyntheticRooms(seed=4, frames=5, width=48, height=36))


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_round_trip(tmp_path: Path, frames: list, storage: str, encoding: str) -> None:
    bag = tmp_path / "bag"
    assert write_bag(bag, frames, storage=storage, depth_encoding=encoding, start_time=START) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]  # staging folder gone
    source = BagSource(bag)
    assert len(source) == 5 and source.unmatched == 0
    assert source.intrinsics == frames[0].intrinsics
    for original, frame in zip(frames, source):
        np.testing.assert_array_equal(frame.rgb, original.rgb)
        np.testing.assert_array_equal(np.isnan(frame.depth), np.isnan(original.depth))
        error = np.nanmax(np.abs(frame.depth - original.depth))
        assert error <= (0.0005 + 1e-6 if encoding == "16UC1" else 0.0)
    assert [f.stamp for f in source] == pytest.approx([START + i / 30 for i in range(5)])


def test_raw_messages_deserialize_with_realistic_stamps(tmp_path: Path, frames: list) -> None:
    write_bag(tmp_path / "bag", frames[:2], storage="mcap", start_time=START, depth_stamp_offset=0.005)
    messages = list(iter_raw_messages(tmp_path / "bag"))
    assert [m[0] for m in messages[:3]] == ["/camera/rgb/image_color", "/camera/rgb/camera_info", "/camera/depth_registered/image_raw"]
    assert len(messages) == 6
    times = [m[2] for m in messages]
    assert times == sorted(times)
    typestore = get_typestore(Stores.ROS2_JAZZY)
    rgb = typestore.deserialize_cdr(messages[0][3], messages[0][1])
    info = typestore.deserialize_cdr(messages[1][3], messages[1][1])
    depth = typestore.deserialize_cdr(messages[2][3], messages[2][1])
    assert (rgb.encoding, rgb.width, rgb.height, rgb.step) == ("rgb8", 48, 36, 144)
    assert depth.encoding == "16UC1" and depth.header.frame_id == "camera_depth_optical_frame"
    rgb_t = rgb.header.stamp.sec + rgb.header.stamp.nanosec * 1e-9
    depth_t = depth.header.stamp.sec + depth.header.stamp.nanosec * 1e-9
    assert depth_t - rgb_t == pytest.approx(0.005, abs=1e-6)
    assert info.k[0] == pytest.approx(frames[0].intrinsics.fx) and info.distortion_model == "plumb_bob"
    only_depth = list(iter_raw_messages(tmp_path / "bag", topics=["/camera/depth_registered/image_raw"]))
    assert len(only_depth) == 2


@pytest.mark.parametrize("container", ["png", "jpeg"])
def test_compressed_colour_goes_to_the_compressed_topic_as_image_transport_publishes_it(
    tmp_path: Path, frames: list, container: str
) -> None:
    from depth_estimator_ros.data.compressed import decode_compressed_rgb

    write_bag(tmp_path / "bag", frames[:2], start_time=START, rgb_compression=container)
    messages = list(iter_raw_messages(tmp_path / "bag"))
    topics = {(m[0], m[1]) for m in messages}
    assert ("/camera/rgb/image_color/compressed", "sensor_msgs/msg/CompressedImage") in topics
    assert "/camera/rgb/image_color" not in {topic for topic, _ in topics}
    typestore = get_typestore(Stores.ROS2_JAZZY)
    colour = [typestore.deserialize_cdr(m[3], m[1]) for m in messages if m[0].endswith("/compressed")]
    assert [c.format for c in colour] == [f"rgb8; {container} compressed bgr8"] * 2
    assert colour[0].header.stamp.sec == int(START) and colour[0].header.frame_id == "camera_rgb_optical_frame"
    decoded = decode_compressed_rgb(colour[1].format, colour[1].data.tobytes())
    if container == "png":
        np.testing.assert_array_equal(decoded, frames[1].rgb)
    else:
        assert decoded.shape == frames[1].rgb.shape
    with pytest.raises(ValueError, match="rgb_compression must be None or one of jpeg, png"):
        write_bag(tmp_path / "x", frames, rgb_compression="theora")


def test_metadata_offers_qos_for_ros2_bag_play(tmp_path: Path, frames: list) -> None:
    write_bag(tmp_path / "bag", frames[:1], start_time=START)
    info = YAML(typ="safe").load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["version"] == 8 and info["storage_identifier"] == "sqlite3" and info["message_count"] == 3
    topics = {t["topic_metadata"]["name"]: t["topic_metadata"] for t in info["topics_with_message_count"]}
    assert topics["/camera/rgb/camera_info"]["type"] == "sensor_msgs/msg/CameraInfo"
    for meta in topics.values():
        (qos,) = YAML(typ="safe").load(meta["offered_qos_profiles"])
        # rmw enums: keep-last 1, reliable 1, volatile 2
        assert (qos["history"], qos["depth"], qos["reliability"], qos["durability"]) == (1, 10, 1, 2)
        assert meta["type_description_hash"].startswith("RIHS01_")


def test_frame_stamps_kept_when_rate_is_none(tmp_path: Path, frames: list) -> None:
    write_bag(tmp_path / "bag", frames[:3], rate_hz=None, start_time=START)
    stamps = [f.stamp for f in BagSource(tmp_path / "bag")]
    assert stamps == pytest.approx([START + f.stamp for f in frames[:3]])


def test_unmatched_colour_is_counted(tmp_path: Path, frames: list) -> None:
    # depth 50 ms late: colour 0 finds nothing within 20 ms, colour 1 (33 ms) takes depth 0 (50 ms)
    write_bag(tmp_path / "bag", frames[:2], start_time=START, depth_stamp_offset=0.05)
    source = BagSource(tmp_path / "bag")
    assert (len(source), source.unmatched) == (1, 1)
    assert source[0].stamp == pytest.approx(START + 1 / 30)
    write_bag(tmp_path / "single", frames[:1], start_time=START, depth_stamp_offset=0.05)
    with pytest.raises(DataError, match="no /camera/rgb/image_color image has a /camera/depth_registered/image_raw image within 0.02 s"):
        BagSource(tmp_path / "single")
    assert len(BagSource(tmp_path / "single", max_dt=0.06)) == 1


def test_write_refusals(tmp_path: Path, frames: list) -> None:
    write_bag(tmp_path / "bag", frames[:1], start_time=START)
    with pytest.raises(FileExistsError, match="exists already"):
        write_bag(tmp_path / "bag", frames[:1])
    assert write_bag(tmp_path / "bag", frames[:2], overwrite=True, start_time=START) == 2
    assert len(BagSource(tmp_path / "bag")) == 2
    with pytest.raises(DataError, match="no frames to write"):
        write_bag(tmp_path / "empty", [])
    assert not (tmp_path / "empty").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]
    with pytest.raises(ValueError, match="expected one of sqlite3, mcap"):
        write_bag(tmp_path / "x", frames, storage="bag1")
    with pytest.raises(ValueError, match="expected 16UC1 or 32FC1"):
        write_bag(tmp_path / "x", frames, depth_encoding="mono8")


def test_read_refusals(tmp_path: Path, frames: list) -> None:
    with pytest.raises(DataError, match="not a rosbag2 folder"):
        bag_folder(tmp_path)
    with pytest.raises(DataError, match="no such file or folder"):
        list(iter_raw_messages(tmp_path / "missing"))
    write_bag(tmp_path / "bag", frames[:1], storage="mcap", start_time=START)
    assert bag_folder(tmp_path / "bag" / "bag.mcap") == tmp_path / "bag"
    with pytest.raises(DataError, match="no topic /nope; the bag has"):
        list(iter_raw_messages(tmp_path / "bag", topics=["/nope"]))
    with pytest.raises(DataError, match="no sensor_msgs/msg/Image topic /nope"):
        BagSource(tmp_path / "bag", rgb_topic="/nope")
    renamed = tmp_path / "renamed"
    write_bag(renamed, frames[:1], rgb_topic="/cam/color", depth_topic="/cam/depth", start_time=START)
    source = BagSource(renamed)  # topics found by their encodings
    assert (source.rgb_topic, source.depth_topic) == ("/cam/color", "/cam/depth")
