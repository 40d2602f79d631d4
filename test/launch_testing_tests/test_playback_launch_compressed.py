"""launch_testing: playback.launch.py rgb_transport:=compressed (mode:=separate) plays a JPEG bag; depth comes out.

The bag holds the colour as image_transport's compressed plugin publishes it (JPEG on
``<colour topic>/compressed``, nothing on the raw topic), so depth can only come from the
compressed subscription the launch argument selects, in both node processes.

Runs on a ROS 2 distro (``colcon test`` or ``launch_test``); skipped where
launch_testing is not installed (pip mode), where test_launch_files.py (the launch
argument into real nodes), the node tests and test_e2e_bag.py cover the same behaviour.
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
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from depth_estimator_ros.data import iter_raw_messages  # noqa: E402

FRAMES = 6  # 64x48 synthetic frames at 10 Hz
DEPTH_TIMEOUT_S = 120.0  # model construction on a small CI machine, then the frames
COMPRESSED_TOPIC = KINECT_TOPICS["image"] + "/compressed"


@pytest.mark.launch_test
def generate_test_description():
    """Play a tiny JPEG bag, looped, into the two-process pipeline with compressed colour input."""
    bag = Path(tempfile.mkdtemp(prefix="playback_compressed_")) / "bag"
    write_synthetic_bag(bag, frames=FRAMES, rgb_compression="jpeg")
    playback = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            os.path.join(get_package_share_directory("depth_estimator_ros"), "launch", "playback.launch.py")
        ),
        launch_arguments={
            "bag": str(bag),
            "loop": "true",
            "rate": "2.0",
            "delay": "5.0",
            "mode": "separate",
            "device": "cpu",
            "adapt": "false",
            "rgb_transport": "compressed",
            "rviz": "false",
        }.items(),
    )
    return LaunchDescription([playback, launch_testing.actions.ReadyToTest()]), {"bag": bag}


class TestCompressedPlayback(unittest.TestCase):
    """While the launch runs."""

    def test_depth_follows_the_jpeg_bag(self, bag):
        topics = {topic for topic, *_ in iter_raw_messages(bag)}
        self.assertIn(COMPRESSED_TOPIC, topics)
        self.assertNotIn(KINECT_TOPICS["image"], topics)
        rgb = {
            (m.header.stamp.sec, m.header.stamp.nanosec)
            for m in (deserialize_message(raw, CompressedImage) for *_, raw in iter_raw_messages(
                bag, topics=[COMPRESSED_TOPIC]))
        }
        ros = RosTestContext()
        try:
            node = ros.create_node("playback_compressed_probe")
            depth = MessageCollector(node, Image, "/depth/image")
            messages = depth.wait_for_count(3, DEPTH_TIMEOUT_S)
        finally:
            ros.shutdown()
        for msg in messages:
            self.assertEqual((msg.encoding, msg.width, msg.height), ("32FC1", 64, 48))
            self.assertIn((msg.header.stamp.sec, msg.header.stamp.nanosec), rgb)

    def test_rgb_transport_reaches_both_node_processes(self):
        ros = RosTestContext()
        try:
            node = ros.create_node("playback_compressed_param_probe")
            for target in ("/online_trainer", "/depth_estimator"):
                self.assertEqual(remote_parameter(node, target, "rgb_transport", DEPTH_TIMEOUT_S), "compressed")
        finally:
            ros.shutdown()


@launch_testing.post_shutdown_test()
class TestCleanExit(unittest.TestCase):
    """After the launch is shut down (SIGINT to every process)."""

    def test_nodes_exit_cleanly(self, proc_info):
        nodes = [p for p in proc_info.processes() if not p.process_details["name"].startswith("bag_play")]
        self.assertEqual(len(nodes), 2)  # depth_estimator and online_trainer
        for process in nodes:
            launch_testing.asserts.assertExitCodes(proc_info, process=process)
