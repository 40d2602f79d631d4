"""Process-level faults (issue 7): SIGKILL mid-write, disk full, signals, several nodes in one domain."""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from rclpy.parameter import Parameter
from ros_helpers import MessageCollector, NodeProcess, isolated_ros, wait_for
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger

from depth_estimator_ros import models
from depth_estimator_ros.data.image_encoding import encode_rgb
from depth_estimator_ros.ros.estimator_node import DepthEstimatorNode
from depth_estimator_ros.ros.trainer_node import OnlineTrainerNode

H, W = 48, 64
TIMEOUT = 20.0
START_TIMEOUT = 90.0  # a node process importing torch on a busy 2-core machine


def _image(seed: int, stamp: float) -> Image:
    rgb = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    header = Header(frame_id="camera_rgb_optical_frame")
    header.stamp.sec = int(stamp)
    header.stamp.nanosec = int(round((stamp - int(stamp)) * 1e9))
    step, data = encode_rgb(rgb)
    return Image(header=header, height=H, width=W, encoding="rgb8", step=step, data=data)


def _call(probe, service: str, timeout: float = TIMEOUT) -> Trigger.Response:
    client = probe.create_client(Trigger, service)
    assert client.wait_for_service(timeout_sec=timeout), f"{service} not available"
    future = client.call_async(Trigger.Request())
    wait_for(future.done, timeout, what=f"{service} to answer")
    return future.result()


