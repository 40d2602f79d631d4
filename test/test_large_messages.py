"""Tests of the large-message settings: the Fast DDS profile and the malloc thresholds.

The cross-process test sends camera-sized images best effort from a child process, as
a camera driver would, and counts what arrives here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest
from ros_helpers import MessageCollector, isolated_ros

from depth_estimator_ros.ros.large_messages import (
    FASTDDS_PROFILE,
    LOSSY_LINK_PROFILE,
    PROFILE_VARIABLES,
    configure_large_messages,
)

NS = {"p": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}


def test_profile_is_a_default_participant_profile_with_a_large_shared_memory_segment() -> None:
    root = ET.parse(FASTDDS_PROFILE).getroot()
    transports = {
        d.findtext("p:transport_id", namespaces=NS): d for d in root.iterfind("p:transport_descriptors/p:transport_descriptor", NS)
    }
    shm = [d for d in transports.values() if d.findtext("p:type", namespaces=NS) == "SHM"]
    assert len(shm) == 1 and int(shm[0].findtext("p:segment_size", namespaces=NS)) >= 4 * 640 * 480 * 4  # a few 32FC1 VGA depth images
    assert any(d.findtext("p:type", namespaces=NS) == "UDPv4" for d in transports.values()), "other hosts need UDP"
    participant = root.find("p:participant", NS)
    assert participant.get("is_default_profile") == "true"
    used = [e.text for e in participant.iterfind("p:rtps/p:userTransports/p:transport_id", NS)]
    assert sorted(used) == sorted(transports)


def test_lossy_link_profile_sends_udp_datagrams_within_an_ethernet_frame_and_no_shared_memory() -> None:
    root = ET.parse(LOSSY_LINK_PROFILE).getroot()
    transports = list(root.iterfind("p:transport_descriptors/p:transport_descriptor", NS))
    assert [d.findtext("p:type", namespaces=NS) for d in transports] == ["UDPv4"]
    # 1500 - 20 (IP) - 8 (UDP): a lost frame costs one DDS fragment, not a 64 KiB datagram
    assert int(transports[0].findtext("p:maxMessageSize", namespaces=NS)) <= 1472
    participant = root.find("p:participant", NS)
    assert participant.get("is_default_profile") == "true"
    assert participant.findtext("p:rtps/p:useBuiltinTransports", namespaces=NS) == "false"
    used = [e.text for e in participant.iterfind("p:rtps/p:userTransports/p:transport_id", NS)]
    assert used == [transports[0].findtext("p:transport_id", namespaces=NS)]


def test_profile_is_set_only_where_the_user_has_none_and_fast_dds_is_the_rmw() -> None:
    env: dict[str, str] = {}
    done = configure_large_messages(env)
    assert all(env[name] == str(FASTDDS_PROFILE) for name in PROFILE_VARIABLES)
    assert done["fastdds_profile"] == str(FASTDDS_PROFILE)

    mine = {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/my_profile.xml"}
    assert "the user's FASTDDS_DEFAULT_PROFILES_FILE" in configure_large_messages(mine)["fastdds_profile"]
    assert mine == {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/my_profile.xml"}

    cyclone = {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}
    assert "rmw_cyclonedds_cpp" in configure_large_messages(cyclone)["fastdds_profile"]
    assert cyclone == {"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's")
def test_malloc_thresholds_are_applied_on_linux() -> None:
    assert configure_large_messages({})["malloc"] == "tuned"


PUBLISHER = textwrap.dedent(
    """
    import sys, time
    import numpy as np, rclpy
    from depth_estimator_ros.ros.large_messages import configure_large_messages
    from depth_estimator_ros.ros.qos import SENSOR_QOS
    from sensor_msgs.msg import Image
    configure_large_messages()
    rclpy.init()
    node = rclpy.create_node("large_image_camera")
    pub = node.create_publisher(Image, "large_image", SENSOR_QOS)
    msg = Image(height=480, width=640, encoding="rgb8", step=640 * 3)
    msg.data = np.random.default_rng(0).integers(0, 256, 480 * 640 * 3, dtype=np.uint8).tobytes()
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # let discovery settle on both sides
    for i in range(int(sys.argv[1])):
        msg.header.frame_id = str(i)
        pub.publish(msg)
        time.sleep(0.1)
    time.sleep(1.0)
    node.destroy_node()
    rclpy.shutdown()
    """
)


def test_camera_sized_images_arrive_best_effort_across_processes() -> None:
    """640x480 rgb8, best effort, keep-last 1, 10 Hz: without the profile ~1 in 4 arrived."""
    from sensor_msgs.msg import Image

    from depth_estimator_ros.ros.qos import SENSOR_QOS

    sent = 40
    with isolated_ros() as ros:
        node = ros.create_node("large_image_listener")
        collector = MessageCollector(node, Image, "large_image", SENSOR_QOS)
        camera = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(sent)], stderr=subprocess.PIPE, text=True)
        try:
            _, err = camera.communicate(timeout=120)
        finally:
            camera.kill()
        assert camera.returncode == 0, err
        # 90 %: best effort may lose a frame on a loaded machine, not three in four.
        messages = collector.wait_for_count(int(sent * 0.9), timeout=5.0)
        assert len({msg.header.frame_id for msg in messages}) == len(messages)
        assert all(len(msg.data) == 480 * 640 * 3 for msg in messages)
