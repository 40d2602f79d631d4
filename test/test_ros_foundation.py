"""Real rclpy across processes: images over DDS, live parameters, clean shutdown.

The test process runs a ``probe`` node in an isolated context; a child process
runs an ``echo`` node that decodes every image it receives with the package's
codec, re-encodes it and publishes it back, and republishes its ``gain``
parameter (declared with a range) on a timer.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from ros_helpers import MessageCollector, NodeProcess, isolated_ros, wait_for
from sensor_msgs.msg import Image
from std_msgs.msg import Float64, Header

from depth_estimator_ros.ros.codec import depth_to_image, image_to_depth, image_to_rgb, rgb_to_image

ECHO_NODE = r'''
import rclpy
from rcl_interfaces.msg import FloatingPointRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import Image
from std_msgs.msg import Float64

from depth_estimator_ros.ros.codec import depth_to_image, image_to_depth, image_to_rgb, rgb_to_image


class Echo(Node):
    def __init__(self):
        super().__init__("echo")
        self.declare_parameter(
            "gain",
            1.0,
            ParameterDescriptor(
                description="test gain",
                floating_point_range=[FloatingPointRange(from_value=0.0, to_value=10.0, step=0.0)],
            ),
        )
        self.rgb_pub = self.create_publisher(Image, "echo/rgb", 10)
        self.depth_pub = self.create_publisher(Image, "echo/depth", 10)
        self.gain_pub = self.create_publisher(Float64, "gain", 10)
        self.create_subscription(Image, "probe/rgb", self.on_rgb, 10)
        self.create_subscription(Image, "probe/depth", self.on_depth, 10)
        self.create_timer(0.05, self.on_timer)

    def on_rgb(self, msg):
        self.rgb_pub.publish(rgb_to_image(image_to_rgb(msg), msg.header))

    def on_depth(self, msg):
        self.depth_pub.publish(depth_to_image(image_to_depth(msg), msg.header))

    def on_timer(self):
        self.gain_pub.publish(Float64(data=self.get_parameter("gain").value))


def main():
    rclpy.init()
    node = Echo()
    print("READY", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


main()
'''

STARTUP_S = 30.0  # interpreter + rclpy import on a loaded 2-core machine
DISCOVERY_S = 20.0
MESSAGE_S = 10.0


@pytest.fixture
def echo_session():
    """Yield ``(probe_node, echo_process)``; the echo child is killed if a test fails early."""
    with isolated_ros() as ros:
        probe = ros.create_node("probe")
        with NodeProcess.python(ECHO_NODE) as echo:
            echo.wait_for_output("READY", timeout=STARTUP_S)
            yield probe, echo


def test_images_cross_processes_unchanged(echo_session):
    probe, echo = echo_session
    rgb_pub = probe.create_publisher(Image, "probe/rgb", 10)
    depth_pub = probe.create_publisher(Image, "probe/depth", 10)
    rgb_back = MessageCollector(probe, Image, "echo/rgb")
    depth_back = MessageCollector(probe, Image, "echo/depth")
    wait_for(
        lambda: rgb_pub.get_subscription_count() >= 1
        and depth_pub.get_subscription_count() >= 1
        and probe.count_publishers("echo/rgb") >= 1
        and probe.count_publishers("echo/depth") >= 1,
        DISCOVERY_S,
        what="probe and echo to discover each other",
    )
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    depth = rng.uniform(0.3, 9.5, size=(480, 640)).astype(np.float32)
    depth[rng.random((480, 640)) < 0.1] = np.nan
    header = Header(stamp=Time(sec=1234, nanosec=567_000_000), frame_id="camera_rgb_optical_frame")

    rgb_pub.publish(rgb_to_image(rgb, header))
    depth_pub.publish(depth_to_image(depth, header))

    (rgb_msg,) = rgb_back.wait_for_count(1, MESSAGE_S)
    (depth_msg,) = depth_back.wait_for_count(1, MESSAGE_S)
    for msg in (rgb_msg, depth_msg):
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (1234, 567_000_000)
        assert msg.header.frame_id == "camera_rgb_optical_frame"
        assert (msg.height, msg.width) == (480, 640)
    assert (rgb_msg.encoding, depth_msg.encoding) == ("rgb8", "32FC1")
    np.testing.assert_array_equal(image_to_rgb(rgb_msg), rgb)
    np.testing.assert_array_equal(image_to_depth(depth_msg), depth)  # NaN positions equal too


def _set(client: AsyncParameterClient, value: float):
    future = client.set_parameters([Parameter("gain", value=value)])
    wait_for(future.done, MESSAGE_S, what=f"set_parameters(gain={value}) to answer")
    (result,) = future.result().results
    return result


def test_parameter_changed_at_runtime_and_range_enforced(echo_session):
    probe, echo = echo_session
    gains = MessageCollector(probe, Float64, "gain")
    client = AsyncParameterClient(probe, "echo")
    assert client.wait_for_services(timeout_sec=DISCOVERY_S), "echo's parameter services not discovered"
    gains.wait_for_count(1, DISCOVERY_S)
    assert gains.messages[0].data == 1.0

    result = _set(client, 2.5)
    assert result.successful, result.reason
    wait_for(lambda: gains.messages[-1].data == 2.5, MESSAGE_S, what="echo to republish gain 2.5")

    refused = _set(client, 42.0)
    assert not refused.successful
    assert "gain" in refused.reason and "range" in refused.reason, refused.reason
    seen = len(gains)
    wait_for(lambda: len(gains) >= seen + 3, MESSAGE_S, what="three more gain messages")
    assert {m.data for m in gains.messages[seen:]} == {2.5}


def test_sigint_stops_child_cleanly_and_no_thread_leaks():
    baseline = set(threading.enumerate())
    with isolated_ros() as ros:
        probe = ros.create_node("probe")
        with NodeProcess.python(ECHO_NODE) as echo:
            echo.wait_for_output("READY", timeout=STARTUP_S)
            MessageCollector(probe, Float64, "gain").wait_for_count(1, DISCOVERY_S)
            assert echo.stop(timeout=2.0) == 0
            assert "Traceback" not in echo.stderr, echo.stderr
        assert ros.context.ok()
    assert not ros.context.ok()
    assert set(threading.enumerate()) == baseline


def test_a_private_context_talks_within_itself_and_hears_nothing_else_in_the_domain():
    with isolated_ros() as shared, isolated_ros(private=True) as private:
        inside_pub = private.create_node("inside_pub").create_publisher(Float64, "chat", 10)
        inside = MessageCollector(private.create_node("inside_sub"), Float64, "chat")
        outside_pub = shared.create_node("outside_pub").create_publisher(Float64, "chat", 10)
        outside = MessageCollector(shared.create_node("outside_sub"), Float64, "chat")
        wait_for(lambda: outside_pub.get_subscription_count() >= 1 and inside_pub.get_subscription_count() >= 1,
                 10.0, what="each publisher to match its own context's subscriber")
        for value in range(5):  # one at a time: each reaches its own context's subscriber
            inside_pub.publish(Float64(data=float(value)))
            outside_pub.publish(Float64(data=-1.0 - value))
            inside.wait_for_count(value + 1, 10.0)
            outside.wait_for_count(value + 1, 10.0)
        # each publisher matched only the subscriber of its own context
        assert inside_pub.get_subscription_count() == 1 and outside_pub.get_subscription_count() == 1
    assert all(m.data >= 0 for m in inside.messages) and all(m.data < 0 for m in outside.messages)


_RAISING_NODE = '''
import sys
from rclpy.node import Node
from depth_estimator_ros.ros.runner import spin_nodes

class Raising(Node):
    def __init__(self):
        super().__init__("raising")
        self.declare_parameter("torch_threads", 1)
        self.ticks = 0
        self.create_timer(0.05, self.tick)

    def tick(self):
        self.ticks += 1
        if self.ticks <= 3:
            raise ValueError(f"bug in a callback, tick {self.ticks}")
        if self.ticks == 6:
            print("STILL SPINNING", flush=True)

def build():
    if "--bad-parameters" in sys.argv:
        raise ValueError("checkpoint 'x' does not exist")
    return [Raising()]

spin_nodes(build, "raising", sys.argv)
'''


def test_an_exception_escaping_a_callback_is_logged_and_the_nodes_keep_spinning() -> None:
    # Before: spin_nodes' `except ValueError` around the spin loop turned a ValueError from
    # any callback at run time into "unusable parameters" and exit 1.
    with NodeProcess.python(_RAISING_NODE, env={"RCUTILS_LOGGING_USE_STDOUT": "1"}) as child:
        child.wait_for_output("STILL SPINNING", timeout=60.0)
        assert child.stop(timeout=5.0) == 0
        out = child.stdout + child.stderr
    assert "a callback raised (a bug; the nodes keep running; 1 so far" in out
    assert "ValueError: bug in a callback, tick 1" in out  # with its traceback
    assert "tick 2" not in out  # throttled: one log line per period, counted
    # unusable parameters while building the nodes still end the process with the reason
    with NodeProcess.python(_RAISING_NODE, "--bad-parameters", env={"RCUTILS_LOGGING_USE_STDOUT": "1"}) as child:
        code = child.popen.wait(timeout=60.0)
        out = child.stdout + child.stderr
    assert code == 1 and "checkpoint 'x' does not exist" in out and "Traceback" not in out