def _routes(probe, ends: Iterable[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    """Return the nodes the ROS graph shows at each ``(topic, "publishers" | "subscribers")`` end.

    Nodes are named ``<namespace>/<name>``, sorted.
    """
    lookup = {"publishers": probe.get_publishers_info_by_topic, "subscribers": probe.get_subscriptions_info_by_topic}
    return {
        (topic, end): sorted(f"{info.node_namespace.rstrip('/')}/{info.node_name}" for info in lookup[end](topic))
        for topic, end in ends
    }


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def _assert_only_complete_checkpoints(folder: Path, complete_size: int) -> int:
    """Check every checkpoint-named file loads and every partial temp file is refused; return partial count."""
    names = sorted(p.name for p in folder.glob("*.safetensors"))
    assert names and not any(name.startswith(".") for name in names)
    for path in folder.glob("*.safetensors"):
        models.load_checkpoint(path, arch="fast")
    partial = 0
    for temp in _temp_files(folder):
        assert temp.name.startswith("."), "temp files are hidden and never match *.safetensors"
        if temp.stat().st_size < complete_size:
            partial += 1
            with pytest.raises(models.CheckpointError, match="truncated|too short|not a safetensors"):
                models.load_checkpoint(temp)
    return partial


_WRITER = """
import sys, torch
from depth_estimator_ros import models
torch.manual_seed(0)
model = models.build_model("fast", input_size=(64, 64))
path = sys.argv[1]
i = 0
while True:
    with torch.no_grad():
        model.decoder.head.bias.fill_(float(i))
    models.save_checkpoint(path, model, provenance={"i": i})
    print(f"SAVED {i}", flush=True)
    i += 1
"""


def test_sigkill_while_writing_checkpoints_in_a_loop_leaves_the_last_complete_one(checkpoint, tmp_path):
    target = tmp_path / "latest.safetensors"
    size = checkpoint.stat().st_size  # same architecture and input size: the same file size
    caught_mid_write = 0
    for _ in range(3):
        with NodeProcess.python(_WRITER, str(target)) as writer:
            writer.wait_for_output("SAVED 0", timeout=START_TIMEOUT)  # one complete save first
            # kill the moment a temp file exists: the process is inside save_checkpoint's write
            wait_for(lambda: _temp_files(tmp_path), TIMEOUT, what="a checkpoint write in progress", interval=0.0005)
            os.kill(writer.popen.pid, signal.SIGKILL)
            assert writer.popen.wait(5.0) == -signal.SIGKILL
            saved = [int(line.split()[1]) for line in writer.stdout.splitlines() if line.startswith("SAVED")]
        caught_mid_write += bool(_temp_files(tmp_path))
        model, metadata = models.load_checkpoint(target, arch="fast")
        # the file under the real name is a whole checkpoint: the last announced one or the one after it
        assert metadata["provenance"]["i"] in (saved[-1], saved[-1] + 1)
        assert float(model.decoder.head.bias.detach()[0]) == metadata["provenance"]["i"]
        _assert_only_complete_checkpoints(tmp_path, size)
        assert [p.name for p in tmp_path.glob("*.safetensors")] == ["latest.safetensors"]
    assert caught_mid_write > 0, "no SIGKILL landed inside a write"


_TRAINER = "from depth_estimator_ros.ros.trainer_node import main; main()"


def _trainer_argv(checkpoint: Path, checkpoint_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", _TRAINER, "--ros-args", "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu",
            "-p", f"checkpoint_dir:={checkpoint_dir}", "-p", "torch_threads:=1", *extra]


def test_trainer_sigkilled_while_saving_estimator_keeps_publishing_and_saved_checkpoints_load(checkpoint, tmp_path):
    saved_dir = tmp_path / "saved"
    with isolated_ros() as ros:
        overrides = [Parameter("checkpoint", value=str(checkpoint)), Parameter("device", value="cpu")]
        estimator = ros.add_node(DepthEstimatorNode(context=ros.context, parameter_overrides=overrides))
        probe = ros.create_node("probe")
        pub = probe.create_publisher(Image, "image", 10)
        depth = MessageCollector(probe, Image, "depth/image")
        with NodeProcess(_trainer_argv(checkpoint, saved_dir), env={"RCUTILS_LOGGING_USE_STDOUT": "1"}) as trainer:
            trainer.wait_for_output("adapting fast", timeout=START_TIMEOUT)
            first = _call(probe, "online_trainer/save", timeout=START_TIMEOUT)
            assert first.success, first.message
            # a stream of saves, the trainer killed while one is being written
            client = probe.create_client(Trigger, "online_trainer/save")
            pending = [client.call_async(Trigger.Request()) for _ in range(20)]
            wait_for(lambda: _temp_files(saved_dir), TIMEOUT, what="a save in progress", interval=0.0005)
            os.kill(trainer.popen.pid, signal.SIGKILL)
            assert trainer.popen.wait(5.0) == -signal.SIGKILL
        # the estimator never depended on the trainer: it keeps answering every frame
        for i in range(3):
            before = len(depth)
            wait_for(lambda: pub.get_subscription_count() > 0, TIMEOUT, what="the estimator to subscribe")
            pub.publish(_image(i, 100.0 + i))
            depth.wait_for_count(before + 1, TIMEOUT)
        assert estimator.stats()["frames_processed"] >= 3
        for future in pending:
            future.cancel()
    assert Path(first.message).is_file()
    _assert_only_complete_checkpoints(saved_dir, checkpoint.stat().st_size)


def test_disk_full_on_save_answers_failure_with_the_reason_and_the_trainer_keeps_working(checkpoint, tmp_path):
    overrides = [Parameter(k, value=v) for k, v in
                 {"checkpoint": str(checkpoint), "device": "cpu", "checkpoint_dir": str(tmp_path)}.items()]
    with isolated_ros() as ros:
        trainer = ros.add_node(OnlineTrainerNode(context=ros.context, parameter_overrides=overrides))
        probe = ros.create_node("probe")
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        # a file-size limit below one checkpoint: the write fails half-way, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (checkpoint.stat().st_size // 2, hard))
        try:
            answer = _call(probe, "online_trainer/save")
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)
        assert not answer.success
        assert "checkpoint not saved" in answer.message and "File too large" in answer.message
        assert os.listdir(tmp_path) == []  # no partial checkpoint, no temp file
        assert _call(probe, "online_trainer/reset").success  # nothing else broke
        again = _call(probe, "online_trainer/save")
        assert again.success and trainer.engine.version == 1
        models.load_checkpoint(again.message, arch="fast")


@pytest.mark.parametrize(
    ("module", "ready", "sig"),
    [
        ("depth_estimator_ros.ros.estimator_node", "ready: depth_estimator", signal.SIGINT),
        ("depth_estimator_ros.ros.trainer_node", "ready: online_trainer", signal.SIGTERM),
    ],
    ids=["estimator-SIGINT", "trainer-SIGTERM"],  # the other pairs: test_estimator_node, test_trainer_node, test_live
)
def test_signal_ends_the_process_within_2_s_without_traceback_or_orphans(checkpoint, module, ready, sig):
    argv = [sys.executable, "-c", f"from {module} import main; main()", "--ros-args",
            "-p", f"checkpoint:={checkpoint}", "-p", "device:=cpu"]
    with NodeProcess(argv, env={"RCUTILS_LOGGING_USE_STDOUT": "1"}) as child:
        child.wait_for_output(ready, timeout=START_TIMEOUT)
        pid = child.popen.pid
        children = set()
        for task in Path(f"/proc/{pid}/task").iterdir():
            children |= {int(c) for c in (task / "children").read_text().split()}
        started = time.monotonic()
        assert child.stop(timeout=2.0, sig=sig) == 0
        assert time.monotonic() - started < 2.0
        output = child.stderr + child.stdout
        assert "Traceback" not in output, output[-2000:]
        for orphan in children:  # any helper process the node started ended with it
            wait_for(lambda: not Path(f"/proc/{orphan}").exists(), 2.0, what=f"child process {orphan} to end")


def test_two_estimators_and_a_trainer_in_one_domain_do_not_cross_talk(checkpoint):
    common = [Parameter("checkpoint", value=str(checkpoint)), Parameter("device", value="cpu")]
    with isolated_ros() as ros:
        def estimator(namespace: str, *remaps: str) -> DepthEstimatorNode:
            cli = ["--ros-args", *(item for rule in remaps for item in ("-r", rule))] if remaps else None
            return ros.add_node(DepthEstimatorNode(context=ros.context, namespace=namespace,
                                                   parameter_overrides=common, cli_args=cli))

        front = estimator("/front")
        rear = estimator("/rear")
        # the trainer adapts for the front camera only: its weights go to /front/weights
        trainer = ros.add_node(OnlineTrainerNode(context=ros.context, namespace="/front", parameter_overrides=common))
        probe = ros.create_node("probe")
        pubs = {ns: probe.create_publisher(Image, f"/{ns}/image", 10) for ns in ("front", "rear")}
        outs = {ns: MessageCollector(probe, Image, f"/{ns}/depth/image") for ns in ("front", "rear")}
        for ns, pub in pubs.items():
            # each estimator subscribes its own camera only (the front trainer reads /front/image too)
            wait_for(lambda: pub.get_subscription_count() == (2 if ns == "front" else 1), TIMEOUT,
                     what=f"/{ns}/image subscribers")
        # Every way a frame, an answer or a payload could cross namespaces, read from the graph
        # instead of waiting to see whether a stray arrives: each namespace's topics are
        # published and read by its own nodes (and the probe) only, and nothing publishes
        # weights to the rear estimator.
        expected = {
            ("/front/image", "subscribers"): ["/front/depth_estimator", "/front/online_trainer"],
            ("/rear/image", "subscribers"): ["/rear/depth_estimator"],
            ("/front/depth/image", "publishers"): ["/front/depth_estimator"],
            ("/rear/depth/image", "publishers"): ["/rear/depth_estimator"],
            ("/front/weights", "publishers"): ["/front/online_trainer"],
            ("/front/weights", "subscribers"): ["/front/depth_estimator"],
            ("/rear/weights", "publishers"): [],
            ("/rear/weights", "subscribers"): ["/rear/depth_estimator"],
        }
        try:
            wait_for(lambda: _routes(probe, expected) == expected, TIMEOUT, what="each namespace's routes in the graph")
        except TimeoutError:
            assert _routes(probe, expected) == expected  # shows which route differs
            raise
        stamps = {"front": [10.0, 10.1, 10.2], "rear": [20.0, 20.1]}
        for ns, values in stamps.items():
            for i, stamp in enumerate(values):
                before = len(outs[ns])
                pubs[ns].publish(_image(i, stamp))
                outs[ns].wait_for_count(before + 1, TIMEOUT)
        for ns, node in (("front", front), ("rear", rear)):
            got = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in outs[ns].messages]
            assert got == pytest.approx(stamps[ns]), ns
            assert node.stats()["frames_in"] == len(stamps[ns]), ns

        assert _call(probe, "/front/online_trainer/reset").success  # publishes weights version 1
        wait_for(lambda: front.weights_version == 1, TIMEOUT, what="/front weights")
        assert rear.weights_version == 0 and rear.stats()["weights_rejected"] == 0
        # an estimator configured (remapped) for the front trainer's weights gets them at once
        follower = estimator("/side", "weights:=/front/weights")
        wait_for(lambda: follower.weights_version == 1, 1.0, what="the remapped estimator's weights within 1 s")
        assert trainer.engine.version == 1 and rear.weights_version == 0


