"""Reliability (issue 7): bad input, unusable parameters and files, and load, across the nodes and CLIs.

Each test drives the real code paths (real rclpy in isolated contexts, real files in
``tmp_path``) and asserts that the bad thing is refused with its reason, counted, and
that nothing else changes. docs/RELIABILITY.md maps every case of issue 7 to its test.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import pickle
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from builtin_interfaces.msg import Time
from rclpy.parameter import Parameter
from ros_helpers import FAST_ROUNDS, MessageCollector, isolated_ros, wait_for
from ros_helpers import stamped_header as _header
from safetensors import safe_open
from safetensors.torch import save as safetensors_save
from sensor_msgs.msg import Image
from std_msgs.msg import UInt8MultiArray

from depth_estimator_ros import models
from depth_estimator_ros.adaptation.payload import (
    PayloadError,
    export_payload,
    import_payload,
    read_payload,
)
from depth_estimator_bench.roshelpers import PacedPublisher, stamp_ns
from depth_estimator_bench.cli import evaluate as evaluate_cli
from depth_estimator_ros.cli import make_bag as make_bag_cli
from depth_estimator_bench.cli import train as train_cli
from depth_estimator_ros.data.image_encoding import encode_depth, encode_rgb
from depth_estimator_ros.ros import codec
from depth_estimator_ros.ros.estimator_node import DepthEstimatorNode
from depth_estimator_ros.ros.qos import SENSOR_QOS, WEIGHTS_QOS
from depth_estimator_ros.ros.trainer_node import OnlineTrainerNode

H, W = 48, 64
TIMEOUT = 20.0


def _rgb(seed: int, height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _image(rgb: np.ndarray, stamp: float, encoding: str = "rgb8", bigendian: int = 0) -> Image:
    step, data = encode_rgb(rgb, encoding)
    return Image(header=_header(stamp), height=rgb.shape[0], width=rgb.shape[1], encoding=encoding,
                 is_bigendian=bigendian, step=step, data=data)


def _depth_image(depth: np.ndarray, stamp: float, encoding: str = "32FC1") -> Image:
    step, data = encode_depth(depth, encoding) if encoding == "16UC1" else (4 * depth.shape[1], depth.tobytes())
    return Image(header=_header(stamp), height=depth.shape[0], width=depth.shape[1], encoding=encoding, step=step,
                 data=data)


@contextlib.contextmanager
def _estimator(checkpoint: Path, **params) -> Iterator[tuple[DepthEstimatorNode, object]]:
    """Yield ``(estimator, probe)`` spun in one isolated multi-threaded context."""
    values = {"checkpoint": str(checkpoint), "device": "cpu", **params}
    with isolated_ros() as ros:
        node = ros.add_node(DepthEstimatorNode(
            context=ros.context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]
        ))
        yield node, ros.create_node("probe")


def _answer(pub, depth: MessageCollector, msg: Image) -> np.ndarray:
    """Publish ``msg`` and return the estimator's depth for it."""
    before = len(depth)
    wait_for(lambda: pub.get_subscription_count() > 0, TIMEOUT, what="the estimator to subscribe")
    pub.publish(msg)
    depth.wait_for_count(before + 1, TIMEOUT)
    return codec.image_to_depth(depth.messages[before])


# --------------------------------------------------------------------------- images
@pytest.mark.parametrize("encoding", ["rgb8", "16UC1", "32FC1"])
@pytest.mark.parametrize("max_pixels", [4_194_304, None])
def test_10000x10000_image_is_refused_before_anything_is_allocated(encoding, max_pixels):
    msg = Image(height=10_000, width=10_000, encoding=encoding, step=10_000 * (3 if encoding == "rgb8" else 4),
                data=b"\0" * 16)
    decode = codec.image_to_rgb if encoding == "rgb8" else codec.image_to_depth
    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    try:
        with pytest.raises(codec.ImageDecodeError) as refused:
            decode(msg, max_pixels=max_pixels)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024, f"{peak} bytes allocated while refusing a 10000x10000 header"
    if max_pixels is None:  # no limit: the data length check still refuses it, also without allocating
        assert "data" in str(refused.value)
    else:
        assert "exceeds the limit of 4194304 pixels" in str(refused.value)
        assert refused.value.reason == "too_large"  # the nodes' diagnostics key, carried by the error


