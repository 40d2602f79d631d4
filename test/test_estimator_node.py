"""Node tests of ``depth_estimator`` with real rclpy, isolated contexts and deadlines."""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSPresetProfiles, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from ros_helpers import MessageCollector, NodeProcess, isolated_ros, wait_for
from safetensors.torch import save as st_save
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header, UInt8MultiArray

from depth_estimator_ros import models
from depth_estimator_ros.adaptation.payload import export_payload, read_payload
from depth_estimator_ros.data.compressed import encode_compressed_rgb
from depth_estimator_ros.data.image_encoding import encode_rgb
from depth_estimator_ros.learning.predictor import Predictor
from depth_estimator_ros.ros import codec
from depth_estimator_ros.ros.estimator_node import (
    STAGES,
    DepthEstimatorNode,
    colorize_depth,
    parameter_descriptors,
)
from depth_estimator_ros.parameters import load_defaults
from depth_estimator_ros.ros.qos import SENSOR_QOS, WEIGHTS_QOS

H, W = 48, 64
TIMEOUT = 10.0


def _rgb(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def _image(rgb: np.ndarray, stamp: float, encoding: str = "rgb8", pad: int = 0, bigendian: int = 0) -> Image:
    step, data = encode_rgb(rgb, encoding)
    rows = np.frombuffer(data, np.uint8).reshape(rgb.shape[0], step)
    padded = np.concatenate([rows, np.full((rgb.shape[0], pad), 7, np.uint8)], axis=1)
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, is_bigendian=bigendian, step=step + pad)
    msg.header = _header(stamp)
    msg.data = padded.tobytes()
    return msg


def _header(stamp: float, frame_id: str = "camera_rgb_optical_frame") -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec = int(stamp)
    header.stamp.nanosec = int(round((stamp - int(stamp)) * 1e9))
    return header


