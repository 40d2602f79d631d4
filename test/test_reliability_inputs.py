"""Reliability (issue 26, defects 2, 3, 4 and 7): camera_info, clamped depth, parameters, service bursts.

Real rclpy in isolated contexts, a deadline on every wait. docs/RELIABILITY.md maps each
case to its test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from ros_helpers import FAST_ROUNDS, MessageCollector, isolated_ros, wait_for
from ros_helpers import stamped_header as _header
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger

from depth_estimator_ros import models
from depth_estimator_ros.data.image_encoding import encode_depth, encode_rgb
from depth_estimator_ros.ros import codec
from depth_estimator_ros.ros.estimator_node import DepthEstimatorNode
from depth_estimator_ros.ros.qos import SENSOR_QOS
from depth_estimator_ros.ros.trainer_node import OnlineTrainerNode

H, W = 48, 64
TIMEOUT = 30.0
#: fx for a 64x48 image: 56 degrees horizontal field of view
GOOD_FX = 60.0


def _info(fx: float, fy: float | None = None, *, width: int = W, height: int = H,
          cx: float = (W - 1) / 2, cy: float = (H - 1) / 2) -> CameraInfo:
    fy = fx if fy is None else fy
    return CameraInfo(width=width, height=height, k=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0])


def _bad_infos() -> list[tuple[str, CameraInfo]]:
    """The camera_info messages of issue 26 (2, 3) and their neighbours: each must be refused."""
    nan_p = _info(GOOD_FX)
    nan_p.p = [math.nan] * 12
    return [
        ("fx=fy=inf", _info(math.inf)),
        ("fx=fy=1e200 (the product overflows)", _info(1e200)),
        ("fx=1e9", _info(1e9)),
        ("fx=1e-30", _info(1e-30)),
        ("fx=525 for a 1x1 image", _info(525.0, width=1, height=1, cx=0.0, cy=0.0)),
        ("negative fx", _info(-GOOD_FX)),
        ("fy 10x fx", _info(GOOD_FX, 10 * GOOD_FX)),
        ("NaN principal point", _info(GOOD_FX, cx=math.nan)),
        ("principal point outside the image", _info(GOOD_FX, cx=5.0 * W)),
        ("zero size with a focal", _info(GOOD_FX, width=0, height=0)),
        ("NaN projection matrix", nan_p),
    ]


def _pair(index: int, stamp: float) -> tuple[Image, Image]:
    rng = np.random.default_rng(index)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = (1.0 + 3.0 * rgb[..., 0] / 255.0).astype(np.float32)
    step, data = encode_rgb(rgb)
    dstep, ddata = encode_depth(depth, "16UC1")
    return (Image(header=_header(stamp), height=H, width=W, encoding="rgb8", step=step, data=data),
            Image(header=_header(stamp + 0.004), height=H, width=W, encoding="16UC1", step=dstep, data=ddata))


def _refused(node, before: int) -> bool:
    return node.stats()["dropped"].get("camera_info_invalid", 0) > before


def _publish_until(pub, msg, done, what: str) -> None:
    """Publish ``msg`` (best effort) until ``done()`` holds."""
    wait_for(lambda: pub.publish(msg) or done(), TIMEOUT, what=what, interval=0.05)


# --------------------------------------------------------------------- camera_info, trainer
def test_a_burst_of_invalid_camera_info_is_refused_and_no_training_round_fails(checkpoint):
    """Issue 26 (2): one camera_info with fx = inf poisoned the buffer and rounds failed until reset."""
    values = {"checkpoint": str(checkpoint), "device": "cpu", **FAST_ROUNDS}
    with isolated_ros() as ros:
        node = ros.add_node(OnlineTrainerNode(context=ros.context,
                                              parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))
        probe = ros.create_node("probe")
        info_pub = probe.create_publisher(CameraInfo, "camera_info", SENSOR_QOS)
        rgb_pub = probe.create_publisher(Image, "image", 10)
        depth_pub = probe.create_publisher(Image, "depth", 10)
        wait_for(lambda: info_pub.get_subscription_count() and rgb_pub.get_subscription_count()
                 and depth_pub.get_subscription_count(), TIMEOUT, what="the trainer to subscribe")
        _publish_until(info_pub, _info(GOOD_FX), lambda: node._intrinsics is not None, "the good camera_info")
        good_focal = node._intrinsics.normalized_focal

        def send(index: int) -> None:
            pairs = node.stats()["pairs"]
            rgb, depth = _pair(index, 1000.0 + 0.05 * index)
            rgb_pub.publish(rgb)
            depth_pub.publish(depth)
            wait_for(lambda: node.stats()["pairs"] > pairs, TIMEOUT, what=f"pair {index}")

        bad = _bad_infos()
        for index, (name, info) in enumerate(bad):  # a bad calibration, then frames taken under it
            refused = node.stats()["dropped"].get("camera_info_invalid", 0)
            _publish_until(info_pub, info, lambda: _refused(node, refused), f"{name} to be refused")
            send(index)
        for index in range(len(bad), len(bad) + 12):
            send(index)
        wait_for(lambda: node.stats()["rounds_run"] >= 4 and not node.stats()["round_in_progress"], TIMEOUT,
                 what="four training rounds")
        stats = node.stats()
        assert stats["rounds_failed"] == 0, stats["last_error"]
        assert stats["dropped"]["camera_info_invalid"] >= len(bad)
        assert stats["last_error"] == ""
        # every buffered frame carries the good calibration
        focals = [f.focal for f in node.engine.buffer.sample(100, np.random.default_rng(0))]
        assert focals and focals == pytest.approx([good_focal] * len(focals))


# ------------------------------------------------------------------- camera_info, estimator
def test_estimator_keeps_the_last_good_camera_info_and_never_publishes_clamped_depth(checkpoint):
    """Issue 26 (2, 3): fx = inf dropped every frame; fx = 1e9 published every pixel as valid 10.0 m."""
    values = {"checkpoint": str(checkpoint), "device": "cpu"}
    with isolated_ros() as ros:
        node = ros.add_node(DepthEstimatorNode(context=ros.context,
                                               parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))
        probe = ros.create_node("probe")
        info_pub = probe.create_publisher(CameraInfo, "camera_info", SENSOR_QOS)
        pub = probe.create_publisher(Image, "image", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        infos = MessageCollector(probe, CameraInfo, "depth/camera_info")
        wait_for(lambda: info_pub.get_subscription_count() and pub.get_subscription_count(), TIMEOUT,
                 what="the estimator to subscribe")
        stamp = [10.0]

        def answer() -> tuple[np.ndarray, CameraInfo]:
            before = len(depth)
            stamp[0] += 0.1
            pub.publish(_pair(7, stamp[0])[0])
            out = depth.wait_for_count(before + 1, TIMEOUT)[before]
            wait_for(lambda: any(m.header == out.header for m in infos.messages), TIMEOUT, what="depth/camera_info")
            return codec.image_to_depth(out), next(m for m in infos.messages if m.header == out.header)

        _publish_until(info_pub, _info(GOOD_FX), lambda: node._focal is not None, "the good camera_info")
        reference, reference_info = answer()
        for name, info in _bad_infos():
            refused = node.stats()["dropped"].get("camera_info_invalid", 0)
            _publish_until(info_pub, info, lambda: _refused(node, refused), f"{name} to be refused")
            out, out_info = answer()
            np.testing.assert_array_equal(out, reference, err_msg=name)
            np.testing.assert_array_equal(out_info.k, reference_info.k, err_msg=name)
        assert set(node.stats()["dropped"]) == {"camera_info_invalid"}
        assert node.stats()["camera_scale"] == pytest.approx(
            math.sqrt(GOOD_FX * GOOD_FX / (W * H)) / models.CANONICAL_FOCAL)

        # the narrowest lens the check allows (10 degrees): the scaled depth runs past 10 m
        narrow = W / (2 * math.tan(math.radians(5.0))) * 0.999
        _publish_until(info_pub, _info(narrow), lambda: node.stats()["camera_scale"] > 5, "the narrow lens")
        out, _ = answer()
        lo, hi = node._predictor.min_depth, node._predictor.max_depth
        assert np.isnan(out).any(), "a scale of 7x must push some pixels past the range"
        valid = out[np.isfinite(out)]
        assert ((valid > lo) & (valid < hi)).all(), "a value the range clamp produced was published as valid"


# --------------------------------------------------------------------------- parameters
@pytest.mark.parametrize("directory", ["/tmp/" + "a" * 300, "/tmp/" + "b" * 300 + "/sub",
                                       "~nosuchuser_issue26/checkpoints"], ids=["long_name", "long_parent", "no_home"])
def test_a_checkpoint_dir_the_file_system_cannot_check_is_refused_with_the_reason(checkpoint, tmp_path, directory):
    """Issue 26 (4): a path component over 255 bytes made Path.exists() raise; the request got no answer."""
    values = {"checkpoint": str(checkpoint), "device": "cpu", "adaptation_enabled": False,
              "checkpoint_dir": str(tmp_path)}
    with isolated_ros() as ros:
        node = ros.add_node(OnlineTrainerNode(context=ros.context,
                                              parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))
        probe = ros.create_node("probe")
        client = probe.create_client(SetParameters, "/online_trainer/set_parameters")
        assert client.wait_for_service(timeout_sec=TIMEOUT)
        request = SetParameters.Request(parameters=[Parameter("checkpoint_dir", value=directory).to_parameter_msg()])
        future = client.call_async(request)
        wait_for(future.done, TIMEOUT, what="set_parameters to answer")
        result = future.result().results[0]
        assert not result.successful and "checkpoint_dir" in result.reason
        assert node.get_parameter("checkpoint_dir").value == str(tmp_path)
        # the node still answers the next change
        future = client.call_async(SetParameters.Request(
            parameters=[Parameter("checkpoint_dir", value=str(tmp_path / "ok")).to_parameter_msg()]))
        wait_for(future.done, TIMEOUT, what="set_parameters to answer again")
        assert future.result().results[0].successful


# ------------------------------------------------------------------------- service bursts
@pytest.mark.parametrize("service", ["save", "reset"])
def test_thirty_concurrent_calls_are_all_answered(checkpoint, tmp_path, service):
    """Issue 26 (7): of more than ~10 concurrent ~/save calls only 10-11 were answered (queue depth 10)."""
    values = {"checkpoint": str(checkpoint), "device": "cpu", "adaptation_enabled": False,
              "checkpoint_dir": str(tmp_path)}
    with isolated_ros() as ros:
        ros.add_node(OnlineTrainerNode(context=ros.context,
                                       parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]))
        probe = ros.create_node("probe")
        clients = [probe.create_client(Trigger, f"/online_trainer/{service}") for _ in range(30)]
        for client in clients:
            assert client.wait_for_service(timeout_sec=TIMEOUT)
        futures = [client.call_async(Trigger.Request()) for client in clients]
        wait_for(lambda: all(f.done() for f in futures), 60.0, what=f"all 30 ~/{service} calls to be answered")
        assert all(f.result().success for f in futures)
        if service == "save":
            assert len(list(Path(tmp_path).glob("*.safetensors"))) == 30