def test_odd_big_endian_flags_mean_big_endian_and_do_not_matter_for_8_bit(checkpoint):
    depth = np.linspace(0.5, 9.5, H * W, dtype=np.float32).reshape(H, W)
    for encoding, dtype in (("16UC1", ">u2"), ("32FC1", ">f4")):
        values = (depth * 1000).round() if encoding == "16UC1" else depth
        big = values.astype(dtype).tobytes()
        expected = codec.image_to_depth(Image(height=H, width=W, encoding=encoding, is_bigendian=1,
                                              step=W * np.dtype(dtype).itemsize, data=big))
        np.testing.assert_allclose(expected, depth, atol=5e-4 if encoding == "16UC1" else 0.0)
        for flag in (2, 7, 255):  # a uint8 field: any non-zero value says big-endian
            odd = Image(height=H, width=W, encoding=encoding, is_bigendian=flag, step=W * np.dtype(dtype).itemsize,
                        data=big)
            np.testing.assert_array_equal(codec.image_to_depth(odd), expected)
    rgb = _rgb(1)
    with _estimator(checkpoint) as (node, probe):
        pub = probe.create_publisher(Image, "image", 10)
        out = MessageCollector(probe, Image, "depth/image")
        reference = _answer(pub, out, _image(rgb, 10.0))
        for i, flag in enumerate((1, 2, 255)):
            np.testing.assert_array_equal(_answer(pub, out, _image(rgb, 11.0 + i, "bgr8", flag)), reference)
        assert node.stats()["dropped"] == {}


@contextlib.contextmanager
def _trainer(checkpoint: Path, **params) -> Iterator[tuple[OnlineTrainerNode, object]]:
    values = {"checkpoint": str(checkpoint), "device": "cpu", **FAST_ROUNDS, **params}
    with isolated_ros() as ros:
        node = ros.add_node(OnlineTrainerNode(
            context=ros.context, parameter_overrides=[Parameter(k, value=v) for k, v in values.items()]
        ))
        yield node, ros.create_node("probe")


