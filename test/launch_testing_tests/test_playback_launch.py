"""launch_testing: playback.launch.py (single ``live`` process, adapt:=false) plays a bag and depth comes out.

Runs on a ROS 2 distro (``colcon test`` or ``launch_test``); skipped where
launch_testing is not installed (pip mode), where test_bag_player.py and the
pytest end-to-end playback tests cover the same behaviour.
"""

from __future__ import annotations

import os
import sys
import tempfile
import unittest
from pathlib import Path

import pytest

# `launch_test <this file>` imports it without pytest's rootdir and conftest handling:
# put test/ (ros_helpers) on the path here, so both runners find the helpers.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

pytest.importorskip("launch_testing", reason="launch_testing is not installed (pip mode; it comes with a ROS 2 distro)")

import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch import LaunchDescription  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from ros_helpers import (  # noqa: E402
    KINECT_TOPICS,
    MessageCollector,
    RosTestContext,
    remote_parameter,
    write_synthetic_bag,
)
from sensor_msgs.msg import Image  # noqa: E402

from depth_estimator_ros.data import iter_raw_messages  # noqa: E402

FRAMES = 6  # 64x48 synthetic frames at 10 Hz
DEPTH_TIMEOUT_S = 120.0  # model construction on a small CI machine, then the frames


@pytest.mark.launch_test
def generate_test_description():
    """Play a tiny synthetic bag, looped, into the single-process pipeline."""
    bag = Path(tempfile.mkdtemp(prefix="playback_launch_")) / "bag"
    write_synthetic_bag(bag, frames=FRAMES)
    playback = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            os.path.join(get_package_share_directory("depth_estimator_ros"), "launch", "playback.launch.py")
        ),
        launch_arguments={
            "bag": str(bag),
            "loop": "true",
            "rate": "2.0",
            "delay": "5.0",
            "mode": "single",
            "device": "cpu",
            "adapt": "false",
            "rviz": "false",
        }.items(),
    )
    return LaunchDescription([playback, launch_testing.actions.ReadyToTest()]), {"bag": bag}


class TestPlayback(unittest.TestCase):
    """While the launch runs."""

    def test_depth_follows_the_bag(self, bag):
        rgb = {
            (m.header.stamp.sec, m.header.stamp.nanosec)
            for m in (
                deserialize_message(raw, Image) for *_, raw in iter_raw_messages(bag, topics=[KINECT_TOPICS["image"]])
            )
        }
        ros = RosTestContext()
        try:
            node = ros.create_node("playback_launch_probe")
            depth = MessageCollector(node, Image, "/depth/image")
            messages = depth.wait_for_count(3, DEPTH_TIMEOUT_S)
        finally:
            ros.shutdown()
        for msg in messages:
            self.assertEqual((msg.encoding, msg.width, msg.height), ("32FC1", 64, 48))
            self.assertIn((msg.header.stamp.sec, msg.header.stamp.nanosec), rgb)

    def test_adapt_false_starts_the_trainer_with_adaptation_off(self):
        ros = RosTestContext()
        try:
            node = ros.create_node("playback_launch_param_probe")
            for target in ("/online_trainer", "/depth_estimator"):  # both in the one `live` process
                self.assertEqual(remote_parameter(node, target, "device", DEPTH_TIMEOUT_S), "cpu")
            self.assertIs(remote_parameter(node, "/online_trainer", "adaptation_enabled", DEPTH_TIMEOUT_S), False)
        finally:
            ros.shutdown()


@launch_testing.post_shutdown_test()
class TestCleanExit(unittest.TestCase):
    """After the launch is shut down (SIGINT to every process)."""

    def test_live_process_exits_cleanly(self, proc_info):
        # ros2 bag play (named bag_play in playback.launch.py) is stopped mid-loop; the pipeline must exit 0.
        live = [p for p in proc_info.processes() if not p.process_details["name"].startswith("bag_play")]
        self.assertEqual(len(live), 1)  # the single `live` process
        for process in live:
            launch_testing.asserts.assertExitCodes(proc_info, process=process)
