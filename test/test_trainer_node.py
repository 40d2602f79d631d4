"""Node tests of ``online_trainer`` with real rclpy, isolated contexts and deadlines."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from ros_helpers import (
    FAST_ROUNDS,
    MessageCollector,
    NodeProcess,
    isolated_ros,
    wait_for,
)
from ros_helpers import stamped_header as _header
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float32, UInt8MultiArray, UInt32
from std_srvs.srv import Trigger

from depth_estimator_ros import models
from depth_estimator_ros.adaptation import AdaptationConfig, import_payload, read_payload
from depth_estimator_ros.adaptation.rooms import RoomMemory
from depth_estimator_ros.data.compressed import encode_compressed_rgb
from depth_estimator_ros.data.frame import Frame
from depth_estimator_ros.adaptation.config import config_fields
from depth_estimator_ros.data.image_encoding import encode_depth, encode_rgb
from depth_estimator_ros.data.synthetic import SyntheticRooms
from depth_estimator_ros.parameters import load_defaults
from depth_estimator_ros.ros.estimator_node import DepthEstimatorNode
from depth_estimator_ros.ros.qos import WEIGHTS_QOS
from depth_estimator_ros.ros.trainer_node import (
    OnlineTrainerNode,
    parameter_descriptors,
)

H, W = 48, 64
TIMEOUT = 20.0


def _pair(index: int, stamp: float, depth_encoding: str = "16UC1") -> tuple[Image, Image]:
    """An RGB image and its depth (1-4 m, a function of the red channel), 4 ms apart."""
    rng = np.random.default_rng(index)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = (1.0 + 3.0 * rgb[..., 0] / 255.0).astype(np.float32)
    depth[:4] = np.nan  # some invalid pixels, as a real sensor has
    return _images(rgb, depth, stamp, depth_encoding)


def _images(rgb: np.ndarray, depth: np.ndarray, stamp: float, depth_encoding: str) -> tuple[Image, Image]:
    """The messages of ``rgb`` (H, W, 3 uint8) and ``depth`` (H, W metres), the depth stamped 4 ms later."""
    height, width = depth.shape
    step, data = encode_rgb(rgb)
    rgb_msg = Image(header=_header(stamp), height=height, width=width, encoding="rgb8", step=step, data=data)
    dstep, ddata = encode_depth(depth, depth_encoding)
    depth_msg = Image(header=_header(stamp + 0.004), height=height, width=width, encoding=depth_encoding,
                      step=dstep, data=ddata)
    return rgb_msg, depth_msg


class Feeder:
    """Publish RGB/depth pairs with increasing stamps from a probe node."""

    def __init__(self, probe, node: OnlineTrainerNode) -> None:
        self.node = node
        self.rgb = probe.create_publisher(Image, "image", 10)
        self.depth = probe.create_publisher(Image, "depth", 10)
        self.stamp = 1000.0
        self.index = 0
        wait_for(lambda: self.rgb.get_subscription_count() and self.depth.get_subscription_count(), TIMEOUT,
                 what="the trainer to subscribe")

    def send(self, count: int = 1, depth_encoding: str = "16UC1") -> None:
        """Publish ``count`` pairs, each once the previous one was paired."""
        for _ in range(count):
            self.stamp += 0.05
            self.index += 1
            self._publish(*_pair(self.index, self.stamp, depth_encoding))

    def send_frame(self, frame: Frame) -> None:
        """Publish ``frame``'s colour and depth (32FC1, metres) as a pair, once the previous one was paired."""
        self.stamp += 0.05
        self._publish(*_images(frame.rgb, frame.depth, self.stamp, "32FC1"))

    def _publish(self, rgb: Image, depth: Image) -> None:
        pairs = self.node.stats()["pairs"]
        self.rgb.publish(rgb)
        self.depth.publish(depth)
        wait_for(lambda: self.node.stats()["pairs"] > pairs, TIMEOUT, what="the pair to be paired")


@contextmanager
def running_trainer(checkpoint: Path, **params):
    """Yield ``(ros, node, probe)`` with a trainer and a probe node in one isolated context."""
    values = {"checkpoint": str(checkpoint), "device": "cpu", **FAST_ROUNDS, **params}
    overrides = [Parameter(name, value=value) for name, value in values.items()]
    with isolated_ros() as ros:
        node = ros.add_node(OnlineTrainerNode(context=ros.context, parameter_overrides=overrides))
        probe = ros.create_node("probe")
        yield ros, node, probe


def _call(probe, service: str, timeout: float = TIMEOUT) -> Trigger.Response:
    client = probe.create_client(Trigger, service)
    assert client.wait_for_service(timeout_sec=timeout), f"{service} not available"
    future = client.call_async(Trigger.Request())
    wait_for(future.done, timeout, what=f"{service} to answer")
    return future.result()