def test_trainer_drops_depth_that_is_inf_negative_or_beyond_the_model_range(checkpoint):
    good = np.full((H, W), 2.5, np.float32)
    half_negative = good.copy()
    half_negative[: H // 2] = -1.0
    cases = [  # (depth, drop key in the node or None, engine counter expected to move)
        (np.full((H, W), np.inf, np.float32), "depth_all_invalid", None),
        (np.full((H, W), -np.inf, np.float32), "depth_all_invalid", None),
        (np.full((H, W), -2.0, np.float32), "depth_all_invalid", None),
        (np.full((H, W), 1000.0, np.float32), None, "frames_dropped_invalid"),  # 1 km: beyond max_depth 10 m
        (half_negative, None, "frames_kept"),  # negative pixels are invalid, the rest is used
        (good, None, "frames_kept"),
    ]
    with _trainer(checkpoint, adaptation_enabled=False) as (node, probe):
        rgb_pub = probe.create_publisher(Image, "image", 10)
        depth_pub = probe.create_publisher(Image, "depth", 10)
        wait_for(lambda: rgb_pub.get_subscription_count() and depth_pub.get_subscription_count(), TIMEOUT,
                 what="the trainer to subscribe")
        for index, (depth, drop, counter) in enumerate(cases):
            stats = node.stats()
            stamp = 100.0 + index
            rgb_pub.publish(_image(_rgb(index), stamp))
            depth_pub.publish(_depth_image(depth, stamp + 0.004))
            wait_for(lambda: node.stats()["pairs"] == stats["pairs"] + 1, TIMEOUT, what=f"pair {index}")
            if drop is not None:
                wait_for(lambda: node.stats()["dropped"].get(drop, 0) == stats["dropped"].get(drop, 0) + 1,
                         TIMEOUT, what=f"drop {drop}")
                assert node.stats()["frames_offered"] == stats["frames_offered"]
            else:
                wait_for(lambda: node.stats()[counter] == stats.get(counter, 0) + 1, TIMEOUT, what=counter)
        assert node.stats()["dropped"] == {"depth_all_invalid": 3}
        assert node.stats()["frames_kept"] == 2


# ------------------------------------------------------------- parameters and files
class _Bait:
    """Unpickling this creates ``path``: proof that a file was (or was never) unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def _pickles(folder: Path, marker: Path) -> dict[str, Path]:
    """Files whose unpickling would create ``marker``: three pickle protocols and a torch.save zip."""
    files = {}
    for protocol in (0, 2, 5):
        files[f"pickle{protocol}"] = folder / f"bait_p{protocol}.safetensors"
        files[f"pickle{protocol}"].write_bytes(pickle.dumps(_Bait(marker), protocol=protocol))
    files["torch_save"] = folder / "bait_torch.safetensors"
    torch.save({"state_dict": _Bait(marker)}, files["torch_save"])
    return files


def test_the_pickle_bait_really_runs_code_when_unpickled(tmp_path):
    control = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(_Bait(control)))
    assert control.exists()  # so the absence of the real marker below means "never unpickled"


def _rewritten(path: Path, out: Path, change) -> Path:
    with safe_open(str(path), framework="pt") as handle:
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
        metadata = dict(handle.metadata())
    change(tensors, metadata)
    out.write_bytes(safetensors_save(tensors, metadata=metadata))
    return out


_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2  # linux/capability.h
_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


@contextlib.contextmanager
def _file_permissions_enforced() -> Iterator[None]:
    """Run the body with this thread's file-permission override dropped (root reads any file otherwise).

    Only the calling thread loses ``CAP_DAC_OVERRIDE`` / ``CAP_DAC_READ_SEARCH`` from its
    effective set (Linux capabilities are per thread); it keeps its uid, so it still reads
    whatever its owner bits allow: the checkout, the Python installation and every module
    a code path may import on first use. Switching the whole process to another user
    instead (``seteuid``) made the result depend on where the checkout lies (a folder that
    user may not enter) and on what other threads or a first import do meanwhile.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)  # pid 0: the calling thread
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    saved = data[0].effective
    data[0].effective = saved & ~((1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    try:
        yield
    finally:
        data[0].effective = saved
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed restoring the capabilities")


def _bad_checkpoints(folder: Path, good: Path, marker: Path) -> list[tuple[str, Path, dict, str]]:
    """(case, path, extra parameters, expected reason) for every unusable ``checkpoint`` parameter."""
    data = good.read_bytes()
    (folder / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    (folder / "random.safetensors").write_bytes(np.random.default_rng(3).integers(0, 256, 4096, np.uint8).tobytes())
    (folder / "a_directory.safetensors").mkdir()

    def poison(tensors, metadata):
        name = next(k for k, v in sorted(tensors.items()) if v.is_floating_point())
        tensors[name] = torch.full_like(tensors[name], float("nan"))

    def reshape(tensors, metadata):
        tensors["decoder.head.bias"] = torch.zeros(2)

    cases = [
        ("missing", folder / "nowhere.safetensors", {}, "does not exist or is not a file"),
        ("directory", folder / "a_directory.safetensors", {}, "does not exist or is not a file"),
        ("truncated", folder / "truncated.safetensors", {}, "truncated"),
        ("random_bytes", folder / "random.safetensors", {}, "not a safetensors checkpoint"),
        ("other_arch", good, {"arch": "vgg16_coarse"}, "checkpoint is for 'fast', expected 'vgg16_coarse'"),
        ("other_shape", _rewritten(good, folder / "shape.safetensors", reshape), {}, r"decoder.head.bias \(2,\)"),
        ("nan", _rewritten(good, folder / "nan.safetensors", poison), {}, "NaN/inf"),
    ]
    cases += [(name, path, {}, "pickle|not a safetensors") for name, path in _pickles(folder, marker).items()]
    return cases


@pytest.mark.parametrize("node_class", [DepthEstimatorNode, OnlineTrainerNode])
def test_unusable_checkpoint_parameters_are_refused_with_the_reason_and_nothing_unpickled(
    node_class, checkpoint, tmp_path
):
    marker = tmp_path / "UNPICKLED"
    cases = _bad_checkpoints(tmp_path, checkpoint, marker)
    # unreadable: a file that exists but that nobody may read (mode 000; root too, once the
    # permission override of the thread is dropped)
    unreadable = tmp_path / "locked.safetensors"
    unreadable.write_bytes(checkpoint.read_bytes())
    unreadable.chmod(0o000)
    try:
        with isolated_ros() as ros:
            for case, path, params, reason in cases:
                overrides = [Parameter("checkpoint", value=str(path)), Parameter("device", value="cpu")]
                overrides += [Parameter(k, value=v) for k, v in params.items()]
                with pytest.raises(ValueError, match=reason):
                    node_class(context=ros.context, parameter_overrides=overrides)
                    pytest.fail(f"checkpoint case {case!r} was accepted")
            with _file_permissions_enforced():
                with pytest.raises(OSError):  # the test itself cannot read it: the node is refused the same way
                    unreadable.read_bytes()
                with pytest.raises(ValueError, match="cannot read checkpoint.*Permission denied"):
                    node_class(context=ros.context, parameter_overrides=[Parameter("checkpoint", value=str(unreadable))])
    finally:
        unreadable.chmod(0o600)
    assert not marker.exists(), "a pickle was unpickled"
    for _, path, params, _ in cases:  # also straight through the loader, with and without an expected arch
        for arch in [params["arch"]] if "arch" in params else [None, "fast"]:
            with pytest.raises(models.CheckpointError):
                models.load_checkpoint(path, arch=arch)
    assert not marker.exists(), "a pickle was unpickled"


def _adapted_payload(checkpoint: Path, version: int) -> tuple[bytes, models.DepthModel]:
    model, _ = models.load_checkpoint(checkpoint, arch="fast")
    base = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(version)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return export_payload(model, version, base_state=base), model


def _bad_payloads(checkpoint: Path, good: bytes, marker: Path, folder: Path) -> list[tuple[str, bytes]]:
    metadata, tensors = read_payload(good)
    first = next(k for k in sorted(tensors) if tensors[k].is_floating_point())

    def forged(**changes) -> bytes:
        t = dict(tensors)
        t.update(changes)
        return safetensors_save(t, metadata={**metadata, "tensors": json.dumps(sorted(t))})

    other_size = models.build_model("fast", input_size=(32, 32))
    cases = [
        ("truncated", good[: len(good) // 3]),
        ("empty", b""),
        ("other_arch", export_payload(other_size, 11, arch="vgg16_coarse_conv")),
        ("other_config", export_payload(other_size, 12)),
        ("other_shape", forged(**{first: torch.zeros(1, *tensors[first].shape)})),
        ("nan", forged(**{first: torch.full_like(tensors[first], float("nan"))})),
    ]
    cases += [(name, path.read_bytes()) for name, path in _pickles(folder, marker).items()]
    return cases


def test_bad_weight_payloads_are_refused_and_the_previous_weights_stay(checkpoint, tmp_path):
    marker = tmp_path / "UNPICKLED"
    good, _ = _adapted_payload(checkpoint, 3)
    bad = _bad_payloads(checkpoint, good, marker, tmp_path)
    receiver, _ = models.load_checkpoint(checkpoint, arch="fast")
    for case, payload in bad:
        with pytest.raises(PayloadError):
            import_payload(receiver, payload)
            pytest.fail(f"payload case {case!r} was imported")
    rgb = _rgb(7)
    with _estimator(checkpoint) as (node, probe):
        weights_pub = probe.create_publisher(UInt8MultiArray, "weights", WEIGHTS_QOS)
        weights_pub.publish(UInt8MultiArray(data=good))
        wait_for(lambda: node.weights_version == 3, TIMEOUT, what="weights version 3")
        pub = probe.create_publisher(Image, "image", 10)
        out = MessageCollector(probe, Image, "depth/image")
        before = _answer(pub, out, _image(rgb, 1.0))
        for index, (case, payload) in enumerate(bad, start=1):
            weights_pub.publish(UInt8MultiArray(data=payload))
            wait_for(lambda: node.stats()["weights_rejected"] == index, TIMEOUT, what=f"payload {case} refused")
            assert node.weights_version == 3, case
        np.testing.assert_array_equal(_answer(pub, out, _image(rgb, 2.0)), before)
    assert not marker.exists(), "a pickle payload was unpickled"


# ------------------------------------------------------------------- CLI data files
def _seven_scenes(folder: Path, frames: int, bad: int, kind: str) -> Path:
    """A tiny 7-Scenes folder whose frame ``bad`` has a missing / unreadable / 8-bit file."""
    folder.mkdir()
    for i in range(frames):
        rgb = _rgb(i, 24, 32)
        cv2.imwrite(str(folder / f"frame-{i:06d}.color.jpg"), rgb)
        cv2.imwrite(str(folder / f"frame-{i:06d}.depth.png"), (1000.0 + 8.0 * rgb[..., 0]).astype(np.uint16))
    if kind == "missing_pair":
        (folder / f"frame-{bad:06d}.depth.png").unlink()
        return folder / f"frame-{bad:06d}.color.jpg"
    if kind == "unreadable_image":
        (folder / f"frame-{bad:06d}.color.jpg").write_bytes(b"\xff\xd8\xff broken jpeg")
        return folder / f"frame-{bad:06d}.color.jpg"
    cv2.imwrite(str(folder / f"frame-{bad:06d}.depth.png"), np.full((24, 32), 3, np.uint8))  # wrong bit depth
    return folder / f"frame-{bad:06d}.depth.png"


@pytest.mark.parametrize("kind", ["missing_pair", "unreadable_image", "wrong_bit_depth"])
def test_cli_data_file_problems_name_the_file_and_exit_non_zero(kind, tmp_path, capsys):
    data = tmp_path / "scene"
    bad_file = _seven_scenes(data, 12, 5, kind)  # frame 5 is in the seeded training split
    expected = {"missing_pair": "missing depth image", "unreadable_image": "not a readable image",
                "wrong_bit_depth": "depth image is 8-bit uint8, expected 16-bit"}[kind]
    torch.manual_seed(0)
    ckpt = tmp_path / "fast32.safetensors"
    models.save_checkpoint(ckpt, models.build_model("fast", input_size=(32, 32)))
    runs = {
        "make_bag": (make_bag_cli.main, ["--source", str(data), "--out", str(tmp_path / "bag")], 2),
        "evaluate": (evaluate_cli.main, ["--checkpoint", str(ckpt), "--data", str(data), "--out",
                                         str(tmp_path / "eval"), "--panels", "0", "--device", "cpu", "--quiet"], 2),
        "train": (train_cli.main, ["--data", str(data), "--input-size", "32", "32", "--epochs", "1",
                                   "--micro-batch", "4", "--out", str(tmp_path / "train"), "--device", "cpu",
                                   "--quiet"], 2),
    }
    for prog, (main, argv, status) in runs.items():
        capsys.readouterr()
        assert main(argv) == status, prog
        err = capsys.readouterr().err
        assert f"{prog}: error: {bad_file}: {expected}" in err, err
        assert "Traceback" not in err
    assert not (tmp_path / "bag").exists()  # no partial bag is left to be mistaken for a recording


# --------------------------------------------------------------------------- load
def test_estimator_under_a_60_hz_vga_stream_drops_stale_frames_instead_of_queueing(checkpoint, tmp_path):
    # the default 192x256 model input: slower than 60 Hz on a small CPU, so frames must be dropped
    torch.manual_seed(0)
    slow = tmp_path / "fast_default.safetensors"
    models.save_checkpoint(slow, models.build_model("fast"))
    frames = [_image(_rgb(i, 480, 640), 0.0) for i in range(4)]
    with _estimator(slow) as (node, probe):
        pub = probe.create_publisher(Image, "image", SENSOR_QOS)
        answers: list[tuple[int, int]] = []  # (stamp ns, receipt ns)
        lock = threading.Lock()

        def on_depth(msg: Image) -> None:
            with lock:
                answers.append((stamp_ns(msg.header.stamp), time.time_ns()))

        probe.create_subscription(Image, "depth/image", on_depth, 10)
        wait_for(lambda: pub.get_subscription_count() > 0, TIMEOUT, what="the estimator to subscribe")

        def publish(index: int, stamp) -> None:
            msg = frames[index % len(frames)]
            msg.header.stamp = stamp
            pub.publish(msg)

        def answered() -> list[int]:
            with lock:
                return [stamp for stamp, _ in answers]

        publisher = PacedPublisher(60.0, publish).start()
        try:
            wait_for(answered, TIMEOUT, what="a first answer")
            load = len(publisher.sent_stamps()) + 180  # the load itself: 3 s of 60 Hz VGA frames
            wait_for(lambda: len(publisher.sent_stamps()) >= load, 3 * TIMEOUT, what="180 more frames sent")
        finally:
            publisher.stop()
        stopped = time.time_ns()
        sent = len(publisher.sent_stamps())
        # One more frame closes the stream: the estimator answers in arrival order and keeps only
        # the newest frame waiting, so once this one is answered every frame of the stream was
        # answered or dropped stale before it, and none can still come.
        marker = time.time_ns()
        publish(sent, Time(sec=marker // 1_000_000_000, nanosec=marker % 1_000_000_000))
        wait_for(lambda: marker in answered(), TIMEOUT, what="the answer to the closing frame")

        def final_stats() -> dict | None:
            stats = node.stats()  # frames_processed counts a frame once its answer is published
            in_flight = stats["frames_in"] - stats["frames_processed"] - stats["dropped"].get("stale", 0)
            return stats if in_flight == 0 else None

        stats = wait_for(final_stats, TIMEOUT, what="every frame received counted processed or stale")
        with lock:
            done = list(answers)
    late = [stamp for stamp, receipt in done if receipt > stopped and stamp != marker]
    # keep-last 1 and one frame in inference: at most two answers after the camera stops
    assert len(late) <= 2, f"{len(late)} answers after the stream stopped: frames were queued"
    stamps = [stamp for stamp, _ in done]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps), "an older frame answered after a newer one"
    assert stamps[-1] == marker
    stale = stats["dropped"].get("stale", 0)
    assert stats["frames_processed"] == len(done)
    assert stats["frames_in"] <= sent + 1
    if stats["processing_mean_s"] > 1 / 60:  # slower than the camera: stale frames were dropped, not queued
        assert stale > 0
    # latency stays within a few inference times, it does not grow with the run length
    latencies = [(receipt - stamp) * 1e-9 for stamp, receipt in done[:-1]]  # the stream's, not the marker's
    bound = 1.0 + 4 * stats["processing_max_s"]
    assert max(latencies[len(latencies) // 2:]) < bound, (max(latencies), bound)
