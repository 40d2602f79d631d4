"""Two-hosts section (``bench --only two_hosts``): the separate mode across two network namespaces.

The robot and the workstation are two network namespaces joined by a veth pair
(:mod:`.netns`), so everything between them is UDP over a link, never shared memory.

- **Robot** namespace: the ``depth_estimator`` process and a camera process
  (:func:`camera_main`, ``python -m depth_estimator_bench.two_hosts``). The
  camera publishes an RGB-D stream on the Kinect topics (for the trainer) and, at the
  same rate, one fixed probe image on ``probe/image`` (for the estimator), so the
  estimator's ``probe/depth`` changes only when its weights do. It records every depth
  answer (receipt time, digest), every ``weights`` payload reaching the robot, and the
  nodes' ``/diagnostics``, and keeps a ``status.json`` up to date for the driver.
- **Workstation** namespace: the ``online_trainer`` process, fed over the link.

:func:`run_case` drives one run: once both nodes run, stream until enough versions are
published, stop the RGB-D stream (no more rounds), wait until the trainer is quiescent and
the estimator has its last version in force, then stop every process with SIGINT and read
their exit codes.
Measured per case: the hand-over latency from the trainer publishing version *v* (its
log line) to the first probe depth computed with it arriving in the robot namespace
(:func:`~.adaptation.handover_latencies`), versions published vs. in force at the
estimator, RGB-D pairs sent vs. paired by the trainer (frames lost on the link), probe
answers, bytes over the veth, and whether and how fast the estimator converged to the
trainer's last version. :func:`run` does it without loss, with loss and best-effort
images (the default QoS), and with loss and ``image_reliability: reliable``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from depth_estimator_ros.atomic import write_bytes, write_json
from depth_estimator_bench.adaptation import (
    IN_FORCE_LOG,
    PUBLISHED_LOG,
    TRAINER_MODULE,
    handover_latencies,
    log_times,
)
from depth_estimator_bench.common import fmt_ms, latency_stats, pyplot, save_figure, write_section
from depth_estimator_bench.machine import describe_machine, machine_label
from depth_estimator_bench.netns import NamespaceError, TwoHosts
from depth_estimator_ros.parameters import KINECT_TOPICS
from depth_estimator_ros.ros.large_messages import LOSSY_LINK_PROFILE, PROFILE_VARIABLES

__all__ = [
    "CAMERA_MODULE",
    "PROBE_TOPICS",
    "STREAM_TOPICS",
    "CameraProcess",
    "camera_main",
    "trainer_idle_version",
    "run_case",
    "run",
    "summary_rows",
]

CAMERA_MODULE = "depth_estimator_bench.two_hosts"
ESTIMATOR_MODULE = "depth_estimator_ros.ros.estimator_node"

#: The RGB-D stream (robot -> workstation, the trainer's input) and the estimator's probe topics.
STREAM_TOPICS = {name: KINECT_TOPICS[name].lstrip("/") for name in ("image", "depth")}  # relative: namespaced
#: Keys are the estimator's own topic names (its remappings), values the probe topics.
PROBE_TOPICS = {"image": "probe/image", "depth/image": "probe/depth"}

#: Both namespaces discover over the veth (multicast); localhost-only discovery would see nothing.
_NAMESPACE_ENV = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET", "PYTHONUNBUFFERED": "1"}


# --------------------------------------------------------------------------- camera (robot side)
def _camera_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {CAMERA_MODULE}",
        description="Robot-side camera and recorder of the two-hosts benchmark: publishes a fixed probe image "
        "and, from when <out>/start_stream exists until <out>/stop_stream exists, an RGB-D stream; records depth "
        "answers, weights and diagnostics. Writes its results and exits when <out>/stop exists.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for status.json, camera.json and files")
    parser.add_argument("--data", required=True, help="frame source (data.open_source spec or folder)")
    parser.add_argument("--frames", type=int, default=30, help="frames of the source published in a loop")
    parser.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=None, help="resize frames")
    parser.add_argument("--rate", type=float, default=15.0, help="frames per second (stream and probe)")
    parser.add_argument("--reliability", choices=("best_effort", "reliable"), default="best_effort",
                        help="QoS reliability of the RGB-D stream's publishers")
    return parser


def _load_frames(spec: str, count: int, size: Sequence[int] | None) -> list[tuple[Any, Any]]:
    """Return ``count`` ``(rgb (H, W, 3) uint8, depth (H, W) float32 m)`` of a frame source, resized to ``size``."""
    import cv2

    from depth_estimator_ros.data import open_source

    source = open_source(spec)
    frames = []
    for index in range(min(count, len(source))):
        frame = source[index]
        rgb, depth = frame.rgb, frame.depth
        if size is not None and (rgb.shape[1], rgb.shape[0]) != tuple(size):
            rgb = cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_AREA)
            depth = cv2.resize(depth, tuple(size), interpolation=cv2.INTER_NEAREST)
        frames.append((rgb, depth))
    if not frames:
        raise ValueError(f"frame source {spec!r} has no frames")
    return frames


def camera_main(argv: Sequence[str] | None = None) -> int:
    """Run the robot-side camera and recorder until ``<out>/stop`` appears; return the exit status."""
    import numpy as np
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header, UInt8MultiArray

    from depth_estimator_ros.adaptation.payload import PayloadError, read_payload
    from depth_estimator_bench.roshelpers import DiagnosticsRecorder, PacedPublisher, RosClient, stamp_ns
    from depth_estimator_ros.ros import codec
    from depth_estimator_ros.ros.large_messages import configure_large_messages
    from depth_estimator_ros.ros.qos import DIAGNOSTICS_QOS, IMAGE_PUBLISHER_QOS, SENSOR_QOS, WEIGHTS_QOS, image_qos

    args = _camera_parser().parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    configure_large_messages()  # as a camera driver set up like live.launch.py
    frames = _load_frames(args.data, args.frames, args.size)
    header = Header(frame_id="camera_rgb_optical_frame")
    stream = [(codec.rgb_to_image(rgb, header), codec.depth_to_image(depth, header, "16UC1")) for rgb, depth in frames]
    probe_rgb = frames[0][0]
    np.save(out / "probe_rgb.npy", probe_rgb)
    probe_msg = codec.rgb_to_image(probe_rgb, header)

    lock = threading.Lock()
    depth_rows: list[tuple[int, int, str]] = []  # (stamp ns, receipt ns, digest)
    outputs: dict[str, Any] = {}  # digest -> depth array, first occurrence
    weights: dict[int, dict[str, Any]] = {}  # version -> first receipt
    bad_payloads: list[str] = []
    sent = {"stream": 0, "probe": 0}
    stream_stamps: list[int] = []  # ns, the RGB-D pairs published
    streaming = threading.Event()  # set between start_stream and stop_stream

    def on_depth(msg: Image) -> None:
        receipt = time.time_ns()
        digest = hashlib.blake2b(bytes(msg.data), digest_size=16).hexdigest()
        with lock:
            depth_rows.append((stamp_ns(msg.header.stamp), receipt, digest))
            if digest not in outputs:
                outputs[digest] = codec.image_to_depth(msg)

    def on_weights(msg: UInt8MultiArray) -> None:
        receipt = time.time_ns()
        payload = bytes(msg.data)
        try:
            version = int(read_payload(payload)[0]["version"])
        except (PayloadError, KeyError, ValueError) as exc:
            with lock:
                bad_payloads.append(str(exc))
            return
        path = write_bytes(out / f"weights_v{version}.safetensors", payload)
        with lock:
            weights.setdefault(version, {"receipt_ns": receipt, "nbytes": len(payload), "path": str(path)})

    diagnostics = DiagnosticsRecorder(["online_trainer", "depth_estimator"])
    with RosClient("two_hosts_camera") as client:
        node = client.node
        stream_qos = image_qos(args.reliability)
        rgb_pub = node.create_publisher(Image, STREAM_TOPICS["image"], stream_qos)
        depth_pub = node.create_publisher(Image, STREAM_TOPICS["depth"], stream_qos)
        probe_pub = node.create_publisher(Image, PROBE_TOPICS["image"], SENSOR_QOS)
        node.create_subscription(Image, PROBE_TOPICS["depth/image"], on_depth, IMAGE_PUBLISHER_QOS)  # as offered
        node.create_subscription(UInt8MultiArray, "weights", on_weights, WEIGHTS_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics, DIAGNOSTICS_QOS)

        def publish(index: int, stamp: Any) -> None:
            probe_msg.header.stamp = stamp
            probe_pub.publish(probe_msg)
            sent["probe"] += 1
            if streaming.is_set():
                rgb, depth = stream[index % len(stream)]
                rgb.header.stamp = stamp
                depth.header.stamp = stamp
                rgb_pub.publish(rgb)
                depth_pub.publish(depth)
                with lock:
                    sent["stream"] += 1
                    stream_stamps.append(stamp_ns(stamp))

        def status() -> dict[str, Any]:
            with lock:
                return {
                    "time": time.time(),
                    "streaming": streaming.is_set(),
                    "sent_stream": sent["stream"],
                    "sent_probe": sent["probe"],
                    "depth_received": len(depth_rows),
                    "depth_outputs": len(outputs),
                    "weights": {str(v): dict(w) for v, w in sorted(weights.items())},
                    "bad_payloads": list(bad_payloads),
                    "trainer": [(t, values) for t, name, values in diagnostics.records[-20:]
                                if name.startswith("online_trainer")][-4:],
                    "estimator": diagnostics.latest(),
                }

        publisher = PacedPublisher(args.rate, publish).start()
        print("camera publishing", flush=True)
        try:
            while not (out / "stop").exists():
                if (out / "stop_stream").exists():
                    streaming.clear()
                elif (out / "start_stream").exists():
                    streaming.set()
                write_json(out / "status.json", status())
                time.sleep(0.2)
        finally:
            publisher.stop()
            final = status()
            with lock:
                final["depth"] = list(depth_rows)
                final["stream_sent_ns"] = list(stream_stamps)
                final["probe_sent_ns"] = publisher.sent_stamps()
                np.savez(out / "depth_outputs.npz", **outputs)
            write_json(out / "camera.json", final)
    print("camera stopped", flush=True)
    return 0


# --------------------------------------------------------------------------- driver (either side)
class CameraProcess:
    """The camera of :func:`camera_main` as a child process in a namespace; stopped by its ``stop`` file.

    Args:
        prefix: command line prefix (the robot's ``ip netns exec``).
        out_dir: the camera's folder.
        args: further camera arguments (``--data``, ``--rate``, ...).
        env: the child's environment.
    """

    def __init__(self, prefix: Sequence[str], out_dir: Path, args: Sequence[str], env: Mapping[str, str]) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out_dir / "camera.log"
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", CAMERA_MODULE, "--out", str(self.out_dir), *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=dict(env),
        )

    def alive(self) -> bool:
        """Return whether the camera still runs."""
        return self.process.poll() is None

    def check_alive(self) -> None:
        """Raise RuntimeError with the log's tail when the camera has exited."""
        if not self.alive():
            raise RuntimeError(f"the camera exited with status {self.process.returncode}; log {self.log_path}:\n"
                               f"{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        """Return the end of the camera's log."""
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def status(self) -> dict[str, Any]:
        """Return the camera's latest ``status.json`` ({} before the first one)."""
        try:
            return json.loads((self.out_dir / "status.json").read_text())
        except (OSError, ValueError):
            return {}

    def start_stream(self) -> None:
        """Start the RGB-D stream (the probe image runs from the start)."""
        (self.out_dir / "start_stream").touch()

    def stop_stream(self) -> None:
        """Stop the RGB-D stream; the probe image goes on."""
        (self.out_dir / "stop_stream").touch()

    def stop(self, timeout: float = 20.0) -> int | None:
        """Ask the camera to write its results and exit; kill it after ``timeout`` s. Return its exit status."""
        (self.out_dir / "stop").touch()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10.0)
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> CameraProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.alive():
            self.stop()


def _wait(predicate: Callable[[], Any], timeout: float, what: str, processes: Sequence[Any]) -> Any:
    """Poll ``predicate`` until truthy; raise naming ``what`` (and a dead process's log) otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        for process in processes:
            process.check_alive()
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def trainer_idle_version(status: Mapping[str, Any], after: float) -> tuple[int] | None:
    """Return ``(version,)`` of the trainer once it is idle for good, else None.

    Idle for good: the last three of its statuses received after ``after`` (the RGB-D
    stream stopped at least a second before, so frames in flight have been offered) show
    no round in progress and the same version, rounds run and frames offered. The worker
    starts a round within 0.5 s of having enough new frames, so none is coming.
    """
    records = [values for t, values in status.get("trainer", []) if t > after][-3:]
    if len(records) < 3 or any(r.get("round_in_progress") != "False" for r in records):
        return None
    keys = ("version", "rounds_run", "frames_offered")
    if any(r.get(key) != records[0].get(key) for r in records for key in keys):
        return None
    return (int(records[0]["version"]),)


def _trainer_pairs(status: Mapping[str, Any]) -> int:
    """Return the RGB-D pairs the trainer had formed by its latest status (0 before one came)."""
    records = status.get("trainer") or [[0, {}]]
    return int(records[-1][1].get("pairs", 0) or 0)


def run_case(
    hosts: TwoHosts,
    out_dir: Path,
    *,
    checkpoint: str,
    data: str,
    frames: int = 30,
    size: Sequence[int] | None = None,
    rate_hz: float = 15.0,
    image_reliability: str = "best_effort",
    loss_percent: float = 0.0,
    delay_ms: float = 0.0,
    min_stream_s: float = 0.0,
    min_versions: int = 1,
    stream_timeout_s: float = 60.0,
    start_timeout_s: float = 180.0,
    converge_timeout_s: float = 120.0,
    estimator_params: Mapping[str, Any] | None = None,
    trainer_params: Mapping[str, Any] | None = None,
    profile: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the estimator in ``hosts.robot`` and the trainer in ``hosts.workstation``; measure the hand-over.

    Args:
        hosts: open namespaces (loss, when asked, is added to their link here; loss added
            before is kept and reported).
        out_dir: logs, the camera's files and recorded outputs.
        checkpoint: base model both nodes load (a path or ``default``).
        data: the camera's frame source (``data.open_source`` spec).
        frames: frames of ``data`` looped.
        size: ``(W, H)`` the frames are resized to; None keeps them.
        rate_hz: camera rate (stream and probe).
        image_reliability: the trainer's ``image_reliability`` and the stream publishers' QoS.
        loss_percent: packets dropped in each direction of the link; 0 = none.
        delay_ms: added delay each way (netem only).
        min_stream_s: stream at least this long.
        min_versions: stream until the trainer has published this many versions...
        stream_timeout_s: ...or until this many seconds passed (what was reached is reported).
        start_timeout_s: longest wait for the nodes to start and the first probe answer.
        converge_timeout_s: longest wait, after the stream stopped, for the trainer to go
            idle and the estimator to have the trainer's last version in force.
        estimator_params: extra ``depth_estimator`` parameters.
        trainer_params: extra ``online_trainer`` parameters.
        profile: Fast DDS profile of every process on both sides (e.g.
            ``ros.large_messages.LOSSY_LINK_PROFILE``); None = the package's default profile.
        env: environment of every process (default: this one's, ``ROS_DOMAIN_ID`` included).
        progress: print a line per phase.

    Returns:
        A JSON-able dict: ``loss``, ``published`` / ``in_force`` (``{version: wall-clock s}``,
        from the logs), ``weights_seen`` (arrival at the robot's camera), ``versions``
        (per-version hand-over rows), ``latency`` / ``in_force_latency`` statistics,
        ``final_version``, ``converged``, ``converge_s``, ``stream`` (pairs sent / paired),
        ``probe`` (sent / answered), ``link_bytes``, ``exit_codes``, ``tracebacks``,
        ``camera`` (its final record, with every depth arrival) and ``files``.

    Raises:
        TimeoutError, RuntimeError: a process did not start or died (the log's tail is in the message).
        NamespaceError: the loss cannot be emulated on this machine.
    """
    from depth_estimator_bench.roshelpers import NodeProcess

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loss = hosts.add_loss(loss_percent, delay_ms=delay_ms) if loss_percent > 0 else (hosts.loss or "none")
    child_env = {**(env if env is not None else os.environ), **_NAMESPACE_ENV}
    if profile is not None:
        child_env.update(dict.fromkeys(PROFILE_VARIABLES, str(profile)))
    common = {"checkpoint": checkpoint, "device": "cpu", "torch_threads": 1}
    say = print if progress else (lambda *_a, **_k: None)
    camera_args = ["--data", data, "--frames", str(frames), "--rate", str(rate_hz), "--reliability", image_reliability]
    if size is not None:
        camera_args += ["--size", str(size[0]), str(size[1])]
    result: dict[str, Any] = {"loss": loss, "image_reliability": image_reliability, "rate_hz": rate_hz,
                              "profile": str(profile) if profile is not None else "package default",
                              "data": data, "size": list(size) if size else None}
    bytes_before = hosts.robot.link_bytes()  # the whole run: discovery, the stream, every payload
    with contextlib.ExitStack() as stack:
        estimator = stack.enter_context(NodeProcess(
            ESTIMATOR_MODULE, {**common, **(estimator_params or {})}, out_dir / "estimator.log",
            remappings=PROBE_TOPICS, env=child_env, prefix=hosts.robot.wrap([]),
        ))
        trainer = stack.enter_context(NodeProcess(
            TRAINER_MODULE, {**common, "image_reliability": image_reliability, **(trainer_params or {})},
            out_dir / "trainer.log", remappings=STREAM_TOPICS, env=child_env, prefix=hosts.workstation.wrap([]),
        ))
        camera = stack.enter_context(CameraProcess(hosts.robot.wrap([]), out_dir / "camera", camera_args, child_env))
        processes = (estimator, trainer, camera)
        _wait(lambda: "ready: online_trainer" in trainer.log_tail(chars=10**6), start_timeout_s,
              "the trainer to start", processes)
        _wait(lambda: camera.status().get("depth_received", 0) > 0, start_timeout_s,
              "the estimator's first probe answer", processes)
        # the stream starts once both nodes run: every version is published to a running estimator
        camera.start_stream()
        started = time.time()
        say(f"[two_hosts] {loss}: streaming", file=sys.stderr, flush=True)

        def published() -> dict[int, float]:
            return log_times(trainer.log_tail(chars=10**8), PUBLISHED_LOG)

        with contextlib.suppress(TimeoutError):
            _wait(lambda: time.time() - started >= min_stream_s and len(published()) >= min_versions,
                  max(stream_timeout_s, min_stream_s), "versions", processes)
        camera.stop_stream()
        stopped = time.time()
        stream_s = stopped - started
        say(f"[two_hosts] {loss}: stream stopped after {stream_s:.1f} s, {len(published())} versions; converging",
            file=sys.stderr, flush=True)
        final_version = None
        converged = False

        def settled() -> tuple[int] | None:
            """The trainer idle for good and its last version in force at the estimator."""
            idle = trainer_idle_version(camera.status(), stopped + 1.0)
            if idle is None:
                return None
            last_published = max(published(), default=0)
            in_force = log_times(estimator.log_tail(chars=10**8), IN_FORCE_LOG)
            if idle[0] != last_published or max(in_force, default=0) != last_published:
                return None
            return idle

        try:
            (final_version,) = _wait(settled, converge_timeout_s,
                                     "the trainer to go idle and its last version to be in force at the estimator",
                                     processes)
            # answers computed after the swap: a few more probe depths
            count = camera.status().get("depth_received", 0)
            _wait(lambda: camera.status().get("depth_received", 0) >= count + 3, 60.0,
                  "probe answers after the last version", processes)
            converged = True
        except TimeoutError as exc:
            in_force = log_times(estimator.log_tail(chars=10**8), IN_FORCE_LOG)
            result["converge_error"] = (f"{exc}: trainer published up to version {max(published(), default=0)}, "
                                        f"version {max(in_force, default=0)} in force at the estimator")
        converge_s = time.time() - stopped
        bytes_after = hosts.robot.link_bytes()
        camera_code = camera.stop()
        exit_codes = {"camera": camera_code, "trainer": trainer.stop(), "estimator": estimator.stop()}
    trainer_log = trainer.log_tail(chars=10**8)
    estimator_log = estimator.log_tail(chars=10**8)
    camera_record = json.loads((camera.out_dir / "camera.json").read_text())
    pub, in_force = log_times(trainer_log, PUBLISHED_LOG), log_times(estimator_log, IN_FORCE_LOG)
    seen = {int(v): w["receipt_ns"] * 1e-9 for v, w in camera_record["weights"].items()}
    probe = [(receipt * 1e-9, digest) for _, receipt, digest in camera_record["depth"]]
    rows, unstable = handover_latencies(seen, probe, published=pub, in_force=in_force)
    trainer_stats = (camera_record["trainer"] or [[0, {}]])[-1][1]
    estimator_stats = next((v for k, v in camera_record["estimator"].items() if k.startswith("depth_estimator")), {})
    # the probe is counted over the stream window (before it the estimator may not have listened yet)
    window = (started * 1e9, stopped * 1e9)
    pairs_sent = len(camera_record["stream_sent_ns"])
    pairs = _trainer_pairs(camera_record)
    probe_sent = sum(1 for t in camera_record["probe_sent_ns"] if window[0] <= t <= window[1])
    probe_answered = len({t for t, _, _ in camera_record["depth"] if window[0] <= t <= window[1]})
    result.update(
        stream_s=round(stream_s, 2),
        published={str(v): t for v, t in sorted(pub.items())},
        in_force={str(v): t for v, t in sorted(in_force.items())},
        weights_seen={str(v): t for v, t in sorted(seen.items())},
        versions=rows,
        latency=latency_stats([r["latency_ms"] / 1e3 for r in rows if r["latency_ms"] is not None]),
        in_force_latency=latency_stats([r["in_force_ms"] / 1e3 for r in rows if r["in_force_ms"] is not None]),
        probe_changes_without_new_weights=unstable,
        final_version=final_version,
        estimator_version=max(in_force) if in_force else 0,
        converged=converged and final_version is not None and (max(in_force) if in_force else 0) == final_version,
        converge_s=round(converge_s, 2),
        stream={"pairs_sent": pairs_sent, "pairs_at_trainer": pairs,
                "lost_fraction": round(1.0 - pairs / pairs_sent, 4) if pairs_sent else None,
                "trainer_rounds": trainer_stats.get("rounds_run"),
                "trainer_rounds_accepted": trainer_stats.get("rounds_accepted")},
        probe={"sent": probe_sent, "answered": probe_answered,
               "estimator_dropped_stale": estimator_stats.get("dropped_stale", 0)},
        link_bytes={"robot_received": bytes_after[0] - bytes_before[0], "robot_sent": bytes_after[1] - bytes_before[1]},
        payload_bytes_seen=sum(w["nbytes"] for w in camera_record["weights"].values()),
        exit_codes=exit_codes,
        tracebacks=[name for name, text in (("trainer", trainer_log), ("estimator", estimator_log),
                                             ("camera", camera.log_tail(10**7))) if "Traceback" in text],
        bad_payloads=camera_record["bad_payloads"],
        camera=camera_record,
        files={"trainer_log": str(trainer.log_path), "estimator_log": str(estimator.log_path),
               "camera_dir": str(camera.out_dir)},
    )
    return result


# --------------------------------------------------------------------------- the bench section
#: Loss of the lossy cases (each direction).
LOSS_PERCENT = 10.0
#: Added delay each way where netem exists.
DELAY_MS = 20.0
#: The camera stream of the bench: a reduced-resolution RGB-D feed, as a robot would send over Wi-Fi.
STREAM_SIZE = (160, 120)
STREAM_RATE_HZ = 15.0


def _cases(quick: bool) -> list[dict[str, Any]]:
    """Return the section's cases and their stream length: defaults with and without loss, then each change."""
    stream_s = 10.0 if quick else 40.0
    link = str(LOSSY_LINK_PROFILE)
    return [
        {"name": "no loss, defaults", "loss_percent": 0.0, "profile": None, "image_reliability": "best_effort"},
        {"name": f"{LOSS_PERCENT:g} % loss, defaults", "loss_percent": LOSS_PERCENT, "profile": None,
         "image_reliability": "best_effort"},
        {"name": f"{LOSS_PERCENT:g} % loss, default profile, reliable images", "loss_percent": LOSS_PERCENT,
         "profile": None, "image_reliability": "reliable"},
        {"name": f"{LOSS_PERCENT:g} % loss, lossy-link profile", "loss_percent": LOSS_PERCENT, "profile": link,
         "image_reliability": "best_effort"},
        {"name": f"{LOSS_PERCENT:g} % loss, lossy-link profile, reliable images", "loss_percent": LOSS_PERCENT,
         "profile": link, "image_reliability": "reliable"},
    ], stream_s


def run(
    out_dir: Path,
    *,
    quick: bool = False,
    data: Path | None = None,
    checkpoint: str = "default",
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Run the section's cases, each in fresh namespaces; write ``two_hosts.json`` and ``.png``.

    Args:
        out_dir: output folder.
        quick: 10-second streams instead of 40 s.
        data: the RGB-D stream (a 7-Scenes folder; a synthetic room when absent), resized to
            :data:`STREAM_SIZE`.
        checkpoint: base model of both nodes (default: the shipped one).
        device: torch device of both nodes.
        progress: a line per phase on stderr.

    Returns:
        The JSON-able result, or ``{"skipped": reason}`` where namespaces cannot be created.
    """
    from depth_estimator_bench.roshelpers import set_bench_domain

    out_dir = Path(out_dir)
    set_bench_domain()
    if data is not None and Path(data).is_dir():
        spec = str(data)
    else:
        spec = f"synthetic:seed=3,frames=60,width={STREAM_SIZE[0]},height={STREAM_SIZE[1]}"
    cases, stream_s = _cases(quick)
    result: dict[str, Any] = {"machine": describe_machine(), "data": spec, "checkpoint": checkpoint,
                              "size": list(STREAM_SIZE), "rate_hz": STREAM_RATE_HZ, "stream_s": stream_s,
                              "cases": []}
    for index, case in enumerate(cases):
        name = case.pop("name")
        hosts = TwoHosts("db")
        try:
            hosts.open()
        except NamespaceError as exc:
            return {"skipped": f"network namespaces cannot be created here: {exc}"}
        try:
            measured = run_case(
                hosts, out_dir / "two_hosts" / f"case{index}", checkpoint=checkpoint, data=spec, frames=60,
                size=STREAM_SIZE, rate_hz=STREAM_RATE_HZ, delay_ms=DELAY_MS, min_stream_s=stream_s,
                min_versions=0, stream_timeout_s=stream_s, converge_timeout_s=30.0 if quick else 90.0,
                estimator_params={"device": device}, trainer_params={"device": device}, progress=progress, **case,
            )
        except NamespaceError as exc:  # no loss emulation here: the other cases still count
            result["cases"].append({"name": name, "skipped": str(exc)})
            continue
        finally:
            hosts.close()
        measured.pop("camera")  # every depth arrival: in the case's camera/camera.json
        result["cases"].append({"name": name, **measured})
    return write_section(out_dir, "two_hosts", result, _plot)


def _plot(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    for case in result["cases"]:
        if case.get("skipped"):
            continue
        points = [(r["version"], r["latency_ms"]) for r in case["versions"] if r["latency_ms"] is not None]
        if points:
            ax.plot(*zip(*points), marker="o", linestyle="none", label=case["name"])
    ax.set_xlabel("weights version")
    ax.set_ylabel("hand-over latency (ms)")
    ax.set_title(f"Trainer (workstation namespace) -> estimator (robot namespace) over UDP\n"
                 f"{machine_label(result['machine'])}", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the section's rows of the bench summary table."""
    if result.get("skipped"):
        return [{"section": "two_hosts", "what": "skipped", "value": result["skipped"], "target": ""}]
    rows = []
    for case in result["cases"]:
        if case.get("skipped"):
            rows.append({"section": "two_hosts", "what": case["name"], "value": f"skipped: {case['skipped']}",
                         "target": ""})
            continue
        latency = case["latency"]
        stream = case["stream"]
        rows.append({
            "section": "two_hosts",
            "what": f"{case['name']} ({case['loss']})",
            "value": (f"hand-over median {fmt_ms(latency['median_ms'])} / p95 {fmt_ms(latency['p95_ms'])} "
                      f"({latency['n']} versions); versions published {len(case['published'])}, in force "
                      f"{len(case['in_force'])}; RGB-D pairs at the trainer "
                      f"{stream['pairs_at_trainer']}/{stream['pairs_sent']}; "
                      f"probe answers {case['probe']['answered']}/{case['probe']['sent']}; "
                      f"converged to v{case['final_version']}: {case['converged']} in {case['converge_s']} s"),
            "target": "converges; nothing crashes",
        })
    return rows


if __name__ == "__main__":
    sys.exit(camera_main())