def _set_remote(probe, params: list[Parameter]):
    """Set parameters through the parameter services, as ``ros2 param set`` does."""
    client = AsyncParameterClient(probe, "online_trainer")
    assert client.wait_for_services(timeout_sec=TIMEOUT)
    future = client.set_parameters(params)
    wait_for(future.done, TIMEOUT, what="set_parameters to answer")
    return future.result().results


def test_every_parameter_has_its_default_in_live_yaml(checkpoint):
    assert set(parameter_descriptors()) == set(load_defaults("online_trainer"))
    with running_trainer(checkpoint) as (_, node, _probe):
        config = node.engine.config
        assert config.batch_size == FAST_ROUNDS["batch_size"] and config.train_size == (32, 32)
        assert config.lr == load_defaults("online_trainer")["lr"]
        assert node.engine.enabled is load_defaults("online_trainer")["adaptation_enabled"]


def test_adaptation_toggled_by_parameter_stops_and_resumes_weight_updates(checkpoint):
    with running_trainer(checkpoint) as (_, node, probe):
        weights = MessageCollector(probe, UInt8MultiArray, "weights", WEIGHTS_QOS)
        versions = MessageCollector(probe, UInt32, "online_trainer/weights_version")
        loss = MessageCollector(probe, Float32, "online_trainer/loss")
        fill = MessageCollector(probe, Float32, "online_trainer/buffer_fill")
        feeder = Feeder(probe, node)
        feeder.send(8)
        wait_for(lambda: node.engine.version >= 1, TIMEOUT, what="a first accepted round")
        weights.wait_for_count(1, TIMEOUT)
        wait_for(lambda: any(m.data >= 1 for m in versions.messages), TIMEOUT, what="~/weights_version >= 1")
        wait_for(lambda: any(np.isfinite(m.data) for m in loss.messages), TIMEOUT, what="a finite ~/loss")
        assert max(m.data for m in fill.messages) > 0

        assert all(r.successful for r in _set_remote(probe, [Parameter("adaptation_enabled", value=False)]))
        assert node.engine.enabled is False
        wait_for(lambda: not node.stats()["round_in_progress"], TIMEOUT, what="the running round to end")
        stopped_at, offered = node.engine.version, node.stats()["frames_offered"]
        feeder.send(9)
        assert node.stats()["frames_offered"] >= offered + 9  # frames are still buffered
        assert node.engine.version == stopped_at
        published = len(weights)

        assert all(r.successful for r in _set_remote(probe, [Parameter("adaptation_enabled", value=True)]))
        feeder.send(4)
        wait_for(lambda: node.engine.version > stopped_at, TIMEOUT, what="weights to update again")
        # by version, not count: a payload of stopped_at may still have been in flight
        wait_for(lambda: len(weights) > published
                 and int(read_payload(bytes(weights.messages[-1].data))[0]["version"]) > stopped_at,
                 TIMEOUT, interval=0.05, what="the new weights published")
        # the latest payload is a valid update for the base model
        model, _ = models.load_checkpoint(checkpoint, arch="fast")
        assert import_payload(model, bytes(weights.messages[-1].data)) > stopped_at


def test_reset_restores_the_base_weights_and_save_writes_a_loadable_checkpoint(checkpoint, tmp_path):
    # without the selection: a switch back to the (favoured) base would leave nothing to reset
    with running_trainer(checkpoint, checkpoint_dir=str(tmp_path / "saved"), select_best=False) as (_, node, probe):
        weights = MessageCollector(probe, UInt8MultiArray, "weights", WEIGHTS_QOS)
        Feeder(probe, node).send(8)
        wait_for(lambda: node.engine.version >= 1, TIMEOUT, what="an accepted round")
        node.set_parameters([Parameter("adaptation_enabled", value=False)])
        wait_for(lambda: not node.stats()["round_in_progress"], TIMEOUT, what="the running round to end")

        saved = _call(probe, "online_trainer/save")
        assert saved.success, saved.message
        path = Path(saved.message)
        assert path.parent == tmp_path / "saved" and path.suffix == ".safetensors"
        loaded, metadata = models.load_checkpoint(path, arch="fast")
        version, state = node.engine.state_dict()
        for name, tensor in loaded.state_dict().items():
            torch.testing.assert_close(tensor, state[name])
        assert f"_v{version}_" in path.name and "weights_version" in str(metadata)
        base, _ = models.load_checkpoint(checkpoint, arch="fast")
        assert any(not torch.equal(t, base.state_dict()[n]) for n, t in state.items())

        before = len(weights)
        answer = _call(probe, "online_trainer/reset")
        assert answer.success and "base weights" in answer.message
        # the reset's payload is the newest (a round's payload may still be in flight when it is sent)
        wait_for(lambda: len(weights) > before
                 and int(read_payload(bytes(weights.messages[-1].data))[0]["version"]) == node.engine.version,
                 TIMEOUT, what="the reset's payload")
        # an estimator holding any earlier version gets the base weights back exactly
        receiver, _ = models.load_checkpoint(path, arch="fast")
        assert import_payload(receiver, bytes(weights.messages[-1].data)) == node.engine.version
        for name, tensor in receiver.state_dict().items():
            torch.testing.assert_close(tensor, base.state_dict()[name])