def _stamp(header: Header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


@contextmanager
def running_estimator(checkpoint: Path, *, cli_args: list[str] | None = None, **params):
    """Yield ``(ros, node, probe)``: an estimator and a probe node spun in one isolated context."""
    overrides = [Parameter("checkpoint", value=str(checkpoint)), Parameter("device", value="cpu")]
    overrides += [Parameter(name, value=value) for name, value in params.items()]
    with isolated_ros() as ros:
        node = ros.add_node(DepthEstimatorNode(context=ros.context, parameter_overrides=overrides,
                                               cli_args=cli_args))
        probe = ros.create_node("probe")
        yield ros, node, probe


def _send_and_wait(pub, depth: MessageCollector, msg: Image) -> Image:
    """Publish ``msg`` until the estimator has answered it; return the answer."""
    before = len(depth)
    wait_for(lambda: pub.get_subscription_count() > 0, TIMEOUT, what="the estimator to subscribe")
    pub.publish(msg)
    depth.wait_for_count(before + 1, TIMEOUT)
    return depth.messages[before]


def test_every_parameter_has_its_default_in_live_yaml(checkpoint):
    with running_estimator(checkpoint) as (_, node, _probe):
        assert set(parameter_descriptors()) == set(load_defaults("depth_estimator"))
        assert all(node.has_parameter(name) for name in parameter_descriptors())
        assert node.get_parameter("points_stride").value == load_defaults("depth_estimator")["points_stride"]


@pytest.mark.parametrize(
    ("encoding", "pad", "bigendian"),
    [("rgb8", 0, 0), ("bgr8", 3, 0), ("rgba8", 0, 1), ("bgra8", 5, 0), ("mono8", 2, 1)],
)
def test_depth_per_frame_with_input_header_encoding_and_shape(checkpoint, encoding, pad, bigendian):
    rgb = _rgb(1)
    if encoding == "mono8":  # grey pixels survive mono8 exactly
        rgb = np.repeat(rgb.mean(axis=2, keepdims=True), 3, 2).astype(np.uint8)
    with running_estimator(checkpoint) as (_, node, probe):
        pub = probe.create_publisher(Image, "image", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        for i in range(3):
            out = _send_and_wait(pub, depth, _image(rgb, 100.0 + 0.1 * i, encoding, pad, bigendian))
            assert out.header.frame_id == "camera_rgb_optical_frame"
            assert _stamp(out.header) == pytest.approx(100.0 + 0.1 * i, abs=1e-9)
            assert (out.encoding, out.height, out.width) == ("32FC1", H, W)
            values = codec.image_to_depth(out)
            assert np.isfinite(values).all() and (values > 0).all() and (values <= 10.0).all()
            # the same pixels through any encoding, padding and byte-order flag give the same depth
            np.testing.assert_allclose(values, node._predictor.predict(rgb), rtol=1e-5)
        stats = node.stats()
        assert stats["frames_processed"] == 3 and stats["frames_in"] == 3


def test_diagnostics_split_each_frame_into_timed_stages(checkpoint):
    with running_estimator(checkpoint) as (_, node, probe):
        pub = probe.create_publisher(Image, "image", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        for i in range(4):
            sent = probe.get_clock().now().nanoseconds * 1e-9
            _send_and_wait(pub, depth, _image(_rgb(i), sent))
        stats = node.stats()
    stages = {name: stats[f"stage_{name}_mean_s"] for name in STAGES}
    assert all(0.0 <= seconds < TIMEOUT for seconds in stages.values()), stages
    assert stages["forward"] > 0 and stages["decode"] > 0 and stages["publish"] > 0
    # the Predictor call is exactly prepare + forward + finish (timed inside it), give or take the clock reads
    predictor_call = stages["prepare"] + stages["forward"] + stages["finish"]
    assert predictor_call == pytest.approx(stats["processing_mean_s"], rel=0.1, abs=2e-4)
    # stamp to publish covers every stage of the node
    assert stats["latency_mean_s"] >= sum(stages.values()) * 0.99


def test_best_effort_camera_publisher_is_compatible(checkpoint):
    with running_estimator(checkpoint) as (_, node, probe):
        best_effort = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
        pub = probe.create_publisher(Image, "image", best_effort)
        depth = MessageCollector(probe, Image, "depth/image")
        wait_for(lambda: pub.get_subscription_count() > 0, TIMEOUT, what="QoS match")
        # best effort may lose the first samples right after matching: resend until answered
        wait_for(lambda: pub.publish(_image(_rgb(2), 5.0 + len(depth))) or len(depth) > 0, TIMEOUT,
                 what="a depth image from a best-effort camera", interval=0.2)


def test_colored_depth_is_computed_only_while_subscribed(checkpoint):
    with running_estimator(checkpoint, colormap_max_depth=5.0) as (_, node, probe):
        pub = probe.create_publisher(Image, "image", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        _send_and_wait(pub, depth, _image(_rgb(3), 1.0))
        assert node.stats()["frames_colored"] == 0
        colored = MessageCollector(probe, Image, "depth/colored")
        wait_for(lambda: node._colored_pub.get_subscription_count() > 0, TIMEOUT, what="colored subscriber")
        out = _send_and_wait(pub, depth, _image(_rgb(3), 2.0))
        msg = colored.wait_for_count(1, TIMEOUT)[0]
        assert (msg.encoding, msg.height, msg.width) == ("rgb8", H, W)
        assert msg.header == out.header
        expected = colorize_depth(codec.image_to_depth(out), 0.0, 5.0)
        np.testing.assert_array_equal(codec.image_to_rgb(msg), expected)
        assert node.stats()["frames_colored"] == 1


def test_colorize_depth_marks_invalid_black_and_spans_the_range():
    depth = np.array([[np.nan, 0.0, 5.0, 10.0, 20.0]], np.float32)
    rgb = colorize_depth(depth, 0.0, 10.0)
    assert rgb.shape == (1, 5, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 0).all()
    assert not (rgb[0, 1] == rgb[0, 3]).all()
    assert (rgb[0, 3] == rgb[0, 4]).all()  # clipped at the maximum


def test_point_cloud_from_predicted_depth_and_camera_info(checkpoint):
    with running_estimator(checkpoint, publish_points=True, points_stride=2) as (_, node, probe):
        info_pub = probe.create_publisher(CameraInfo, "camera_info", SENSOR_QOS)
        pub = probe.create_publisher(Image, "image", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        points = MessageCollector(probe, PointCloud2, "depth/points")
        # camera_info for a 2x larger image: intrinsics must be rescaled
        info = CameraInfo(width=2 * W, height=2 * H, k=[100.0, 0, 63.5, 0, 100.0, 47.5, 0, 0, 1])
        wait_for(lambda: info_pub.get_subscription_count() > 0, TIMEOUT, what="camera_info subscriber")
        wait_for(lambda: info_pub.publish(info) or node._camera_info is not None, TIMEOUT, what="camera_info")
        out = _send_and_wait(pub, depth, _image(_rgb(4), 3.0))
        cloud = points.wait_for_count(1, TIMEOUT)[0]
        assert (cloud.height, cloud.width, cloud.point_step) == (H // 2, W // 2, 12)
        assert cloud.header == out.header and not cloud.is_dense
        xyz = np.frombuffer(bytes(cloud.data), np.float32).reshape(H // 2, W // 2, 3)
        z = codec.image_to_depth(out)[::2, ::2]
        np.testing.assert_allclose(xyz[..., 2], z)
        fx, cx = 50.0, (63.5 + 0.5) / 2 - 0.5
        np.testing.assert_allclose(xyz[0, 5, 0], (10 - cx) * z[0, 5] / fx, rtol=1e-5)


def test_camera_info_sets_the_metric_scale_of_the_depth(checkpoint):
    rgb = _rgb(6)
    with running_estimator(checkpoint) as (_, node, probe):
        info_pub = probe.create_publisher(CameraInfo, "camera_info", SENSOR_QOS)
        pub = probe.create_publisher(Image, "image", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        canonical = codec.image_to_depth(_send_and_wait(pub, depth, _image(rgb, 1.0)))
        assert node.stats()["camera"] == "canonical (no camera_info)" and node.stats()["camera_scale"] == 1.0
        np.testing.assert_allclose(canonical, node._predictor.predict(rgb), rtol=1e-5)
        # a longer lens than the canonical camera's (1.2x its normalised focal length), for a 2x image
        fx = 1.2 * models.CANONICAL_FOCAL * np.sqrt(2 * W * 2 * H)
        info = CameraInfo(width=2 * W, height=2 * H, k=[fx, 0, W - 0.5, 0, fx, H - 0.5, 0, 0, 1])
        wait_for(lambda: info_pub.get_subscription_count() > 0, TIMEOUT, what="camera_info subscriber")
        wait_for(lambda: info_pub.publish(info) or node._focal is not None, TIMEOUT, what="camera_info")
        scaled = codec.image_to_depth(_send_and_wait(pub, depth, _image(rgb, 2.0)))
        assert node.stats()["camera"] == "camera_info"
        assert node.stats()["camera_scale"] == pytest.approx(1.2)
        inside = canonical * 1.2 <= node._predictor.max_depth
        np.testing.assert_allclose(scaled[inside], 1.2 * canonical[inside], rtol=1e-4)
        # an uncalibrated driver (K all zero) means no camera: back to the canonical one
        wait_for(lambda: info_pub.publish(CameraInfo(width=W, height=H)) or node._focal is None, TIMEOUT,
                 what="camera_info without intrinsics")
        np.testing.assert_allclose(codec.image_to_depth(_send_and_wait(pub, depth, _image(rgb, 3.0))), canonical,
                                   rtol=1e-5)


def _payload(checkpoint: Path, version: int, seed: int) -> tuple[bytes, models.DepthModel]:
    """A weight payload that changes the decoder of the checkpointed model."""
    model, _ = models.load_checkpoint(checkpoint, arch="fast")
    base = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return export_payload(model, version, base_state=base), model


def test_weights_swapped_late_joiner_gets_latest_and_bad_payloads_refused(checkpoint):
    payload, adapted = _payload(checkpoint, 7, seed=1)
    rgb = _rgb(5)
    with isolated_ros() as ros:
        trainer = ros.create_node("fake_trainer")
        weights_pub = trainer.create_publisher(UInt8MultiArray, "weights", WEIGHTS_QOS)
        weights_pub.publish(UInt8MultiArray(data=payload))
        overrides = [Parameter("checkpoint", value=str(checkpoint)), Parameter("device", value="cpu")]
        node = ros.add_node(DepthEstimatorNode(context=ros.context, parameter_overrides=overrides))
        # transient-local: the estimator started after the publish still gets version 7 at once
        wait_for(lambda: node.weights_version == 7, 1.0, what="weights version 7 within 1 s")
        # one copy of the model, the predictor's; the base is kept for the payload's tensors only
        assert [name for name, v in vars(node).items() if isinstance(v, torch.nn.Module)] == []
        assert sorted(node._predictor._base_values) == sorted(read_payload(payload)[1])
        pub = trainer.create_publisher(Image, "image", 10)
        depth = MessageCollector(trainer, Image, "depth/image")
        out = codec.image_to_depth(_send_and_wait(pub, depth, _image(rgb, 1.0)))
        np.testing.assert_allclose(out, Predictor(adapted).predict(rgb), rtol=1e-5, atol=1e-6)
        # refused payloads: random bytes, then one with NaN; version 7 stays in force
        weights_pub.publish(UInt8MultiArray(data=np.random.default_rng(0).integers(0, 256, 500, np.uint8).tobytes()))
        wait_for(lambda: node.stats()["weights_rejected"] == 1, TIMEOUT, what="random payload refused")
        bad = models.load_checkpoint(checkpoint, arch="fast")[0]
        base = {k: v.clone() for k, v in bad.state_dict().items()}
        with torch.no_grad():
            next(bad.decoder.parameters()).fill_(float("nan"))
        weights_pub.publish(UInt8MultiArray(data=export_payload(bad, 8, base_state=base)))
        wait_for(lambda: node.stats()["weights_rejected"] == 2, TIMEOUT, what="NaN payload refused")
        assert node.weights_version == 7
        again = codec.image_to_depth(_send_and_wait(pub, depth, _image(rgb, 2.0)))
        np.testing.assert_array_equal(again, out)
        # in-process hand-over (live): an empty state means the base weights
        node.apply_state(9, {})
        assert node.weights_version == 9
        base_out = codec.image_to_depth(_send_and_wait(pub, depth, _image(rgb, 3.0)))
        base_model = models.load_checkpoint(checkpoint, arch="fast")[0]
        np.testing.assert_allclose(base_out, Predictor(base_model).predict(rgb), rtol=1e-5, atol=1e-6)


def _bad_images() -> list[tuple[str, Image]]:
    good = _image(_rgb(6), 50.0)
    cases = []

    def variant(reason: str, **fields) -> None:
        msg = _image(_rgb(6), 50.0)
        for key, value in fields.items():
            setattr(msg, key, value)
        cases.append((reason, msg))

    variant("bad_encoding", encoding="yuv422_weird")
    variant("bad_data_length", data=bytes(good.data)[: len(good.data) // 2])
    variant("bad_data_length", data=bytes(good.data) + b"\0" * 10)
    variant("zero_size", height=0, width=0, step=0, data=b"")
    variant("bad_step", step=W * 3 - 1, data=bytes(good.data)[: H * (W * 3 - 1)])
    huge = Image(height=10000, width=10000, encoding="rgb8", step=30000)
    huge.header = _header(50.0)
    huge.data = b"\0" * 16  # the size limit refuses it before looking at (or allocating) the data
    cases.append(("too_large", huge))
    return cases


def _each_dropped_then_answered(node, pub, depth, cases, good_message, stamp: float = 100.0) -> float:
    """Publish each ``(reason, bad message)``; it must be counted under ``reason``, then a good frame answered.

    Returns the last stamp used.
    """
    for reason, bad in cases:
        stamp += 0.1
        bad.header = _header(stamp)
        before = node.stats()["dropped"].get(reason, 0)
        pub.publish(bad)
        wait_for(lambda: node.stats()["dropped"].get(reason, 0) == before + 1, TIMEOUT, what=f"drop {reason}")
        stamp += 0.1
        _send_and_wait(pub, depth, good_message(stamp))
    return stamp


def test_every_bad_image_is_survived_counted_and_followed_by_a_good_answer(checkpoint):
    with running_estimator(checkpoint, max_future_stamp=60.0) as (_, node, probe):
        pub = probe.create_publisher(Image, "image", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        diagnostics = MessageCollector(probe, DiagnosticArray, "/diagnostics")
        wait_for(lambda: pub.get_subscription_count() > 0, TIMEOUT, what="the estimator to subscribe")
        stamp = _each_dropped_then_answered(node, pub, depth, _bad_images(), lambda t: _image(_rgb(7), t))
        # stamps: backwards, duplicate, far future; then a good frame
        last = stamp
        now = probe.get_clock().now().nanoseconds * 1e-9
        for reason, bad_stamp in (("stamp_backwards", last - 1.0), ("stamp_duplicate", last),
                                  ("stamp_future", now + 3600.0)):
            pub.publish(_image(_rgb(7), bad_stamp))
            wait_for(lambda: node.stats()["dropped"].get(reason, 0) == 1, TIMEOUT, what=f"drop {reason}")
        answer = _send_and_wait(pub, depth, _image(_rgb(7), last + 0.1))
        assert _stamp(answer.header) == pytest.approx(last + 0.1)
        expected = {"bad_encoding": 1, "bad_data_length": 2, "zero_size": 1, "bad_step": 1, "too_large": 1,
                    "stamp_backwards": 1, "stamp_duplicate": 1, "stamp_future": 1}
        assert {k: v for k, v in node.stats()["dropped"].items() if k != "stale"} == expected
        # the counters reach /diagnostics, by reason
        def reported():
            for array in diagnostics.messages:
                values = {kv.key: kv.value for status in array.status for kv in status.values}
                if values.get("dropped_bad_data_length") == "2" and "dropped_stamp_future" in values:
                    return values
            return None

        values = wait_for(reported, 5.0, what="drop counters on /diagnostics")
        assert int(values["frames_processed"]) == len(_bad_images()) + 1
        assert "latency_mean_s" in values and "weights_version" in values


def test_live_parameter_changes_are_validated(checkpoint):
    with running_estimator(checkpoint) as (_, node, _probe):
        refused = node.set_parameters([Parameter("checkpoint", value="/elsewhere.safetensors")])[0]
        assert not refused.successful and "read-only" in refused.reason
        refused = node.set_parameters([Parameter("points_stride", value=0)])[0]
        assert not refused.successful
        refused = node.set_parameters([Parameter("colormap_max_depth", value=-1.0)])[0]
        assert not refused.successful
        refused = node.set_parameters([Parameter("colormap_min_depth", value=20.0)])[0]
        assert not refused.successful and "colormap_max_depth" in refused.reason
        refused = node.set_parameters([Parameter("publish_points", value="yes")])[0]
        assert not refused.successful
        assert node.get_parameter("colormap_min_depth").value == 0.0
        ok = node.set_parameters([Parameter("colormap_max_depth", value=4.0), Parameter("max_pixels", value=100)])
        assert all(r.successful for r in ok)
        assert node._colormap == (0.0, 4.0) and node._max_pixels == 100


def test_depth_encoding_switches_live_to_16uc1_millimetres(checkpoint):
    rgb = _rgb(3)
    with running_estimator(checkpoint) as (_, node, probe):
        pub = probe.create_publisher(Image, "image", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        metres = _send_and_wait(pub, depth, _image(rgb, 1.0))
        refused = node.set_parameters([Parameter("depth_encoding", value="16UC2")])[0]
        assert not refused.successful and "32FC1, 16UC1" in refused.reason
        assert node.set_parameters([Parameter("depth_encoding", value="16UC1")])[0].successful
        millimetres = _send_and_wait(pub, depth, _image(rgb, 2.0))
    assert (metres.encoding, millimetres.encoding) == ("32FC1", "16UC1")
    assert (millimetres.step, len(millimetres.data)) == (2 * W, 2 * W * H)  # half the bytes of 32FC1
    raw = np.frombuffer(bytes(millimetres.data), "<u2").reshape(H, W)
    expected = codec.image_to_depth(metres)
    np.testing.assert_allclose(raw / 1000.0, expected, atol=0.0005 + 1e-6)
    np.testing.assert_allclose(codec.image_to_depth(millimetres), expected, atol=0.0005 + 1e-6)


def test_unusable_start_parameters_raise_with_the_reason(tmp_path):
    with isolated_ros() as ros:
        for params, match in (
            ([Parameter("arch", value="resnet9000")], "arch must be one of"),
            ([Parameter("checkpoint", value=str(tmp_path))], "does not exist or is not a file"),
            ([Parameter("device", value="tpu")], "device must be one of"),
            ([Parameter("depth_encoding", value="mono16")], "depth_encoding must be one of"),
        ):
            with pytest.raises(ValueError, match=match):
                DepthEstimatorNode(context=ros.context, parameter_overrides=params)


# SIGINT is covered by test_trainer_node and both signals by test_live (the same main() shape)
@pytest.mark.parametrize("sig", [signal.SIGTERM])
def test_main_exits_cleanly_on_signal_within_2_s(checkpoint, sig):
    code = "from depth_estimator_ros.ros.estimator_node import main; main()"
    argv = [sys.executable, "-c", code, "--ros-args", "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu"]
    with NodeProcess(argv, env={"RCUTILS_LOGGING_USE_STDOUT": "1"}) as child:
        child.wait_for_output("ready: depth_estimator", timeout=60.0)  # spinning
        assert child.stop(timeout=2.0, sig=sig) == 0
        assert "Traceback" not in child.stderr + child.stdout


def test_a_looped_short_bag_keeps_being_answered_and_counts_time_resets(checkpoint):
    """ros2 bag play --loop republishes a 0.5 s bag's stamps: every pass is answered, jitter still dropped."""
    bag = [1000.0 + i / 10 for i in range(6)]
    with running_estimator(checkpoint, max_future_stamp=0.0) as (_, node, probe):
        pub = probe.create_publisher(Image, "image", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        for _ in range(3):
            for stamp in bag:
                answer = _send_and_wait(pub, depth, _image(_rgb(3), stamp))
                assert _stamp(answer.header) == pytest.approx(stamp)
        assert node.stats()["time_resets"] == 2
        pub.publish(_image(_rgb(3), bag[-2]))  # an out-of-order frame within the pass
        wait_for(lambda: node.stats()["dropped"].get("stamp_backwards", 0) == 1, TIMEOUT, what="the late frame dropped")
        assert node.stats()["time_resets"] == 2


def test_depth_camera_info_comes_with_every_depth_image_with_its_header_and_size(checkpoint):
    """depth/camera_info pairs with depth (same header) and describes the depth image's pixels."""
    with running_estimator(checkpoint) as (_, node, probe):
        info_pub = probe.create_publisher(CameraInfo, "camera_info", SENSOR_QOS)
        pub = probe.create_publisher(Image, "image", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        infos = MessageCollector(probe, CameraInfo, "depth/camera_info")
        # no camera_info yet: the canonical camera the depth is scaled for
        out = _send_and_wait(pub, depth, _image(_rgb(2), 5.0))
        first = infos.wait_for_count(1, TIMEOUT)[0]
        assert first.header == out.header and (first.width, first.height) == (W, H)
        focal = models.CANONICAL_FOCAL * np.sqrt(W * H)
        np.testing.assert_allclose(first.k, [focal, 0, (W - 1) / 2, 0, focal, (H - 1) / 2, 0, 0, 1])
        np.testing.assert_allclose(np.reshape(first.p, (3, 4))[:, :3], np.reshape(first.k, (3, 3)))
        # the colour camera's camera_info for a 2x larger image: scaled to the depth image
        info = CameraInfo(width=2 * W, height=2 * H, k=[100.0, 0, 63.5, 0, 110.0, 47.5, 0, 0, 1],
                          p=[100.0, 0, 63.5, 0, 0, 110.0, 47.5, 0, 0, 0, 1, 0], d=[0.1, -0.2, 0, 0, 0],
                          distortion_model="plumb_bob")
        info.header.frame_id = "camera_rgb_optical_frame"
        wait_for(lambda: info_pub.get_subscription_count() > 0, TIMEOUT, what="camera_info subscriber")
        wait_for(lambda: info_pub.publish(info) or node._camera_info is not None, TIMEOUT, what="camera_info")
        for i in range(3):
            out = _send_and_wait(pub, depth, _image(_rgb(2), 6.0 + 0.1 * i))
            wait_for(lambda: any(m.header == out.header for m in infos.messages), TIMEOUT,
                     what="the camera_info of this depth image")
        scaled = [m for m in infos.messages if m.header == out.header][0]
        assert (scaled.width, scaled.height) == (out.width, out.height) == (W, H)
        cx, cy = (63.5 + 0.5) / 2 - 0.5, (47.5 + 0.5) / 2 - 0.5
        np.testing.assert_allclose(scaled.k, [50.0, 0, cx, 0, 55.0, cy, 0, 0, 1])
        np.testing.assert_allclose(scaled.p, [50.0, 0, cx, 0, 0, 55.0, cy, 0, 0, 0, 1, 0])
        np.testing.assert_allclose(scaled.d, [0.1, -0.2, 0, 0, 0])  # resolution-free: kept
        assert scaled.distortion_model == "plumb_bob"
        # one camera_info per depth image
        assert len(infos) == len(depth) == 4


#: How depth consumers subscribe to a depth image and its camera_info: ROS 2 Jazzy's
#: depth_image_proc (register.cpp) with rmw_qos_profile_default (reliable, keep-last 10), as
#: image_transport's subscribers do by default; RViz (this package's config) and
#: image_proc::getQosProfile's fallback with the sensor-data profile (best effort).
CONSUMER_QOS = {
    "reliable-rmw-default": QoSPresetProfiles.DEFAULT.value,
    "best-effort-sensor-data": qos_profile_sensor_data,
}


def _camera_info_topic(image_topic: str) -> str:
    """image_transport::getCameraInfoTopic: the ``camera_info`` beside an image topic."""
    return image_topic.rsplit("/", 1)[0] + "/camera_info"


@pytest.mark.parametrize("qos", list(CONSUMER_QOS.values()), ids=list(CONSUMER_QOS))
def test_a_camera_subscriber_on_depth_image_gets_its_camera_info_without_a_remap(checkpoint, qos):
    """Subscribe as depth_image_proc or RViz's DepthCloud does: the image topic, its sibling camera_info, their QoS."""
    with running_estimator(checkpoint) as (_, node, probe):
        image_topic = probe.resolve_topic_name("depth/image")
        info_topic = _camera_info_topic(image_topic)  # derived, as image_transport does: no remap
        assert (image_topic, info_topic) == ("/depth/image", "/depth/camera_info")
        images = MessageCollector(probe, Image, image_topic, qos)
        infos = MessageCollector(probe, CameraInfo, info_topic, qos)
        # matched (QoS compatible), not only discovered: an incompatible pair never counts
        wait_for(lambda: node._depth_pub.get_subscription_count() > 0
                 and node._depth_info_pub.get_subscription_count() > 0, TIMEOUT,
                 what="the estimator's depth/image and depth/camera_info to match the consumer's subscriptions")
        pub = probe.create_publisher(Image, "image", 10)
        sent = [_image(_rgb(20 + i), 70.0 + 0.1 * i) for i in range(3)]
        for msg in sent:
            _send_and_wait(pub, images, msg)

        def pairs():
            # exact-stamp pairs, as image_transport's CameraSubscriber (message_filters' TimeSynchronizer) makes
            by_stamp = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in infos.messages}
            return [(image, by_stamp[(image.header.stamp.sec, image.header.stamp.nanosec)])
                    for image in images.messages if (image.header.stamp.sec, image.header.stamp.nanosec) in by_stamp]

        paired = wait_for(lambda: len(pairs()) == len(sent) and pairs(), TIMEOUT, what="every depth/image paired")
    for (image, info), msg in zip(paired, sent):
        assert image.header == info.header == msg.header  # stamp and frame_id of the colour frame
        assert image.header.frame_id == "camera_rgb_optical_frame"
        assert (info.width, info.height) == (image.width, image.height) == (W, H)


# ---------------------------------------------------------------- compressed colour input
#: Largest depth difference, relative, allowed between a JPEG (quality 95, image_transport's
#: default) frame and the same frame raw. Measured with the shipped model on three 640x480
#: kitchen frames: median 0.3-0.8 %, worst pixel 3.2-5.9 % (README, known limits); the small
#: untrained model of these tests is far less sensitive (worst pixel 0.004 %).
JPEG_DEPTH_RTOL = 0.06


def _smooth_rgb() -> np.ndarray:
    """A camera-like image (gradients and a box): JPEG keeps it close, unlike per-pixel noise."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    rgb = np.stack([255 * x / W, 255 * y / H, 128 + 60 * np.sin(x / 6.0)], axis=-1)
    rgb[10:30, 20:40] = (200, 40, 90)
    return rgb.astype(np.uint8)


def _compressed(rgb: np.ndarray, stamp: float, container: str, fmt: str | None = None) -> CompressedImage:
    """Encode ``rgb`` as image_transport's compressed plugin does (OpenCV, BGR order, JPEG quality 95)."""
    plugin_format, data = encode_compressed_rgb(rgb, container)
    msg = CompressedImage(format=fmt if fmt is not None else plugin_format)
    msg.header = _header(stamp)
    msg.data = data
    return msg


@pytest.mark.parametrize(
    ("container", "fmt", "remap"),
    [
        ("png", "bgr8; png compressed bgr8", None),
        ("jpeg", "rgb8; jpeg compressed bgr8", None),
        ("jpeg", "jpeg", "/cam/rgb"),  # an older publisher's format; `image` remapped: <remapped>/compressed
    ],
)
def test_compressed_stream_is_answered_with_the_depth_of_the_same_frame_raw(checkpoint, container, fmt, remap):
    rgb = _smooth_rgb()
    cli_args = None if remap is None else ["--ros-args", "-r", f"image:={remap}"]
    with running_estimator(checkpoint, cli_args=cli_args, rgb_transport="compressed") as (_, node, probe):
        topic = f"{remap or 'image'}/compressed"
        wait_for(lambda: ("/" + topic.lstrip("/"), ["sensor_msgs/msg/CompressedImage"])
                 in node.get_subscriber_names_and_types_by_node(node.get_name(), node.get_namespace()),
                 TIMEOUT, what=f"a CompressedImage subscription on {topic}")
        pub = probe.create_publisher(CompressedImage, topic, 10)
        depth = MessageCollector(probe, Image, "depth/image")
        infos = MessageCollector(probe, CameraInfo, "depth/camera_info")
        raw_depth = node._predictor.predict(rgb)
        for i in range(2):
            sent = _compressed(rgb, 10.0 + 0.1 * i, container, fmt)
            out = _send_and_wait(pub, depth, sent)
            assert out.header == sent.header and (out.encoding, out.height, out.width) == ("32FC1", H, W)
            wait_for(lambda: any(m.header == out.header for m in infos.messages), TIMEOUT,
                     what="depth/camera_info with the depth image")
            values = codec.image_to_depth(out)
            if container == "png":  # lossless: exactly the raw frame's depth
                np.testing.assert_allclose(values, raw_depth, rtol=1e-5)
            else:  # the depth of the decoded pixels, and close to the raw frame's
                decoded = cv2.imdecode(np.frombuffer(bytes(sent.data), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
                np.testing.assert_allclose(values, node._predictor.predict(np.ascontiguousarray(decoded)), rtol=1e-5)
                np.testing.assert_allclose(values, raw_depth, rtol=JPEG_DEPTH_RTOL)
        stats = node.stats()
        assert (stats["frames_in"], stats["frames_processed"]) == (2, 2) and not stats["dropped"]
        assert stats["stage_decode_mean_s"] > 0  # decoded in the inference thread, timed as a stage


def _bad_compressed() -> list[tuple[str, CompressedImage]]:
    rgb = _smooth_rgb()
    jpeg, png = _compressed(rgb, 0.0, "jpeg"), _compressed(rgb, 0.0, "png")
    cases = []

    def variant(reason: str, source: CompressedImage, data: bytes | None = None, fmt: str | None = None) -> None:
        msg = CompressedImage(format=source.format if fmt is None else fmt)
        msg.data = bytes(source.data) if data is None else data
        cases.append((reason, msg))

    variant("corrupt_compressed", jpeg, data=bytes(jpeg.data)[: len(jpeg.data) // 2])  # truncated JPEG
    variant("corrupt_compressed", jpeg, data=b"")  # an empty payload
    variant("corrupt_compressed", jpeg, data=b"GIF89a" + bytes(100))  # neither JPEG nor PNG
    variant("bad_encoding", png, fmt="16UC1; compressedDepth png")  # the depth plugin's format
    zero = bytearray(png.data)
    zero[16:20] = bytes(4)  # IHDR width 0
    variant("zero_size", png, data=bytes(zero))
    big = cv2.imencode(".png", np.zeros((H + 1, W, 3), np.uint8))[1].tobytes()
    variant("too_large", png, data=big)  # max_pixels = H * W below
    return cases


def test_bad_compressed_payloads_are_counted_by_reason_and_the_node_keeps_answering(checkpoint):
    good = _smooth_rgb()
    with running_estimator(checkpoint, rgb_transport="compressed", max_pixels=H * W) as (_, node, probe):
        pub = probe.create_publisher(CompressedImage, "image/compressed", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        diagnostics = MessageCollector(probe, DiagnosticArray, "/diagnostics")
        wait_for(lambda: pub.get_subscription_count() > 0, TIMEOUT, what="the estimator to subscribe")
        _each_dropped_then_answered(node, pub, depth, _bad_compressed(), lambda t: _compressed(good, t, "png"))
        expected = {"corrupt_compressed": 3, "bad_encoding": 1, "zero_size": 1, "too_large": 1}
        assert {k: v for k, v in node.stats()["dropped"].items() if k != "stale"} == expected
        assert node.stats()["frames_processed"] == len(_bad_compressed())

        def reported():
            for array in diagnostics.messages:
                values = {kv.key: kv.value for status in array.status for kv in status.values}
                if values.get("dropped_corrupt_compressed") == "3" and "dropped_too_large" in values:
                    return values
            return None

        wait_for(reported, 5.0, what="compressed drop counters on /diagnostics")


def test_rgb_transport_other_than_raw_or_compressed_is_refused_at_start_and_read_only_live(checkpoint):
    with isolated_ros() as ros:
        for value in ("theora", "Compressed", ""):
            with pytest.raises(ValueError, match="rgb_transport must be one of raw, compressed"):
                DepthEstimatorNode(context=ros.context, parameter_overrides=[Parameter("rgb_transport", value=value)])
    with running_estimator(checkpoint, rgb_transport="compressed") as (_, node, _probe):
        refused = node.set_parameters([Parameter("rgb_transport", value="raw")])[0]
        assert not refused.successful and "read-only" in refused.reason


# --------------------------------------------------- issue 26: weight payloads (#5, #8, #9)
def _forged(payload: bytes, **changes: str | None) -> bytes:
    """``payload`` with metadata entries changed (a value of None removes the entry)."""
    metadata, tensors = read_payload(payload)
    metadata = {k: v for k, v in {**metadata, **changes}.items() if v is not None}
    return st_save(tensors, metadata=metadata)


def _run_payload(checkpoint: Path, version: int, run: str, seed: int = 1) -> bytes:
    model, _ = models.load_checkpoint(checkpoint, arch="fast")
    base = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return export_payload(model, version, base_state=base, run_id=run)


def test_malformed_payload_metadata_is_refused_and_counted_also_at_start_up(checkpoint):
    # Issue 26 #5: metadata without "arch", "tensors" = 5 or null raised KeyError / TypeError
    # out of the weights callback (not counted), at start-up from the transient-local topic too.
    good = _run_payload(checkpoint, 4, "run-a")
    malformed = [
        _forged(good, arch=None), _forged(good, tensors="5"), _forged(good, tensors="null"),
        _forged(good, tensors='["x"]'), _forged(good, config="[]"), _forged(good, config="{"),
        _forged(good, version="-1"), _forged(good, version="٣"), _forged(good, version=None),
        _forged(good, run=""), _forged(good, run="a b"), _forged(good, arch=""),
    ]
    rgb = _rgb(5)
    with isolated_ros() as ros:
        trainer = ros.create_node("fake_trainer")
        weights_pub = trainer.create_publisher(UInt8MultiArray, "weights", WEIGHTS_QOS)
        weights_pub.publish(UInt8MultiArray(data=malformed[0]))  # kept for the estimator that starts next
        overrides = [Parameter("checkpoint", value=str(checkpoint)), Parameter("device", value="cpu")]
        node = ros.add_node(DepthEstimatorNode(context=ros.context, parameter_overrides=overrides))
        wait_for(lambda: node.stats()["weights_rejected"] == 1, TIMEOUT, what="the start-up payload refused")
        for count, payload in enumerate(malformed[1:], start=2):
            weights_pub.publish(UInt8MultiArray(data=payload))
            wait_for(lambda: node.stats()["weights_rejected"] == count, TIMEOUT, what=f"malformed payload {count}")
        assert node.weights_version == 0
        assert node.stats()["weights_rejected_invalid"] == len(malformed)
        weights_pub.publish(UInt8MultiArray(data=good))
        wait_for(lambda: node.weights_version == 4, TIMEOUT, what="the good payload after them")
        pub = trainer.create_publisher(Image, "image", 10)
        _send_and_wait(pub, MessageCollector(trainer, Image, "depth/image"), _image(rgb, 1.0))


def test_stale_versions_of_a_run_are_refused_and_a_new_run_starts_again_at_1(checkpoint):
    # Issue 26 #8: version 3 after version 5 took effect; a restarted trainer counts from 1.
    with running_estimator(checkpoint) as (_, node, probe):
        weights_pub = probe.create_publisher(UInt8MultiArray, "weights", WEIGHTS_QOS)
        wait_for(lambda: weights_pub.get_subscription_count() > 0, TIMEOUT, what="the weights subscription")

        def send(version: int, run: str, expect_version: int, expect_stale: int) -> None:
            weights_pub.publish(UInt8MultiArray(data=_run_payload(checkpoint, version, run, seed=version)))
            wait_for(lambda: (node.weights_version, node.stats().get("weights_rejected_stale", 0))
                     == (expect_version, expect_stale), TIMEOUT, what=f"{run} v{version} handled")

        send(5, "run-a", 5, 0)
        send(3, "run-a", 5, 1)  # older: refused, 5 stays
        send(5, "run-a", 5, 2)  # equal: refused
        send(6, "run-a", 6, 2)
        send(1, "run-b", 1, 2)  # a new run (restarted trainer) from 1
        send(1, "run-b", 1, 3)
        assert node.stats()["weights_rejected"] == 3


def test_oversized_payload_is_refused_before_it_is_parsed_and_memory_is_released(checkpoint, monkeypatch):
    # Issue 26 #9: no size limit before the bytes were copied and parsed.
    from depth_estimator_ros.ros import estimator_node

    parsed, released = [], []
    monkeypatch.setattr(estimator_node, "read_payload", lambda data: parsed.append(len(data)) or read_payload(data))
    monkeypatch.setattr(estimator_node, "release_memory", lambda: released.append(True) or "trimmed")
    full_model, _ = models.load_checkpoint(checkpoint, arch="fast")
    full = export_payload(full_model, 2, run_id="run-a")  # every tensor: what ~/reset publishes
    assert len(full) > estimator_node.RELEASE_AFTER_BYTES
    with running_estimator(checkpoint, max_payload_bytes=len(full) - 1) as (_, node, probe):
        weights_pub = probe.create_publisher(UInt8MultiArray, "weights", WEIGHTS_QOS)
        wait_for(lambda: weights_pub.get_subscription_count() > 0, TIMEOUT, what="the weights subscription")
        weights_pub.publish(UInt8MultiArray(data=full))
        wait_for(lambda: node.stats().get("weights_rejected_too_large") == 1, TIMEOUT, what="too large refused")
        assert parsed == [] and node.weights_version == 0
        wait_for(lambda: released, TIMEOUT, what="memory released after the refusal")
        # the DDS reader that held the oversized message is gone; its successor is volatile,
        # so the publisher's history (that same payload) is not handed back
        assert node._weights_sub.qos_profile.durability == DurabilityPolicy.VOLATILE
        # 0 = automatic: a full payload of this model fits
        assert node.set_parameters([Parameter("max_payload_bytes", value=0)])[0].successful
        assert node._max_payload_bytes == estimator_node.full_payload_limit(full_model) > len(full)
        wait_for(lambda: weights_pub.publish(UInt8MultiArray(data=full)) or node.weights_version == 2, TIMEOUT,
                 what="the same payload under the automatic limit", interval=0.5)
        assert parsed[0] == len(full) and len(released) == 1
        assert node.stats()["weights_rejected"] == 1 + node.stats().get("weights_rejected_stale", 0)
        refused = node.set_parameters([Parameter("max_payload_bytes", value=-1)])[0]
        assert not refused.successful


# ------------------------------------------------------------------ depth/filled/image


def _sensor_depth(stamp: float, shape: tuple[int, int] = (H, W), encoding: str = "32FC1") -> Image:
    """A registered sensor depth with holes: a 1-3 m ramp, a missing block and an unmeasured left border."""
    height, width = shape
    depth = np.repeat(np.linspace(1.0, 3.0, width, dtype=np.float32)[None], height, axis=0)
    depth[height // 4: height // 2, width // 4: width // 2] = np.nan  # glass, a black surface
    depth[:, :3] = 0.0  # the shadow beside an edge (0 = invalid in both encodings)
    return codec.depth_to_image(depth, _header(stamp), encoding)


def _filled_topics(probe) -> tuple[MessageCollector, MessageCollector]:
    return MessageCollector(probe, Image, "depth/filled/image"), MessageCollector(probe, Image, "depth/filled/mask")


def _wait_filled_matched(node, sensor_pub) -> None:
    wait_for(lambda: node._filled_pub.get_subscription_count() > 0 and node._filled_mask_pub.get_subscription_count()
             > 0 and sensor_pub.get_subscription_count() > 0, TIMEOUT, what="filled depth subscribers and sensor_depth")


def _send_sensor(node, sensor_pub, msg: Image) -> None:
    """Publish a sensor depth and wait until the estimator holds it (then a frame can pair with it)."""
    before = node.stats()["sensor_depth_in"]
    sensor_pub.publish(msg)
    wait_for(lambda: node.stats()["sensor_depth_in"] == before + 1, TIMEOUT, what="the sensor depth to arrive")


@pytest.mark.parametrize(("shape", "encoding"), [((H, W), "32FC1"), ((H // 2, W // 2), "16UC1")],
                         ids=["same-size-32FC1", "half-size-16UC1"])
def test_filled_depth_keeps_measured_pixels_fills_the_holes_and_marks_them(checkpoint, shape, encoding):
    with running_estimator(checkpoint) as (_, node, probe):
        pub = probe.create_publisher(Image, "image", 10)
        sensor_pub = probe.create_publisher(Image, "sensor_depth", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        filled_topic, mask_topic = _filled_topics(probe)
        info_topic = MessageCollector(probe, CameraInfo, "depth/filled/camera_info")
        _wait_filled_matched(node, sensor_pub)
        sensor_msg = _sensor_depth(20.0, shape, encoding)
        _send_sensor(node, sensor_pub, sensor_msg)
        rgb_msg = _image(_rgb(11), 20.0)
        _send_and_wait(pub, depth, rgb_msg)
        out = filled_topic.wait_for_count(1, TIMEOUT)[0]
        mask_msg = mask_topic.wait_for_count(1, TIMEOUT)[0]
        info = info_topic.wait_for_count(1, TIMEOUT)[0]
        # counted after the three images are published
        wait_for(lambda: node.stats()["frames_filled"] == 1, TIMEOUT, what="the filled frame counted")
    height, width = shape
    assert out.header == rgb_msg.header and mask_msg.header == rgb_msg.header and info.header == rgb_msg.header
    # the filled images' own camera_info, at the sensor depth's size (not depth/camera_info's colour size)
    assert (info.width, info.height) == (width, height)
    focal = models.CANONICAL_FOCAL * np.sqrt(width * height)  # no camera_info yet: the canonical camera
    np.testing.assert_allclose(info.k, [focal, 0, (width - 1) / 2, 0, focal, (height - 1) / 2, 0, 0, 1])
    assert (out.encoding, out.height, out.width, out.step) == ("32FC1", height, width, 4 * width)
    assert (mask_msg.encoding, mask_msg.height, mask_msg.width) == ("mono8", height, width)
    values = np.frombuffer(bytes(out.data), "<f4").reshape(height, width)
    sensor = codec.image_to_depth(sensor_msg)  # the node's own decoder: 16UC1 mm -> float32 m
    measured = np.isfinite(sensor)
    assert 0 < measured.sum() < measured.size
    np.testing.assert_array_equal(values[measured].view(np.uint32), sensor[measured].view(np.uint32))
    assert np.isfinite(values[~measured]).all() and (values[~measured] > 0).all()
    mask = np.frombuffer(bytes(mask_msg.data), np.uint8).reshape(height, width)
    np.testing.assert_array_equal(mask, np.where(measured, 255, 128))


def test_filled_depth_only_while_subscribed_and_only_for_frames_with_a_sensor_depth_near_in_time(checkpoint):
    with running_estimator(checkpoint, filled_sync_tolerance=0.05) as (_, node, probe):
        pub = probe.create_publisher(Image, "image", 10)
        sensor_pub = probe.create_publisher(Image, "sensor_depth", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        wait_for(lambda: sensor_pub.get_subscription_count() > 0, TIMEOUT, what="sensor_depth subscription")
        _send_sensor(node, sensor_pub, _sensor_depth(30.0))
        _send_and_wait(pub, depth, _image(_rgb(1), 30.0))  # paired, but nobody subscribes: nothing computed
        filled_topic, _ = _filled_topics(probe)
        wait_for(lambda: node._filled_pub.get_subscription_count() > 0, TIMEOUT, what="a depth/filled/image subscriber")
        _send_and_wait(pub, depth, _image(_rgb(2), 30.5))  # 0.5 s from the only sensor depth: depth, no filled
        wait_for(lambda: node.stats()["filled_unpaired"] == 1, TIMEOUT, what="the unpaired frame to be counted")
        _send_sensor(node, sensor_pub, _sensor_depth(30.53))
        _send_and_wait(pub, depth, _image(_rgb(3), 30.5 + 0.02))  # 10 ms from it: within 0.05 s
        first = filled_topic.wait_for_count(1, TIMEOUT)[0]
        assert node.set_parameters([Parameter("filled_sync_tolerance", value=0.001)])[0].successful
        _send_and_wait(pub, depth, _image(_rgb(4), 30.54))  # 10 ms: beyond the new tolerance
        wait_for(lambda: node.stats()["filled_unpaired"] == 2, TIMEOUT, what="the second unpaired frame")
        stats = node.stats()
    # the frames before the paired one gave no filled output (reliable, in order: it would come first)
    assert len(filled_topic) == 1 and _stamp(first.header) == pytest.approx(30.52, abs=1e-9)
    assert (stats["frames_processed"], stats["frames_filled"], stats["filled_unpaired"]) == (4, 1, 2)
    assert stats["sensor_depth_in"] == 2 and stats["fill_mean_s"] > 0


def test_publish_filled_and_sensor_scale_false_subscribe_to_no_sensor_depth_and_publish_no_filled(checkpoint):
    with running_estimator(checkpoint, publish_filled=False, sensor_scale=False) as (_, node, probe):
        pub = probe.create_publisher(Image, "image", 10)
        sensor_pub = probe.create_publisher(Image, "sensor_depth", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        filled_topic, _ = _filled_topics(probe)

        def own(kind):
            return {name for name, _ in kind(node.get_name(), node.get_namespace())}

        wait_for(lambda: "/image" in own(node.get_subscriber_names_and_types_by_node), TIMEOUT, what="/image")
        assert "/sensor_depth" not in own(node.get_subscriber_names_and_types_by_node)
        filled = {"/depth/filled/image", "/depth/filled/camera_info", "/depth/filled/mask"}
        assert not filled & own(node.get_publisher_names_and_types_by_node)
        sensor_pub.publish(_sensor_depth(50.0))
        _send_and_wait(pub, depth, _image(_rgb(5), 50.0))
        stats = node.stats()
        assert node.get_parameter("publish_filled").value is False
        refused = node.set_parameters([Parameter("publish_filled", value=True)])[0]
        assert not refused.successful and "read-only" in refused.reason
    assert (stats["sensor_depth_in"], stats["frames_filled"], stats["filled_unpaired"], len(filled_topic)) == (0, 0, 0, 0)


def test_sensor_scale_rescales_the_next_frames_by_the_sensor_ratio_and_can_be_switched_off(checkpoint):
    with running_estimator(checkpoint, publish_filled=False) as (_, node, probe):  # sensor_scale alone subscribes
        pub = probe.create_publisher(Image, "image", 10)
        sensor_pub = probe.create_publisher(Image, "sensor_depth", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        wait_for(lambda: sensor_pub.get_subscription_count() > 0, TIMEOUT, what="sensor_depth subscription")
        rgb = _rgb(21)
        own = node._predictor.predict(rgb)
        outputs = []
        for k in range(3):  # the sensor sees 1.5x what the model predicts
            stamp = 60.0 + 0.033 * k
            _send_sensor(node, sensor_pub, codec.depth_to_image(1.5 * own, _header(stamp), "32FC1"))
            outputs.append(codec.image_to_depth(_send_and_wait(pub, depth, _image(rgb, stamp))))
        # a frame is compared with its sensor depth after its depth is published
        wait_for(lambda: node.stats()["sensor_scale_pairs"] == 3, TIMEOUT, what="the third pair counted")
        stats = node.stats()
        assert node.set_parameters([Parameter("sensor_scale", value=False)])[0].successful
        off = codec.image_to_depth(_send_and_wait(pub, depth, _image(rgb, 60.1)))
    np.testing.assert_allclose(outputs[0], own, rtol=1e-5)  # no pair before the first frame
    for out in outputs[1:]:
        np.testing.assert_allclose(out, np.clip(1.5 * own, 0.0, 10.0), rtol=1e-4)
    assert stats["sensor_scale_pairs"] == 3 and stats["sensor_scale"] == pytest.approx(1.5, rel=1e-4)
    assert 0.0 < stats["scale_mean_s"] < TIMEOUT  # its time on the inference thread is reported
    np.testing.assert_allclose(off, own, rtol=1e-5)


def test_malformed_sensor_depth_is_dropped_counted_and_depth_keeps_flowing(checkpoint):
    good = _sensor_depth(0.0)
    cases = [("sensor_depth_bad_data_length", dict(data=bytes(good.data)[: len(good.data) // 2])),
             ("sensor_depth_bad_encoding", dict(encoding="rgb8", step=3 * W)),
             ("sensor_depth_aspect_mismatch", dict(height=W, data=bytes(good.data) + bytes(good.data)[: 16 * 4 * W]))]
    with running_estimator(checkpoint) as (_, node, probe):
        pub = probe.create_publisher(Image, "image", 10)
        sensor_pub = probe.create_publisher(Image, "sensor_depth", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        filled_topic, _ = _filled_topics(probe)
        _wait_filled_matched(node, sensor_pub)
        stamp = 40.0
        for reason, fields in cases:
            stamp += 0.1
            bad = _sensor_depth(stamp)
            for key, value in fields.items():
                setattr(bad, key, value)
            _send_sensor(node, sensor_pub, bad)
            _send_and_wait(pub, depth, _image(_rgb(6), stamp))  # depth still answers the frame
            wait_for(lambda: node.stats()["dropped"].get(reason, 0) == 1, TIMEOUT, what=f"drop {reason}")
        _send_sensor(node, sensor_pub, _sensor_depth(stamp + 0.1))
        _send_and_wait(pub, depth, _image(_rgb(6), stamp + 0.1))
        out = filled_topic.wait_for_count(1, TIMEOUT)[0]
        wait_for(lambda: node.stats()["frames_filled"] == 1, TIMEOUT, what="the filled frame counted")
        stats = node.stats()
    assert _stamp(out.header) == pytest.approx(stamp + 0.1, abs=1e-9) and len(filled_topic) == 1
    assert {k: v for k, v in stats["dropped"].items() if k != "stale"} == {reason: 1 for reason, _ in cases}
    assert (stats["frames_processed"], stats["frames_filled"], stats["filled_unpaired"]) == (4, 1, 0)


# ---------------------------------------------------------------- room recognition (RGB only)
def _room_memory(checkpoint: Path) -> tuple[bytes, dict[str, torch.Tensor], dict[str, torch.Tensor], np.ndarray,
                                            np.ndarray]:
    """A memory with one room, ``room-a``, whose keyframes are two noise images of this model.

    Returns:
        ``(blob, base state, room-a's delta, an image of room-a, an image of no room)``; the
        unknown image's similarity to room-a is checked below the threshold first.
    """
    from depth_estimator_ros.adaptation.recognition import RoomRecognizer
    from depth_estimator_ros.adaptation.rooms import RECOGNITION_THRESHOLD, RoomMemory

    model, _ = models.load_checkpoint(checkpoint, arch="fast")
    base = {k: v.clone() for k, v in model.state_dict().items()}
    recognizer = RoomRecognizer(model)
    # an untrained model finds most images alike; a plain red wall is one it does not
    seen, unknown = _rgb(21), np.tile(np.array([255, 0, 0], np.uint8), (H, W, 1))
    keyframes = torch.cat([recognizer.describe(seen), recognizer.describe(_rgb(22))])
    similarity = float((recognizer.describe(unknown) @ keyframes.T).max())
    assert similarity < RECOGNITION_THRESHOLD, f"the 'unknown' image must not look like room-a ({similarity:.3f})"
    assert float((recognizer.describe(seen) @ keyframes.T).max()) == pytest.approx(1.0)
    delta = {k: v * 1.1 for k, v in base.items() if k.startswith("decoder.") and v.is_floating_point()}
    memory = RoomMemory(base, "fast")
    memory.store("room-a", delta, keyframes)
    return memory.to_bytes(), base, delta, seen, unknown


def _state_is(node, expected: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v.cpu(), expected[k]) for k, v in node.model.state_dict().items())


def _send_until(pub, depth: MessageCollector, rgb: np.ndarray, done, what: str, stamp: list[float]) -> None:
    """Send frames of ``rgb`` (each once the previous was answered) until ``done()``."""

    def step() -> bool:
        stamp[0] += 0.1
        _send_and_wait(pub, depth, _image(rgb, stamp[0]))
        return done()

    wait_for(step, TIMEOUT, what=what)


def test_rooms_received_late_are_recognised_from_rgb_and_unknown_frames_return_to_the_base(checkpoint):
    blob, base, delta, seen, unknown = _room_memory(checkpoint)
    # the fake trainer and the estimator in contexts of their own (two DDS participants, as two robots)
    with isolated_ros() as trainer_ros, isolated_ros() as ros:
        trainer = trainer_ros.create_node("fake_trainer")
        rooms_pub = trainer.create_publisher(UInt8MultiArray, "rooms", WEIGHTS_QOS)
        rooms_pub.publish(UInt8MultiArray(data=blob))
        overrides = [Parameter("checkpoint", value=str(checkpoint)), Parameter("device", value="cpu"),
                     Parameter("room_recognition", value=True), Parameter("recognition_period", value=1)]
        node = ros.add_node(DepthEstimatorNode(context=ros.context, parameter_overrides=overrides))
        # transient-local: the estimator started after the publication receives the memory
        wait_for(lambda: node.stats()["rooms_received"] == 1, TIMEOUT, what="the room memory")
        assert node.stats()["room"] == "base" and node.stats()["rooms_known"] == 1
        pub = trainer.create_publisher(Image, "image", 10)
        depth = MessageCollector(trainer, Image, "depth/image")
        stamp = [1.0]
        _send_until(pub, depth, seen, lambda: node.stats()["room"] == "room-a", "room-a recognised", stamp)
        assert _state_is(node, {**base, **delta})
        assert node.stats()["room_similarity"] == pytest.approx(1.0) and node.stats()["room_recognitions"] == 1
        _send_until(pub, depth, unknown, lambda: node.stats()["room"] == "base", "the base back", stamp)
        assert _state_is(node, base) and node.stats()["room_recognitions"] == 2
        assert node.stats()["recognition_mean_s"] > 0


def test_a_weights_payload_holds_recognition_off_and_bad_room_blobs_are_refused_and_counted(checkpoint):
    from depth_estimator_ros.adaptation.rooms import RoomMemory

    blob, base, delta, seen, _ = _room_memory(checkpoint)
    payload, adapted = _payload(checkpoint, 7, seed=1)
    with running_estimator(checkpoint, room_recognition=True, recognition_period=1,
                           recognition_hold=3600.0) as (_, node, probe):
        rooms_pub = probe.create_publisher(UInt8MultiArray, "rooms", WEIGHTS_QOS)
        weights_pub = probe.create_publisher(UInt8MultiArray, "weights", WEIGHTS_QOS)
        wait_for(lambda: rooms_pub.get_subscription_count() and weights_pub.get_subscription_count(), TIMEOUT,
                 what="the estimator to subscribe")
        rooms_pub.publish(UInt8MultiArray(data=blob))
        wait_for(lambda: node.stats()["rooms_received"] == 1, TIMEOUT, what="the room memory")
        weights_pub.publish(UInt8MultiArray(data=payload))
        wait_for(lambda: node.stats()["room"] == "trainer weights", TIMEOUT, what="the payload in force")
        assert node.weights_version == 7
        pub = probe.create_publisher(Image, "image", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        stamp = [1.0]
        # room-a is recognised, but the trainer's weights were the later word: held
        _send_until(pub, depth, seen, lambda: node.stats()["recognition_held"] >= 2, "recognition held", stamp)
        assert node.stats()["room"] == "trainer weights" and node.stats()["room_recognitions"] == 0
        assert _state_is(node, adapted.state_dict())
        # corrupt and foreign blobs: refused, counted; the memory received before stays
        foreign = st_save({"x": torch.zeros(1)}, metadata={"format": "something.else", "arch": "fast"})
        other_arch = RoomMemory({}, "vgg16_coarse").to_bytes()
        for count, bad in enumerate([blob[: len(blob) // 3], foreign, other_arch], start=1):
            rooms_pub.publish(UInt8MultiArray(data=bad))
            wait_for(lambda c=count: node.stats()["rooms_rejected"] == c, TIMEOUT, what=f"bad blob {count} refused")
        stats = node.stats()
        assert stats["rooms_rejected_invalid"] == 3 and stats["rooms_received"] == 1 and stats["rooms_known"] == 1
        # the hold lifted (live): room-a goes in force over the base, through the one weight path
        node.set_parameters([Parameter("recognition_hold", value=0.0)])
        _send_until(pub, depth, seen, lambda: node.stats()["room"] == "room-a", "room-a recognised", stamp)
        assert _state_is(node, {**base, **delta}) and node.weights_version == 7


def test_room_recognition_is_off_by_default_and_subscribes_to_no_rooms(checkpoint):
    with running_estimator(checkpoint) as (_, node, probe):
        rooms_pub = probe.create_publisher(UInt8MultiArray, "rooms", WEIGHTS_QOS)
        wait_for(lambda: node.count_subscribers("image") > 0, TIMEOUT, what="the estimator to subscribe")
        assert rooms_pub.get_subscription_count() == 0 and "room" not in node.stats()
