"""launch_testing: live.launch.py (mode:=separate, adapt:=false) fed by ``ros2 bag play`` publishes depth.

Runs on a ROS 2 distro (``colcon test`` or ``launch_test``); skipped where
launch_testing is not installed (pip mode), where the same behaviour is covered
by the pytest node and playback tests.
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
from launch.actions import ExecuteProcess, IncludeLaunchDescription  # noqa: E402
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
    """Start the pipeline in separate processes and play a tiny synthetic bag into it."""
    bag = Path(tempfile.mkdtemp(prefix="live_launch_")) / "bag"
    write_synthetic_bag(bag, frames=FRAMES)
    live = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            os.path.join(get_package_share_directory("depth_estimator_ros"), "launch", "live.launch.py")
        ),
        launch_arguments={"mode": "separate", "device": "cpu", "adapt": "false", "rviz": "false"}.items(),
    )
    # Looped, so frames keep coming however long the nodes take to build their models.
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", str(bag), "--loop", "--delay", "5"], name="bag_play", output="screen"
    )
    return LaunchDescription([live, play, launch_testing.actions.ReadyToTest()]), {"bag_play": play, "bag": bag}


def rgb_stamps(bag: Path) -> set[tuple[int, int]]:
    """Header stamps of the bag's colour images."""
    messages = (deserialize_message(raw, Image) for *_, raw in iter_raw_messages(bag, topics=[KINECT_TOPICS["image"]]))
    return {(m.header.stamp.sec, m.header.stamp.nanosec) for m in messages}


class TestDepthArrives(unittest.TestCase):
    """While the launch runs."""

    def test_depth_messages_arrive_with_bag_stamps(self, bag):
        ros = RosTestContext()
        try:
            node = ros.create_node("live_launch_probe")
            depth = MessageCollector(node, Image, "/depth/image")
            messages = depth.wait_for_count(1, DEPTH_TIMEOUT_S)
        finally:
            ros.shutdown()
        msg = messages[0]
        self.assertEqual((msg.encoding, msg.width, msg.height), ("32FC1", 64, 48))
        self.assertIn((msg.header.stamp.sec, msg.header.stamp.nanosec), rgb_stamps(bag))

    def test_adapt_false_starts_the_trainer_with_adaptation_off(self):
        ros = RosTestContext()
        try:
            node = ros.create_node("live_launch_param_probe")
            # the node, not just the parameter: its start-up values are what adapt:= must reach
            for target in ("/online_trainer", "/depth_estimator"):
                self.assertEqual(remote_parameter(node, target, "device", DEPTH_TIMEOUT_S), "cpu")
            self.assertIs(remote_parameter(node, "/online_trainer", "adaptation_enabled", DEPTH_TIMEOUT_S), False)
        finally:
            ros.shutdown()


@launch_testing.post_shutdown_test()
class TestCleanExit(unittest.TestCase):
    """After the launch is shut down (SIGINT to every process)."""

    def test_nodes_exit_cleanly(self, proc_info, bag_play):
        nodes = [process for process in proc_info.processes() if process is not bag_play]
        self.assertEqual(len(nodes), 2)  # depth_estimator and online_trainer
        for process in nodes:
            launch_testing.asserts.assertExitCodes(proc_info, process=process)