def test_save_fails_cleanly_when_the_directory_cannot_be_written(checkpoint, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with running_trainer(checkpoint, checkpoint_dir=str(blocker / "sub")) as (_, node, probe):
        answer = _call(probe, "online_trainer/save")
        assert not answer.success and "checkpoint not saved" in answer.message
        # a read-only file system refuses even root
        assert node.set_parameters([Parameter("checkpoint_dir", value="/proc/depth_ckpt")])[0].successful
        answer = _call(probe, "online_trainer/save")
        assert not answer.success and "/proc/depth_ckpt" in answer.message
        assert not list(tmp_path.rglob("*.safetensors"))
        # the node keeps working
        node.set_parameters([Parameter("checkpoint_dir", value=str(tmp_path / "ok"))])
        assert _call(probe, "online_trainer/save").success


def test_live_parameter_changes_are_validated_with_a_reason(checkpoint):
    with running_trainer(checkpoint) as (_, node, probe):
        before = node.engine.config
        results = _set_remote(probe, [Parameter("min_new_frames", value=1)])  # holdout_frames is 1
        assert not results[0].successful and "min_new_frames" in results[0].reason
        refused = node.set_parameters_atomically(
            [Parameter("min_new_frames", value=3), Parameter("holdout_frames", value=3)]
        )
        assert not refused.successful and "min_new_frames must be > holdout_frames" in refused.reason
        refused = node.set_parameters([Parameter("scope", value="everything")])[0]
        assert not refused.successful and "decoder" in refused.reason
        refused = node.set_parameters([Parameter("buffer_capacity", value=64)])[0]
        assert not refused.successful and "read-only" in refused.reason
        refused = node.set_parameters([Parameter("lr", value="fast")])[0]
        assert not refused.successful
        refused = node.set_parameters([Parameter("sync_tolerance", value=-1.0)])[0]
        assert not refused.successful
        refused = node.set_parameters([Parameter("checkpoint_dir", value=__file__)])[0]
        assert not refused.successful and "not a directory" in refused.reason
        assert node.engine.config == before
        ok = node.set_parameters_atomically(
            [
                Parameter("lr", value=5e-4),
                Parameter("epochs_per_round", value=2),
                Parameter("sync_tolerance", value=0.01),
            ]
        )
        assert ok.successful
        assert node.engine.config.lr == 5e-4 and node.engine.config.epochs_per_round == 2
        assert node._pairer.tolerance == 0.01


def _bad_inputs() -> list[tuple[str, str, Image]]:
    """(expected drop key, topic, message) for every bad input kind."""
    rgb, depth = _pair(0, 0.0)
    cases = []

    def variant(key: str, topic: str, **fields) -> None:
        msg = _pair(0, 0.0)[0 if topic == "image" else 1]
        for name, value in fields.items():
            setattr(msg, name, value)
        cases.append((key, topic, msg))

    variant("image_bad_encoding", "image", encoding="8UC3_weird")
    variant("depth_bad_encoding", "depth", encoding="rgb8")
    variant("image_bad_data_length", "image", data=bytes(rgb.data)[:100])
    variant("depth_bad_data_length", "depth", data=bytes(depth.data) + b"\0\0")
    variant("image_zero_size", "image", height=0, step=0, data=b"")
    variant("depth_bad_step", "depth", step=W, data=bytes(depth.data)[: H * W])
    variant("image_too_large", "image", height=10000, width=10000, step=30000, data=b"\0" * 8)
    variant("size_mismatch", "depth", height=H // 2, data=bytes(depth.data)[: H // 2 * depth.step])
    zeros = np.zeros((H, W), np.uint16).tobytes()
    variant("depth_all_invalid", "depth", data=zeros)
    saturated = np.full((H, W), 65535, np.uint16).tobytes()  # absurd depths: all invalid
    variant("depth_all_invalid", "depth", data=saturated)
    nan = np.full((H, W), np.nan, np.float32).tobytes()
    variant("depth_all_invalid", "depth", encoding="32FC1", step=4 * W, data=nan)
    return cases


def test_every_bad_input_is_survived_counted_and_followed_by_a_good_pair(checkpoint):
    with running_trainer(checkpoint, adaptation_enabled=False, max_future_stamp=60.0) as (_, node, probe):
        feeder = Feeder(probe, node)
        expected: dict[str, int] = {}
        for key, topic, bad in _bad_inputs():
            feeder.stamp += 0.05
            good_rgb, good_depth = _pair(99, feeder.stamp)
            bad.header = (good_rgb if topic == "image" else good_depth).header
            (feeder.rgb if topic == "image" else feeder.depth).publish(bad)
            (feeder.depth if topic == "image" else feeder.rgb).publish(good_depth if topic == "image" else good_rgb)
            expected[key] = expected.get(key, 0) + 1
            wait_for(lambda: node.stats()["dropped"].get(key, 0) == expected[key], TIMEOUT, what=f"drop {key}")
            feeder.send(1)
        # stamps going backwards, repeated and from the far future, on each topic
        now = probe.get_clock().now().nanoseconds * 1e-9
        for key, stamp in (("stamp_backwards", feeder.stamp - 1.0), ("stamp_duplicate", feeder.stamp),
                           ("stamp_future", now + 3600.0)):
            rgb, depth = _pair(5, stamp)  # depth is 4 ms later, as in every good pair
            feeder.rgb.publish(rgb)
            feeder.depth.publish(depth)
            for topic in ("image", "depth"):
                wait_for(lambda: node.stats()["dropped"].get(f"{topic}_{key}", 0) == 1, TIMEOUT,
                         what=f"drop {topic}_{key}")
                expected[f"{topic}_{key}"] = 1
        feeder.send(2, depth_encoding="32FC1")
        assert node.stats()["dropped"] == expected
        # every good pair reaches the engine (`pairs` counts a pair before it is decoded and offered)
        wait_for(lambda: node.stats()["frames_offered"] == len(_bad_inputs()) + 2, TIMEOUT,
                 what="every good pair offered to the engine")


# SIGTERM is covered by test_estimator_node and both signals by test_live (the same main() shape)
@pytest.mark.parametrize("sig", [signal.SIGINT])
def test_main_exits_cleanly_on_signal_within_2_s(checkpoint, sig):
    code = "from depth_estimator_ros.ros.trainer_node import main; main()"
    argv = [sys.executable, "-c", code, "--ros-args", "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu"]
    with NodeProcess(argv, env={"RCUTILS_LOGGING_USE_STDOUT": "1"}) as child:
        child.wait_for_output("ready: online_trainer", timeout=60.0)  # spinning
        assert child.stop(timeout=2.0, sig=sig) == 0
        assert "Traceback" not in child.stderr + child.stdout


def test_main_refuses_unusable_parameters_without_a_traceback():
    code = "from depth_estimator_ros.ros.trainer_node import main; main()"
    argv = [sys.executable, "-c", code, "--ros-args", "-p", "arch:=resnet9000"]
    with NodeProcess(argv) as child:
        assert child.popen.wait(60.0) == 1
        assert "arch must be one of" in child.stderr + child.stdout
        assert "Traceback" not in child.stderr


def test_live_yaml_engine_settings_equal_the_adaptation_defaults():
    """config/live.yaml and AdaptationConfig must not drift apart (both are documented defaults)."""
    defaults = load_defaults("online_trainer")
    config = AdaptationConfig()
    assert defaults["adaptation_enabled"] == config.enabled
    for name, value in config_fields(defaults).items():
        assert value == getattr(config, name), name
    assert set(config_fields(defaults)) == {f.name for f in dataclasses.fields(AdaptationConfig)}


def test_cold_start_with_a_partial_scope_is_warned_about(capfd):
    for scope, warned in (("decoder", True), ("all", False)):
        with running_trainer("", scope=scope) as (_, node, _probe):
            assert node.engine.config.scope == scope
        err = capfd.readouterr().err
        assert ("keeps the untrained encoder" in err) is warned, err


def test_an_old_parameters_file_that_sets_the_removed_base_guard_is_warned_about_and_runs(checkpoint, tmp_path, capfd):
    old = tmp_path / "old.yaml"
    old.write_text("online_trainer:\n  ros__parameters:\n    base_guard: 0.1\n    base_guard_rounds: 2\n"
                   "    select_margin: 0.1\n", encoding="utf-8")
    overrides = [Parameter("checkpoint", value=str(checkpoint)), Parameter("device", value="cpu")]
    with isolated_ros() as ros:
        node = ros.add_node(OnlineTrainerNode(context=ros.context, parameter_overrides=overrides,
                                              cli_args=["--ros-args", "--params-file", str(old)]))
        assert node.engine.config.select_margin == 0.1  # the rest of the file applies
        assert not node.has_parameter("base_guard") and not node.has_parameter("base_guard_rounds")
        refused = _set_remote(ros.create_node("probe"), [Parameter("base_guard", value=0.1)])
        assert not refused[0].successful and "undeclared" in refused[0].reason, refused
    err = capfd.readouterr().err
    for name in ("base_guard", "base_guard_rounds"):
        assert f"parameter {name} is set but no longer exists and is ignored" in err, err
    assert "change_check_frames" in err and "Traceback" not in err


def test_a_looped_short_bag_keeps_pairing_after_each_time_reset(checkpoint):
    """The trainer's stamp guards take each pass of a looped 0.5 s bag as a time reset, not as 'backwards'."""
    with running_trainer(checkpoint, adaptation_enabled=False, max_future_stamp=0.0) as (_, node, probe):
        feeder = Feeder(probe, node)
        for loop in range(3):
            feeder.stamp = 1000.0 - 0.05  # send() steps 0.05 s before each pair
            feeder.send(6)
            assert node.stats()["time_resets"] == 2 * loop  # image and depth each start over
        assert node.stats()["pairs"] == 18
        assert not node.stats()["dropped"]


def _compressed(rgb_msg: Image, container: str) -> CompressedImage:
    """The colour image of ``rgb_msg`` as image_transport's compressed plugin publishes it (same header)."""
    rgb = np.frombuffer(bytes(rgb_msg.data), np.uint8).reshape(rgb_msg.height, rgb_msg.width, 3)
    fmt, data = encode_compressed_rgb(rgb, container)
    msg = CompressedImage(header=rgb_msg.header, format=fmt)
    msg.data = data
    return msg


def test_compressed_rgb_and_raw_depth_are_paired_by_stamp_and_buffered(checkpoint):
    with running_trainer(checkpoint, rgb_transport="compressed", adaptation_enabled=False) as (_, node, probe):
        wait_for(lambda: ("/image/compressed", ["sensor_msgs/msg/CompressedImage"])
                 in node.get_subscriber_names_and_types_by_node(node.get_name(), node.get_namespace()),
                 TIMEOUT, what="a CompressedImage subscription on /image/compressed")
        rgb_pub = probe.create_publisher(CompressedImage, "image/compressed", 10)
        depth_pub = probe.create_publisher(Image, "depth", 10)
        wait_for(lambda: rgb_pub.get_subscription_count() and depth_pub.get_subscription_count(), TIMEOUT,
                 what="the trainer to subscribe")
        stamp = 1000.0
        for index in range(1, 7):
            stamp += 0.05
            rgb, depth = _pair(index, stamp)  # depth 4 ms after the colour frame
            if index == 4:  # a truncated JPEG: its pair is dropped, counted under the colour image's reason
                bad = _compressed(rgb, "jpeg")
                bad.data = bytes(bad.data)[: len(bad.data) // 2]
                rgb_pub.publish(bad)
            else:
                rgb_pub.publish(_compressed(rgb, "png" if index % 2 else "jpeg"))
            depth_pub.publish(depth)
            wait_for(lambda: node.stats()["pairs"] == index, TIMEOUT, what=f"pair {index} paired by stamp")
            # decoded off the executor: wait for the decode thread to offer (or drop) it before the next pair
            wait_for(lambda: node.stats()["frames_offered"] + sum(node.stats()["dropped"].values()) == index,
                     TIMEOUT, what=f"pair {index} decoded")
        stats = node.stats()
        assert stats["dropped"] == {"image_corrupt_compressed": 1}
        assert (stats["frames_offered"], stats["buffer_fill"]) == (5, 5)
        assert stats["unpaired_pending"] == 0


def test_rgb_transport_other_than_raw_or_compressed_is_refused_at_start():
    with isolated_ros() as ros:
        with pytest.raises(ValueError, match="rgb_transport must be one of raw, compressed"):
            OnlineTrainerNode(context=ros.context, parameter_overrides=[Parameter("rgb_transport", value="theora")])


# ------------------------------------------------------------------ room memory
def _rooms(probe, service: str = "online_trainer/rooms/list") -> dict:
    answer = _call(probe, service)
    assert answer.success, answer.message
    return json.loads(answer.message)


def _diagnostic_values(collector: MessageCollector, predicate) -> dict[str, str]:
    """Wait for an ``online_trainer`` status whose values satisfy ``predicate``; return the values."""

    def found():
        for array in list(collector.messages):
            for status in array.status:
                values = {kv.key: kv.value for kv in status.values}
                if "online_trainer" in status.name and predicate(values):
                    return values
        return None

    return wait_for(found, TIMEOUT, what="an online_trainer status on /diagnostics")


def test_room_memory_is_saved_atomically_listed_reloaded_by_a_new_node_and_forgotten(checkpoint, tmp_path):
    folder = tmp_path / "rooms"
    # without the selection, whose switch back to the base (it favours the base) would race the checks
    with running_trainer(checkpoint, room_memory_dir=str(folder), room_save_period=0.2,
                         select_best=False) as (_, node, probe):
        diagnostics = MessageCollector(probe, DiagnosticArray, "/diagnostics")
        assert _rooms(probe) == {"in_force": "base", "folder": str(folder), "capacity": 8, "rooms": []}
        Feeder(probe, node).send(8)
        wait_for(lambda: node.engine.room is not None, TIMEOUT, what="an accepted round stored as a room")
        room = node.engine.room
        # saved by the node's own thread, without a service call
        wait_for(lambda: (folder / f"{room}.safetensors").exists(), TIMEOUT, what="the room's file")
        listed = _rooms(probe)
        assert listed["in_force"] == room and [r["name"] for r in listed["rooms"]] == [room]
        values = _diagnostic_values(diagnostics, lambda v: v.get("room") == room)
        assert values["rooms"] == "1" and values["rounds_switched"] == "0"
        assert values["room_memory_dir"] == str(folder) and values["room_memory_error"] == ""

        node.set_parameters([Parameter("adaptation_enabled", value=False)])
        wait_for(lambda: not node.stats()["round_in_progress"], TIMEOUT, what="the running round to end")
        saved = _call(probe, "online_trainer/rooms/save")
        assert saved.success and str(folder) in saved.message and f"{room}.safetensors" in saved.message
        delta = {k: v.clone() for k, v in node.engine.memory.get(room).delta.items()}
    assert sorted(p.name for p in folder.iterdir()) == [f"{room}.safetensors"]  # no temporary file left

    with running_trainer(checkpoint, room_memory_dir=str(folder), adaptation_enabled=False) as (_, node, probe):
        assert node.engine.memory.names() == [room]
        again = node.engine.memory.get(room).delta
        assert again.keys() == delta.keys() and all(torch.equal(again[k], v) for k, v in delta.items())
        assert _rooms(probe)["in_force"] == "base"  # remembered, not in force until a round selects it
        answer = _call(probe, "online_trainer/rooms/forget_active")
        assert not answer.success and "no remembered room in force" in answer.message
        answer = _call(probe, "online_trainer/rooms/forget")
        assert answer.success and room in answer.message and "files deleted" in answer.message, answer.message
        assert _rooms(probe)["rooms"] == [] and node.stats()["rooms"] == 0
        assert not list(folder.iterdir())


def test_room_memory_in_ros_home_by_default_and_not_persisted_with_none(checkpoint, ros_home):
    with running_trainer(checkpoint, adaptation_enabled=False) as (_, node, _probe):
        assert node.stats()["room_memory_dir"] == str(ros_home / "depth_estimator_ros" / "rooms")
    with running_trainer(checkpoint, room_memory_dir="none") as (_, node, probe):
        Feeder(probe, node).send(8)
        wait_for(lambda: node.engine.room is not None, TIMEOUT, what="an accepted round stored as a room")
        assert _rooms(probe)["folder"] is None and len(_rooms(probe)["rooms"]) == 1
        answer = _call(probe, "online_trainer/rooms/save")
        assert not answer.success and "not persisted" in answer.message
        assert _call(probe, "online_trainer/rooms/forget_active").success
        assert node.stats()["rooms"] == 0 and node.stats()["room"] == "adapted, not remembered"
    assert not (ros_home / "depth_estimator_ros").exists()


def test_corrupt_and_foreign_room_files_are_refused_with_the_reason_and_the_node_runs_on_the_base(
    checkpoint, tmp_path, capfd
):
    model, _ = models.load_checkpoint(checkpoint, arch="fast")
    state = model.state_dict()
    decoder = {k: v * 1.01 for k, v in state.items() if k.startswith("decoder.") and v.is_floating_point()}
    folder = tmp_path / "rooms"
    good = RoomMemory(state, "fast")
    good.store("room-1", decoder)
    good.save(folder)
    foreign = RoomMemory(state, "vgg16_coarse")  # another architecture's room
    foreign.store("room-2", decoder)
    foreign.save(folder)
    (folder / "room-3.safetensors").write_bytes(b"\x80\x04 truncated by a power cut")
    with running_trainer(checkpoint, room_memory_dir=str(folder)) as (_, node, probe):
        assert node.engine.memory.names() == ["room-1"]
        assert node.stats()["room"] == "base" and node.engine.version == 0
        Feeder(probe, node).send(8)  # the node keeps working
        wait_for(lambda: node.engine.version >= 1, TIMEOUT, what="an accepted round")
    err = capfd.readouterr().err
    assert "room-2.safetensors: a room of arch 'vgg16_coarse', this model is 'fast'" in err, err
    assert "room-3.safetensors: not a readable safetensors file" in err, err
    assert err.count("the node goes on without it") == 2
    assert (folder / "room-2.safetensors").exists() and (folder / "room-3.safetensors").exists()  # never deleted


def test_a_return_visit_after_a_restart_restores_the_room_and_an_estimator_elsewhere_receives_it(checkpoint, tmp_path):
    """Room A (the synthetic room at 0.4x its depth), then room B (the true room); a restart; A again."""
    rooms = SyntheticRooms(seed=8, frames=48, width=64, height=48)
    frames = [rooms[i] for i in range(len(rooms))]
    a = [dataclasses.replace(f, depth=f.depth * 0.4) for f in frames[:24]]
    rounds = {"min_new_frames": 6, "max_new_frames": 6, "holdout_frames": 2, "batch_size": 4, "epochs_per_round": 3,
              "room_memory_dir": str(tmp_path / "rooms"), "room_save_period": 0.0}

    def visit(node, stream) -> list[str | None]:
        seen = []
        for start in range(0, len(stream), 6):
            done = node.stats()["rounds_run"]
            for frame in stream[start : start + 6]:
                node.engine.offer(frame)
            wait_for(lambda: node.stats()["rounds_run"] > done and not node.stats()["round_in_progress"], TIMEOUT,
                     what="the round on the new frames")
            seen.append(node.engine.room)
        return seen

    with running_trainer(checkpoint, **rounds) as (_, node, _probe):
        in_a = visit(node, a[:18])
        in_b = visit(node, frames[24:48])
        room_a, room_b = in_a[-1], in_b[-1]
        assert room_a is not None and room_b not in (None, room_a), (in_a, in_b)
    # saved at shutdown (room_save_period 0): both rooms, reloaded by the next node

    estimator_overrides = [Parameter("checkpoint", value=str(checkpoint)), Parameter("device", value="cpu"),
                           Parameter("backend", value="torch")]
    with isolated_ros() as elsewhere:  # an estimator in a context (a DDS participant) of its own
        estimator = elsewhere.add_node(DepthEstimatorNode(context=elsewhere.context,
                                                          parameter_overrides=estimator_overrides))
        with running_trainer(checkpoint, **rounds) as (_, node, probe):
            assert {room_a, room_b} <= set(node.engine.memory.names())  # B may have left a room of its first rounds
            weights = MessageCollector(probe, UInt8MultiArray, "weights", WEIGHTS_QOS)
            assert visit(node, a[18:24]) == [room_a]  # the first round of the return visit selects A
            assert node.stats()["rounds_switched"] == 1
            version = node.engine.version
            # the switch is published in full, at once (before the round trains): every tensor, so any
            # receiver ends with A's weights; the round's own update (a delta) may follow it
            payload = bytes(weights.wait_for_count(1, TIMEOUT)[0].data)
            meta, tensors = read_payload(payload)
            assert tensors.keys() == node.engine.base_state.keys()
            wait_for(lambda: estimator.weights_version == version, TIMEOUT, what="the estimator to receive A")
            expected = {**node.engine.base_state, **node.engine.memory.get(room_a).delta}
            received = estimator.model.state_dict()
            for name, tensor in expected.items():
                torch.testing.assert_close(received[name], tensor, msg=name)
            other = node.engine.memory.get(room_b).delta
            assert any(not torch.equal(received[k], v) for k, v in other.items())


def test_the_room_memory_is_published_on_rooms_after_an_accepted_round(checkpoint, monkeypatch):
    from depth_estimator_ros.ros import trainer_node

    monkeypatch.setattr(trainer_node, "ROOMS_PUBLISH_PERIOD_S", 0.2)
    with running_trainer(checkpoint, room_memory_dir="none", select_best=False) as (_, node, probe):
        blobs = MessageCollector(probe, UInt8MultiArray, "rooms", WEIGHTS_QOS)
        wait_for(lambda: node.count_subscribers("rooms") > 0, TIMEOUT, what="the probe to subscribe to rooms")
        assert len(blobs) == 0  # an empty memory is not published
        Feeder(probe, node).send(8)
        wait_for(lambda: node.engine.room is not None, TIMEOUT, what="an accepted round stored as a room")
        room = node.engine.room

        def received() -> bool:
            if not blobs.messages:
                return False
            memory = RoomMemory(node.engine.base_state, "fast")
            return memory.load_bytes(bytes(blobs.messages[-1].data))[0] == [room]

        wait_for(received, TIMEOUT, what=f"a blob holding {room} on rooms")
        # counted by the sending thread once publish() returns, which can be after the probe received it
        wait_for(lambda: node.stats()["rooms_published"] >= 1, TIMEOUT, what="the publication counted")


def _payload_tensors(weights: MessageCollector, version: int) -> dict[str, torch.Tensor] | None:
    """Return the tensors of weights ``version`` once received on ``weights``, else None.

    By version, not by position: room A's last payload is published by the sending thread
    and may reach a late-joining collector after it counted the latched one.
    """
    for message in list(weights.messages):
        metadata, tensors = read_payload(bytes(message.data))
        if int(metadata["version"]) == version:
            return tensors
    return None


def test_the_selection_returns_to_the_base_on_live_frames_where_the_weights_in_force_are_worse(checkpoint):
    """Adapted to room A (the synthetic room at 0.4x its depth), the trainer sees the true room:
    the first round there scores A's weights worse than the base on its new frames, switches to
    the base and publishes it in full at once, before training; /diagnostics counts the switch."""
    rooms = SyntheticRooms(seed=8, frames=48, width=64, height=48)
    frames = [rooms[i] for i in range(len(rooms))]
    a = [dataclasses.replace(f, depth=f.depth * 0.4) for f in frames[:18]]
    settings = {"min_new_frames": 6, "max_new_frames": 6, "holdout_frames": 2, "batch_size": 4,
                "epochs_per_round": 3, "room_memory_dir": "none"}

    def one_round(node, stream) -> None:
        done = node.stats()["rounds_run"]
        for frame in stream:
            node.engine.offer(frame)
        wait_for(lambda: node.stats()["rounds_run"] > done and not node.stats()["round_in_progress"], TIMEOUT,
                 what="the round on the new frames")

    with running_trainer(checkpoint, **settings) as (_, node, probe):
        for start in range(0, 18, 6):
            one_round(node, a[start : start + 6])
        room_a = node.engine.room
        assert room_a is not None and node.stats()["rounds_switched"] == 0
        weights = MessageCollector(probe, UInt8MultiArray, "weights", WEIGHTS_QOS)
        diagnostics = MessageCollector(probe, DiagnosticArray, "/diagnostics")
        version = node.engine.version
        one_round(node, frames[24:30])
        assert node.stats()["rounds_switched"] == 1 and node.engine.room != room_a
        tensors = wait_for(lambda: _payload_tensors(weights, version + 1), TIMEOUT, interval=0.05,
                           what="the switch's payload")
        assert tensors.keys() == node.engine.base_state.keys()  # in full: every tensor
        base, _ = models.load_checkpoint(checkpoint, arch="fast")
        for name, tensor in base.state_dict().items():
            torch.testing.assert_close(tensors[name], tensor, msg=name)  # the base, exactly
        values = _diagnostic_values(diagnostics, lambda v: v.get("rounds_switched") == "1")
        assert values["rooms"] in ("1", "2")  # A stays remembered (and the true room's first round may add one)


def test_the_change_check_returns_a_trainer_adapted_to_another_room_to_the_base_within_a_few_live_frames(
    checkpoint, capfd
):
    """Adapted to room A (the synthetic room at 0.4x its depth), the trainer receives the true
    room on its topics: the change check, not a round, scores A's weights worse than the base
    on the newest pairs within two checks, switches to the base and publishes it in full; the
    log and /diagnostics say so. (The selection's counterpart is the test above.)"""
    rooms = SyntheticRooms(seed=8, frames=48, width=64, height=48)
    frames = [rooms[i] for i in range(len(rooms))]
    a = [dataclasses.replace(f, depth=f.depth * 0.4) for f in frames[:18]]
    check = 4
    settings = {"min_new_frames": 6, "max_new_frames": 6, "holdout_frames": 2, "batch_size": 4,
                "epochs_per_round": 3, "room_memory_dir": "none", "change_check_frames": check}
    with running_trainer(checkpoint, **settings) as (_, node, probe):
        feeder = Feeder(probe, node)
        for start in range(0, 18, 6):
            done = node.stats()["rounds_run"]
            for frame in a[start : start + 6]:
                feeder.send_frame(frame)
            wait_for(lambda: node.stats()["rounds_run"] > done and not node.stats()["round_in_progress"], TIMEOUT,
                     what="the round on room A's new frames")
        room_a = node.engine.room
        assert room_a is not None and node.stats()["rounds_switched"] == 0
        # No round on the true room's pairs: only the change check can switch (the buffer holds 16 frames).
        limit = FAST_ROUNDS["buffer_capacity"]
        assert all(r.successful for r in node.set_parameters(
            [Parameter("max_new_frames", value=limit), Parameter("min_new_frames", value=limit)]))
        weights = MessageCollector(probe, UInt8MultiArray, "weights", WEIGHTS_QOS)
        diagnostics = MessageCollector(probe, DiagnosticArray, "/diagnostics")
        version, rounds = node.engine.version, node.stats()["rounds_run"]
        # The first check may still score a few of A's pairs with the true room's; the second
        # is due by the true room's 5th pair and scores only its pairs.
        for frame in frames[24 : 24 + 2 * check]:
            feeder.send_frame(frame)
        tensors = wait_for(lambda: _payload_tensors(weights, version + 1), TIMEOUT, interval=0.05,
                           what="the change check's switch to be published")
        stats = node.stats()  # the switch is in force and counted before it is published
        assert stats["rounds_switched"] == 1 and stats["rounds_run"] == rounds and stats["room"] == "base", stats
        assert tensors.keys() == node.engine.base_state.keys()  # in full: every tensor
        base, _ = models.load_checkpoint(checkpoint, arch="fast")
        for name, tensor in base.state_dict().items():
            torch.testing.assert_close(tensors[name], tensor, msg=name)  # the base, exactly
        values = _diagnostic_values(diagnostics, lambda v: v.get("rounds_switched") == "1")
        assert values["room"] == "base"
    assert "switched to base" in capfd.readouterr().err
