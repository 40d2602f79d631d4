"""ros/bag_player.py: a rosbag2 played with its recorded timing, in-process and as ``play_bag``."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from ros_helpers import KINECT_TOPICS, MessageCollector, NodeProcess, isolated_ros, write_synthetic_bag
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from depth_estimator_ros.data import iter_raw_messages
from depth_estimator_ros.ros.bag_player import BagPlayer, main, message_class, parse_args

FRAMES = 6
RATE_HZ = 10.0  # recorded frame rate of the test bag: 0.1 s between colour frames
STARTUP_S = 30.0
DISCOVERY_S = 20.0
PLAYER = [sys.executable, "-u", "-m", "depth_estimator_ros.ros.bag_player"]


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return write_synthetic_bag(tmp_path_factory.mktemp("bag") / "kinect", frames=FRAMES, rate_hz=RATE_HZ)


def _recorded(bag, topic: str, cls: type) -> list:
    return [deserialize_message(raw, cls) for t, _, _, raw in iter_raw_messages(bag, topics=[topic])]


def _stamps(messages: list) -> list[tuple[int, int]]:
    return [(m.header.stamp.sec, m.header.stamp.nanosec) for m in messages]


def _rosidl_runtime_py_imports() -> bool:
    try:
        import rosidl_runtime_py.utilities  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize(
    "lookup",
    [
        pytest.param("rosidl_runtime_py", marks=pytest.mark.skipif(
            not _rosidl_runtime_py_imports(), reason="rosidl_runtime_py not installed (pip mode; a distro has it)")),
        "import",
    ],
)
def test_message_class_resolves_installed_types_and_names_bad_ones(lookup, monkeypatch):
    if lookup == "import":  # the pip-mode route: as if rosidl_runtime_py were not installed
        monkeypatch.setitem(sys.modules, "rosidl_runtime_py.utilities", None)
    assert message_class("sensor_msgs/msg/Image") is Image
    with pytest.raises(ValueError, match="package/msg/Name"):
        message_class("sensor_msgs/Image")
    with pytest.raises(ValueError, match="not installed"):
        message_class("no_such_msgs/msg/Thing")


@pytest.mark.parametrize(
    "argv",
    [["bag", "--rate", "0"], ["bag", "--start-offset", "-1"], ["bag", "--remap", "/a"], ["bag", "--remap", ":=/b"]],
)
def test_bad_arguments_exit_with_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert "play_bag: error" in capsys.readouterr().err


def test_missing_bag_is_an_error_exit_not_a_traceback(tmp_path):
    assert main([str(tmp_path / "missing")]) == 1


def test_player_publishes_every_message_in_order_and_skips_unknown_types(bag):
    recorded = list(iter_raw_messages(bag))
    unknown = ("/other", "no_such_msgs/msg/Thing", recorded[0][2], serialize_message(String(data="x")))
    with isolated_ros() as ros:
        probe = ros.create_node("probe")
        collectors = {
            topic: MessageCollector(probe, cls, KINECT_TOPICS[topic])
            for topic, cls in (("image", Image), ("depth", Image), ("camera_info", CameraInfo))
        }
        player = BagPlayer(ros.create_node("player"), rate=4.0, wait_for_subscribers=DISCOVERY_S)
        assert player.play([unknown, *recorded])
        assert (player.published, player.skipped) == (3 * FRAMES, 1)
        for topic, collector in collectors.items():
            cls = CameraInfo if topic == "camera_info" else Image
            received = collector.wait_for_count(FRAMES, 10.0)
            assert _stamps(received) == _stamps(_recorded(bag, KINECT_TOPICS[topic], cls))
        rgb = collectors["image"].messages[2]
        assert (rgb.encoding, rgb.width, rgb.height) == ("rgb8", 64, 48)
        assert bytes(rgb.data) == bytes(_recorded(bag, KINECT_TOPICS["image"], Image)[2].data)


def test_start_offset_skips_the_first_seconds(bag):
    with isolated_ros() as ros:
        probe = ros.create_node("probe")
        rgb = MessageCollector(probe, Image, KINECT_TOPICS["image"])
        player = BagPlayer(ros.create_node("player"), rate=4.0, wait_for_subscribers=DISCOVERY_S)
        # 0.25 s into the bag: colour frames 3, 4, 5 (at 0.3, 0.4, 0.5 s) remain
        assert player.play(iter_raw_messages(bag, topics=[KINECT_TOPICS["image"]]), start_offset=0.25)
        received = rgb.wait_for_count(3, 10.0)
    assert _stamps(received) == _stamps(_recorded(bag, KINECT_TOPICS["image"], Image)[3:])


@pytest.mark.parametrize("rate", [1.0, 2.0])
def test_play_bag_process_keeps_recorded_timing(bag, rate):
    with isolated_ros() as ros:
        probe = ros.create_node("probe")
        rgb = MessageCollector(probe, Image, KINECT_TOPICS["image"])
        depth = MessageCollector(probe, Image, KINECT_TOPICS["depth"])
        argv = [*PLAYER, str(bag), "--rate", str(rate), "--wait-for-subscribers", str(DISCOVERY_S)]
        argv += ["--topics", KINECT_TOPICS["image"], KINECT_TOPICS["depth"]]
        with NodeProcess(argv) as player:
            received = rgb.wait_for_count(FRAMES, STARTUP_S + 2 * DISCOVERY_S)
            depth.wait_for_count(FRAMES, 5.0)
            assert player.popen.wait(10.0) == 0
            assert "Traceback" not in player.stderr, player.stderr
    assert _stamps(received) == _stamps(_recorded(bag, KINECT_TOPICS["image"], Image))
    assert _stamps(depth.messages) == _stamps(_recorded(bag, KINECT_TOPICS["depth"], Image))
    gaps = np.diff(rgb.arrivals)
    expected = 1.0 / RATE_HZ / rate
    # Loose bounds: a loaded 2-core machine delays single messages, not the whole schedule.
    assert expected * 0.5 < np.median(gaps) < expected * 1.6, gaps
    span = rgb.arrivals[-1] - rgb.arrivals[0]
    assert (FRAMES - 1) * expected * 0.7 < span < (FRAMES - 1) * expected * 1.6 + 0.1, span


def test_play_bag_loops_remaps_and_stops_cleanly_on_sigint(bag):
    with isolated_ros() as ros:
        probe = ros.create_node("probe")
        remapped = MessageCollector(probe, Image, "/remapped/image")
        original = MessageCollector(probe, Image, KINECT_TOPICS["image"])
        argv = [*PLAYER, str(bag), "--loop", "--rate", "4", "--topics", KINECT_TOPICS["image"]]
        argv += ["--remap", f"{KINECT_TOPICS['image']}:=/remapped/image", "--wait-for-subscribers", str(DISCOVERY_S)]
        with NodeProcess(argv) as player:
            received = remapped.wait_for_count(FRAMES + 2, STARTUP_S + DISCOVERY_S)  # into the second pass
            assert player.stop(timeout=2.0) == 0
            assert "Traceback" not in player.stderr, player.stderr
    stamps = _stamps(received)
    assert stamps[FRAMES : FRAMES + 2] == stamps[:2]  # the second pass starts over
    assert len(original) == 0