@pytest.mark.parametrize("module", ["depth_estimator_ros.ros.live", "depth_estimator_ros.ros.estimator_node"],
                         ids=["live", "estimator"])
def test_ctrl_c_twice_to_the_process_group_with_frames_flowing_exits_cleanly_within_2_s(module, tmp_path):
    """A terminal's Ctrl-C under ``ros2 launch``: SIGINT to the whole group, then launch forwards another.

    The model is slow enough (untrained ``fast`` at 240x320) that inference is busy when the
    signals come, so a publish after the context went, or a KeyboardInterrupt in the cleanup,
    would show.
    """
    params = tmp_path / "params.yaml"
    params.write_text('/**:\n  ros__parameters:\n    checkpoint: ""\n    input_size: [240, 320]\n    device: cpu\n')
    argv = [sys.executable, "-c", f"from {module} import main; main()", "--ros-args", "--params-file", str(params),
            "-r", "image:=/fault/image"]
    with isolated_ros() as ros, NodeProcess(argv, env={"RCUTILS_LOGGING_USE_STDOUT": "1"},
                                            process_group=True) as child:
        probe = ros.create_node("probe")
        pub = probe.create_publisher(Image, "/fault/image", 10)
        depth = MessageCollector(probe, Image, "/depth/image")
        frames = iter(range(10**6))
        probe.create_timer(1 / 30, lambda: pub.publish(_image(0, 100.0 + next(frames) / 30)))
        child.wait_for_output("ready: depth_estimator", timeout=START_TIMEOUT)
        depth.wait_for_count(3, TIMEOUT)  # frames are flowing through inference
        started = time.monotonic()
        assert child.signal_group(signal.SIGINT)
        time.sleep(0.05)
        child.signal_group(signal.SIGINT)  # launch's forwarded copy, while the first is being handled
        code = child.popen.wait(5.0)
        elapsed = time.monotonic() - started
        output = child.stderr + child.stdout
        for bad in ("Traceback", "context is invalid", "internal_error", "terminate called"):
            assert bad not in output, output[-3000:]
        assert code == 0, output[-3000:]
        assert elapsed < 2.0, output[-3000:]
