"""Pipeline section: 640x480 rgb8 frames at 30 Hz through the estimator node over DDS.

The ``depth_estimator`` node runs as its own process (its console entry point, real
DDS on localhost, a private ROS domain); this process publishes camera frames at a
fixed rate from a thread, stamping each header with the time of publishing, and
subscribes to ``depth/image`` and ``/diagnostics``. Reported:

- received depth rate and dropped frames (sent minus received in the measurement window;
  the node keeps only the newest frame, so a slow model shows up as drops);
- end-to-end latency, header stamp at publish -> depth message received here;
- the share of time outside the model: the end-to-end mean minus the node's
  ``stage_forward_mean_s`` (the network's forward pass alone), against that forward
  time; the node's other stages (receive, queue, decode, prepare, finish, publish) and
  the way back make up the rest and are reported one by one, plus the image codec
  pieces (decode the rgb8 message, encode the 32FC1 answer) timed in-process.

One run per device, inference backend (``torch`` / ``onnxruntime``, side by side in one
section) and camera rate (30 and 60 Hz by default), each with a fresh node process.

With ``rooms`` (issue 23), each of those runs is followed by a *recognition run*: the same
node with ``room_recognition`` on (default ``recognition_period``), this process
publishing a room memory of ``rooms`` rooms on ``rooms`` as the trainer does (the blob of
:meth:`RoomMemory.to_bytes`, ``WEIGHTS_QOS``: reliable, transient-local), built from the
node's checkpoint by :mod:`depth_estimator_bench.room_memory` (keyframes: the estimator's
own descriptors of real recordings). The camera plays one of those rooms, so the node
describes a frame every ``recognition_period`` frames, scores it against every room's
keyframes and switches to that room's weights. Both runs of a pair play the same frames;
the recognition run also reports the node's recognition counters from ``/diagnostics``.

With ``sensor`` the camera side also publishes a registered sensor depth with each frame
(640x480 16UC1 on ``sensor_depth``, the same stamp, as a Kinect does), so every run
measures the node as it runs beside the sensor: it receives and decodes each sensor depth
and, with the defaults (``sensor_scale``), compares it with the frame's prediction and
scales the next frames. Each run then reports the node's sensor counters.

Targets, reported next to the numbers, never asserted: issue 6, >= 30 Hz with ``fast`` on
a 2-core CPU at 30 Hz input, p95 < 60 ms, overhead < 15 % of the model's own time;
issue 13, onnxruntime's forward pass >= 3x shorter than torch's at the same rate, and at
60 Hz input >= 55 Hz out with p95 < 30 ms; issue 23, >= 25 Hz out at 30 Hz input while
recognition scores a room memory.
"""

from __future__ import annotations

import array
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from depth_estimator_bench.common import (
    SHARED,
    fmt_ms,
    latency_stats,
    pyplot,
    resolve_devices,
    save_figure,
    timed_loop,
    write_section,
)
from depth_estimator_bench.machine import describe_machine, machine_label

__all__ = [
    "BACKENDS", "RATES_HZ", "TARGETS", "ESTIMATOR_MODULE", "codec_timings", "measure_stream", "run",
    "forward_speedups", "recognition_pairs", "summary_rows",
]

#: Targets of issues 6, 13 and 23 (``rate_hz_recognition``), reported next to the measurements.
TARGETS: dict[str, float] = {
    "rate_hz": 30.0, "p95_ms": 60.0, "overhead_fraction": 0.15,
    "forward_speedup": 3.0, "rate_hz_at_60": 55.0, "p95_ms_at_60": 30.0,
    "rate_hz_recognition": 25.0,
}
BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
RATES_HZ: tuple[float, ...] = (30.0, 60.0)
ESTIMATOR_MODULE = "depth_estimator_ros.ros.estimator_node"
CAMERA_SIZE: tuple[int, int] = (480, 640)


def codec_timings(camera: tuple[int, int] = CAMERA_SIZE, *, iterations: int = 50) -> dict[str, Any]:
    """Time the node's message conversions for one camera frame, in this process.

    Args:
        camera: image size (height, width).
        iterations: timed repetitions of each conversion.

    Returns:
        Latency stats of ``decode_rgb8`` (Image -> (H,W,3) uint8), ``encode_depth_32fc1``
        ((H,W) float32 -> Image) and ``encode_rgb8`` (the input side of a camera driver).
    """
    from std_msgs.msg import Header

    from depth_estimator_ros.ros import codec

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(*camera, 3), dtype=np.uint8)
    depth = rng.uniform(0.5, 8.0, size=camera).astype(np.float32)
    header = Header(frame_id="camera")
    msg = codec.rgb_to_image(rgb, header)
    budget = dict(warmup=2, iterations=iterations, max_seconds=5.0)
    return {
        "decode_rgb8": latency_stats(timed_loop(lambda: codec.image_to_rgb(msg), **budget)),
        "encode_depth_32fc1": latency_stats(timed_loop(lambda: codec.depth_to_image(depth, header), **budget)),
        "encode_rgb8": latency_stats(timed_loop(lambda: codec.rgb_to_image(rgb, header), **budget)),
        "backend": codec.BACKEND,
    }


def measure_stream(
    client: Any,
    processes: Sequence[Any],
    *,
    image_messages: Sequence[Any],
    rate_hz: float,
    warmup_s: float,
    measure_s: float,
    start_timeout_s: float,
    image_topic: str = "image",
    depth_topic: str = "depth/image",
    extra_publish: Any = None,
    keep: Any = None,
    progress: bool = True,
    desc: str = "pipeline",
    image_reliability: str = "best_effort",
) -> dict[str, Any]:
    """Publish ``image_messages`` in a loop at ``rate_hz`` and record the depth answers.

    Args:
        client: a :class:`RosClient`.
        processes: node processes that must stay alive (checked while waiting).
        image_messages: pre-built ``sensor_msgs/Image`` messages, published in turn with
            a fresh header stamp.
        rate_hz: publishing rate.
        warmup_s: seconds of publishing after the first answer before measuring.
        measure_s: length of the measurement window.
        start_timeout_s: longest wait for the node's ``depth/image`` publisher and first answer.
        image_topic: topic the frames go to.
        depth_topic: topic the answers come from.
        extra_publish: optional ``f(index, stamp)`` called after each image (e.g. the
            matching sensor depth for a trainer).
        keep: optional function of each depth message kept with its arrival.
        progress: show a tqdm bar over the window.
        desc: the bar's label.
        image_reliability: QoS reliability of the image publisher (see ``ros.qos.image_qos``).

    Returns:
        ``window_start_unix_s``, ``window_s``, ``sent``, ``received``, ``dropped``, ``drop_fraction``,
        ``received_rate_hz``, ``sent_rate_hz``, ``publisher_late_ticks``, ``latency``
        (stats in ms), and the raw ``samples`` ([seconds since window start, latency s])
        and ``kept`` values (with their receipt times) for plots and further analysis.
    """
    from sensor_msgs.msg import Image
    from tqdm import tqdm

    from depth_estimator_bench.roshelpers import (
        PacedPublisher,
        StampRecorder,
        wait_until,
    )
    from depth_estimator_ros.ros.qos import image_qos

    node = client.node
    image_pub = node.create_publisher(Image, image_topic, image_qos(image_reliability))
    recorder = StampRecorder(keep=keep)
    qos = client.publisher_qos(depth_topic, start_timeout_s, processes=processes)
    node.create_subscription(Image, depth_topic, recorder, qos)

    def publish(index: int, stamp: Any) -> None:
        msg = image_messages[index % len(image_messages)]
        msg.header.stamp = stamp
        image_pub.publish(msg)
        if extra_publish is not None:
            extra_publish(index, stamp)

    publisher = PacedPublisher(rate_hz, publish).start()
    try:

        def answered() -> bool:
            for process in processes:
                process.check_alive()
            if publisher.error is not None:
                raise RuntimeError(f"publisher thread failed: {publisher.error!r}")
            return recorder.count() > 0

        if not wait_until(answered, start_timeout_s, interval=0.05):
            raise RuntimeError(f"no message on {depth_topic!r} within {start_timeout_s:g} s of publishing images")
        time.sleep(warmup_s)
        window_start = time.time_ns()
        with tqdm(total=int(measure_s), desc=desc, unit="s", disable=not progress) as bar:
            end = time.monotonic() + measure_s
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(1.0, left))
                bar.update(1)
                for process in processes:
                    process.check_alive()
        window_end = time.time_ns()
    finally:
        publisher.stop()
    # Frames sent at the end of the window may still be in flight: give them time to land.
    time.sleep(min(1.0, max(0.3, 3.0 / rate_hz)))
    arrivals, kept = recorder.snapshot()
    node.destroy_publisher(image_pub)
    sent = [s for s in publisher.sent_stamps() if window_start <= s < window_end]
    sent_set = set(sent)
    got = [(stamp, receipt) for stamp, receipt in arrivals if stamp in sent_set]
    window_s = (window_end - window_start) * 1e-9
    latencies = [(receipt - stamp) * 1e-9 for stamp, receipt in got]
    result = {
        "window_start_unix_s": round(window_start * 1e-9, 3),
        "window_s": round(window_s, 3),
        "sent": len(sent),
        "received": len(got),
        "dropped": len(sent) - len(got),
        "drop_fraction": round((len(sent) - len(got)) / len(sent), 4) if sent else None,
        "sent_rate_hz": round(len(sent) / window_s, 3),
        "received_rate_hz": round(len(got) / window_s, 3),
        "publisher_late_ticks": publisher.late,
        "latency": latency_stats(latencies),
        "samples": [
            [round((stamp - window_start) * 1e-9, 4), round(latency, 5)] for (stamp, _), latency in zip(got, latencies)
        ],
    }
    if keep is not None:
        result["kept"] = [(receipt, value) for (_, receipt), value in zip(arrivals, kept)]
    return result


def _sensor_depth_message(header: Any, camera: tuple[int, int] = CAMERA_SIZE) -> Any:
    """Return a registered sensor depth for the pipeline's frames: a 1-4 m ramp, 16UC1 (millimetres).

    Its content only decides the scale the node settles on; what is measured is the node
    receiving, pairing, decoding and comparing one such image per frame.
    """
    from depth_estimator_ros.ros import codec

    height, width = camera
    ramp = np.linspace(1.0, 4.0, height, dtype=np.float32)[:, None]
    return codec.depth_to_image(np.repeat(ramp, width, axis=1), header, "16UC1")


def _overhead(stream: dict[str, Any], diagnostics: dict[str, Any], codec: dict[str, Any]) -> dict[str, Any]:
    """Split the end-to-end time into the model's forward pass and everything else.

    The model's own time is the node's ``stage_forward_mean_s`` (the network alone);
    everything else -- DDS both ways, waking the inference thread, decoding, resizing,
    upsampling, masking, encoding, publishing -- is overhead. The Predictor call as a
    whole (``processing_mean_s``) is reported too.
    """
    forward_s = diagnostics.get("stage_forward_mean_s")
    predictor_s = diagnostics.get("processing_mean_s")
    node_latency_s = diagnostics.get("latency_mean_s")
    e2e_ms = stream["latency"]["mean_ms"]
    out: dict[str, Any] = {
        "model_mean_ms": None,
        "predictor_mean_ms": None,
        "node_latency_mean_ms": None,
        "e2e_mean_ms": e2e_ms,
        "outside_model_ms": None,
        "overhead_fraction_of_model": None,
        "stages_ms": {},
        "codec_decode_ms": codec["decode_rgb8"]["median_ms"],
        "codec_encode_ms": codec["encode_depth_32fc1"]["median_ms"],
        "source": "estimator /diagnostics stage_forward_mean_s (the network alone) vs end-to-end mean measured here",
    }
    if isinstance(predictor_s, float):
        out["predictor_mean_ms"] = round(predictor_s * 1e3, 3)
    if isinstance(forward_s, float) and forward_s > 0 and e2e_ms is not None:
        out["model_mean_ms"] = round(forward_s * 1e3, 3)
        out["outside_model_ms"] = round(e2e_ms - forward_s * 1e3, 3)
        out["overhead_fraction_of_model"] = round((e2e_ms - forward_s * 1e3) / (forward_s * 1e3), 4)
    out["stages_ms"] = {
        key.removeprefix("stage_").removesuffix("_mean_s"): round(value * 1e3, 3)
        for key, value in diagnostics.items()
        if key.startswith("stage_") and key.endswith("_mean_s") and isinstance(value, float)
    }
    if isinstance(node_latency_s, float):
        out["node_latency_mean_ms"] = round(node_latency_s * 1e3, 3)
        if e2e_ms is not None:  # the depth message's way back: serialise, DDS, deserialise here
            out["stages_ms"]["return"] = round(e2e_ms - node_latency_s * 1e3, 3)
    return out


def _estimator_status(diagnostics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    for name, values in diagnostics.items():
        if "depth estimation" in name:
            return values
    return {}


def _plot(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    fig, (ax_time, ax_hist) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in result["runs"]:
        samples = np.asarray(run["stream"]["samples"], dtype=np.float64).reshape(-1, 2)
        label = (f"{run['arch']} {run['device']} {run['backend_in_use'] or run['backend']} "
                 f"{run['rate_hz']:g} Hz in{' + rooms' if run.get('room_recognition') else ''}: "
                 f"{run['stream']['received_rate_hz']:.1f} Hz out")
        ax_time.plot(samples[:, 0], samples[:, 1] * 1e3, ".", markersize=3, label=label)
        if len(samples):
            ax_hist.hist(samples[:, 1] * 1e3, bins=40, alpha=0.6, label=label)
    for ax in (ax_time,):
        ax.axhline(TARGETS["p95_ms"], color="r", linestyle="--", linewidth=0.8, label="p95 target 60 ms")
    ax_hist.axvline(TARGETS["p95_ms"], color="r", linestyle="--", linewidth=0.8)
    ax_time.set_xlabel("time in window (s)")
    ax_time.set_ylabel("publish -> depth received (ms)")
    ax_time.legend(fontsize=7)
    ax_time.set_title("End-to-end latency, 640x480 rgb8")
    ax_hist.set_xlabel("latency (ms)")
    ax_hist.set_ylabel("frames")
    ax_hist.legend(fontsize=7)
    fig.suptitle(f"Estimator node over DDS -- {machine_label(result['machine'])}", fontsize=9)
    return save_figure(fig, path)


def run(
    out_dir: Path,
    *,
    device: str = "auto",
    quick: bool = False,
    arch: str = "fast",
    rates_hz: Sequence[float] = RATES_HZ,
    backends: Sequence[str] = BACKENDS,
    progress: bool = True,
    image_reliability: str = "best_effort",
    depth_encoding: str = "32FC1",
    threads: int = 0,
    checkpoint: str | None = None,
    rooms: int = 0,
    rooms_root: Path | None = SHARED / "data" / "rooms",
    sensor: bool = False,
) -> dict[str, Any]:
    """Run the estimator node under camera streams; write ``pipeline.json`` / ``.png``.

    Args:
        out_dir: output folder (node logs and the base checkpoint go there too).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (one run per available device).
        quick: a few seconds per run instead of 30.
        arch: architecture the node runs with random weights (no ``checkpoint``).
        rates_hz: camera rates, one run each.
        backends: the node's ``backend`` values, one run each (``torch``, ``onnxruntime``, ``auto``).
        progress: show tqdm bars.
        image_reliability: QoS reliability of camera publisher and node subscription.
        depth_encoding: the node's ``depth_encoding`` (16UC1 halves the bytes sent back).
        threads: the node's ``torch_threads`` (intra-op threads of torch and onnxruntime;
            0 = its default, half the CPUs, for a machine it shares with a trainer).
        checkpoint: the node's ``checkpoint`` (``"default"``: the shipped model, or a path;
            its architecture replaces ``arch``); None: a seeded random initialisation of ``arch``.
        rooms: with ``N > 0``, a recognition run after every plain run, the node scoring a
            memory of ``N`` rooms (needs ``checkpoint``: the rooms are built from it).
        rooms_root: room recordings for the memory's keyframes and the camera (synthetic
            rooms beyond them, or when it is None or missing).
        sensor: publish a sensor depth with every frame (:func:`_sensor_depth_message`).

    Returns:
        ``section``, ``machine``, ``settings``, ``targets``, ``codec`` (in-process
        conversion timings), ``runs``: per device, backend and rate (and recognition off /
        on) the ``stream`` measurements, the node's last ``diagnostics`` values, the
        ``overhead`` split, ``recognition`` (the node's counters, None for a plain run) and
        ``sensor`` (the node's sensor depth counters, None without ``sensor``);
        ``speedups``: torch's forward pass over onnxruntime's per device and rate (plain
        runs); ``room_memory`` (None without ``rooms``) and ``recognition_pairs``: each
        recognition run next to its plain run.

    Raises:
        ValueError: no rates or backends, ``rooms`` without ``checkpoint``.
        depth_estimator_ros.models.CheckpointError: ``checkpoint`` is not usable.
    """
    from std_msgs.msg import Header

    from depth_estimator_bench.roshelpers import base_checkpoint, set_bench_domain
    from depth_estimator_ros.models import load_checkpoint
    from depth_estimator_ros.parameters import parameter
    from depth_estimator_ros.ros import codec

    if not rates_hz or not all(rate > 0 for rate in rates_hz):
        raise ValueError(f"rates_hz must be positive camera rates, got {list(rates_hz)}")
    if not backends:
        raise ValueError("backends must name at least one inference backend")
    if rooms and checkpoint is None:
        raise ValueError("rooms need a trained checkpoint to build the room memory from, e.g. checkpoint='default' "
                         "(the shipped model); random weights find every image alike")
    out_dir = Path(out_dir)
    domain = set_bench_domain()
    devices = resolve_devices(device)
    warmup_s, measure_s = (1.0, 4.0) if quick else (5.0, 30.0)
    if checkpoint is None:
        node_checkpoint, memory = str(base_checkpoint(out_dir, arch)), None
    else:
        model, _ = load_checkpoint(checkpoint)
        node_checkpoint, arch = str(checkpoint), model.arch
        memory = _room_memory(model, rooms, rooms_root, quick=quick, progress=progress) if rooms else None
    codec_stats = codec_timings(iterations=10 if quick else 100)
    if memory is None:
        rng = np.random.default_rng(0)
        frames = [rng.integers(0, 256, size=(*CAMERA_SIZE, 3), dtype=np.uint8) for _ in range(4)]
    else:
        frames = memory["camera_frames"]
    messages = [codec.rgb_to_image(frame, Header(frame_id="camera_rgb_optical_frame")) for frame in frames]
    sensor_message = _sensor_depth_message(Header(frame_id="camera_rgb_optical_frame")) if sensor else None
    period = parameter("recognition_period").default
    params = {"arch": arch, "checkpoint": node_checkpoint, "image_reliability": image_reliability,
              "depth_encoding": depth_encoding, "torch_threads": threads}
    recognition_off_on = (False,) if memory is None else (False, True)
    runs = []
    for dev, backend, rate_hz, recognition in (
        (d, b, r, rec) for d in devices for b in backends for r in rates_hz for rec in recognition_off_on
    ):
        stream = dict(rate_hz=rate_hz, warmup_s=warmup_s, measure_s=measure_s, progress=progress,
                      image_reliability=image_reliability)
        runs.append(_run_node(
            out_dir, {**params, "device": dev, "backend": backend}, messages, stream, codec_stats,
            memory if recognition else None, period, sensor_message,
        ))
    result: dict[str, Any] = {
        "section": "pipeline",
        "machine": describe_machine(),
        "settings": {
            "quick": quick,
            "arch": arch,
            "checkpoint": node_checkpoint,
            "rates_hz": list(rates_hz),
            "backends": list(backends),
            "torch_threads": threads,
            "image_reliability": image_reliability,
            "depth_encoding": depth_encoding,
            "camera_size": list(CAMERA_SIZE),
            "encoding": "rgb8",
            "camera_frames": "random noise" if memory is None else f"recording {memory['camera_room']}",
            "sensor_depth": "640x480 16UC1 ramp 1-4 m with every frame, same stamp" if sensor else None,
            "rooms": rooms,
            "recognition_period": period if memory else None,
            "warmup_s": warmup_s,
            "measure_s": measure_s,
            "ros_domain_id": domain,
            "transport": "DDS (rmw default), separate processes, localhost",
        },
        "targets": TARGETS,
        "codec": codec_stats,
        "room_memory": None if memory is None else {k: v for k, v in memory.items() if k not in ("blob", "camera_frames")},
        "runs": runs,
        "speedups": forward_speedups(runs),
        "recognition_pairs": recognition_pairs(runs),
    }
    return write_section(out_dir, "pipeline", result, _plot)


def _room_memory(model: Any, rooms: int, rooms_root: Path | None, *, quick: bool, progress: bool) -> dict[str, Any]:
    """Build the memory the recognition runs publish: its blob, camera frames and description."""
    from depth_estimator_bench.room_memory import KEYFRAMES_PER_ROOM, build_room_memory

    keyframes = 8 if quick else KEYFRAMES_PER_ROOM
    built = build_room_memory(model, rooms, rooms_root=rooms_root, camera_size=CAMERA_SIZE, keyframes=keyframes,
                              progress=progress)
    blob = built.memory.to_bytes()  # the trainer's serialisation: what it publishes on `rooms`
    return {
        "blob": blob,
        "blob_bytes": len(blob),
        "camera_frames": built.camera_frames,
        "camera_room": built.camera_room,
        "keyframes_per_room": keyframes,
        "keyframes": sum(row["keyframes"] for row in built.rooms),
        "rooms_root": None if rooms_root is None else str(rooms_root),
        "rooms": built.rooms,
        "weights": "the base's decoder scope times 1 + 0.01 * seeded noise per room (not learnt)",
        "keyframe_descriptors": "RoomRecognizer.describe (the estimator's own) of the rooms' frames at 640x480",
    }


def _run_node(
    out_dir: Path,
    params: dict[str, Any],
    messages: Sequence[Any],
    stream_args: dict[str, Any],
    codec_stats: dict[str, Any],
    memory: dict[str, Any] | None,
    period: int,
    sensor_message: Any = None,
) -> dict[str, Any]:
    """Start one estimator process, stream ``messages`` through it, return the run's record.

    With ``memory`` the node runs with ``room_recognition`` (``recognition_period``
    ``period``) and receives the memory's blob on ``rooms`` before the stream starts.
    With ``sensor_message`` that image goes to ``sensor_depth`` with every frame, stamped like it.
    """
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from depth_estimator_bench.roshelpers import DiagnosticsRecorder, NodeProcess, RosClient
    from depth_estimator_ros.ros.qos import DIAGNOSTICS_QOS, image_qos

    dev, backend, rate_hz = params["device"], params["backend"], stream_args["rate_hz"]
    if memory is not None:
        params = {**params, "room_recognition": True, "recognition_period": period}
    suffix = "" if memory is None else f"_rooms{len(memory['rooms'])}"
    log = out_dir / f"pipeline_estimator_{dev}_{backend}_{rate_hz:g}hz{suffix}.log"
    start_timeout_s = 180.0
    with NodeProcess(ESTIMATOR_MODULE, params, log) as node, RosClient("bench_pipeline") as client:
        diagnostics = DiagnosticsRecorder(["depth_estimator"])
        client.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics, DIAGNOSTICS_QOS)
        if memory is not None:
            _publish_rooms(client, memory["blob"], node, diagnostics, start_timeout_s)
        extra_publish = None
        if sensor_message is not None:
            sensor_pub = client.node.create_publisher(
                Image, "sensor_depth", image_qos(stream_args.get("image_reliability", "best_effort")))

            def extra_publish(index: int, stamp: Any) -> None:
                sensor_message.header.stamp = stamp
                sensor_pub.publish(sensor_message)

        stream = measure_stream(
            client, [node], image_messages=messages, start_timeout_s=start_timeout_s, extra_publish=extra_publish,
            desc=f"pipeline {params['arch']} {dev} {backend} {rate_hz:g} Hz{' + rooms' if memory else ''}",
            **stream_args,
        )
        status = _estimator_status(diagnostics.latest())
    return {
        "arch": params["arch"],
        "checkpoint": params["checkpoint"],
        "device": dev,
        "backend": backend,
        "backend_in_use": status.get("backend"),
        "rate_hz": rate_hz,
        "room_recognition": memory is not None,
        "stream": stream,
        "diagnostics": status,
        "overhead": _overhead(stream, status, codec_stats),
        "recognition": None if memory is None else _recognition(status, memory, period),
        "sensor": None if sensor_message is None else {
            key: status.get(key)
            for key in ("sensor_depth_in", "sensor_scale", "sensor_scale_pairs", "scale_mean_s", "filled_unpaired")
        },
        "log": str(log),
    }


def _publish_rooms(client: Any, blob: bytes, node: Any, diagnostics: Any, timeout: float) -> None:
    """Publish a room memory blob on ``rooms`` as the trainer does; return once the node reports it received.

    The publisher stays with the client (reliable, transient-local: the node has the
    memory whenever it subscribed). Raises RuntimeError when the node refuses it, exits,
    or reports nothing within ``timeout`` seconds.
    """
    from std_msgs.msg import UInt8MultiArray

    from depth_estimator_bench.roshelpers import wait_until
    from depth_estimator_ros.ros.qos import WEIGHTS_QOS

    data = array.array("B")
    data.frombytes(blob)  # the field setter's fast path, as the trainer publishes it
    client.node.create_publisher(UInt8MultiArray, "rooms", WEIGHTS_QOS).publish(UInt8MultiArray(data=data))

    def received() -> bool:
        node.check_alive()
        status = _estimator_status(diagnostics.latest())
        if status.get("rooms_rejected", 0):
            raise RuntimeError(f"the estimator refused the room memory ({len(blob)} bytes): "
                               f"{ {k: v for k, v in status.items() if k.startswith('rooms_')} }; log {node.log_path}")
        return status.get("rooms_received", 0) >= 1

    if not wait_until(received, timeout, interval=0.1):
        raise RuntimeError(f"the estimator reported no room memory received within {timeout:g} s; log {node.log_path}")


def _recognition(status: dict[str, Any], memory: dict[str, Any], period: int) -> dict[str, Any]:
    """Return the node's room-recognition counters of a recognition run (its last ``/diagnostics``)."""

    def count(key: str) -> int | None:
        value = status.get(key)
        return int(value) if isinstance(value, float) else None

    processed = count("frames_processed")
    mean_s = status.get("recognition_mean_s")
    return {
        "rooms_received": count("rooms_received"),
        "rooms_known": count("rooms_known"),
        "rooms_rejected": count("rooms_rejected"),
        "camera_room": memory["camera_room"],
        "room_in_force": status.get("room"),
        "room_similarity": status.get("room_similarity"),
        "switches": count("room_recognitions"),
        "held": count("recognition_held"),
        "descriptor_mean_ms": round(mean_s * 1e3, 3) if isinstance(mean_s, float) else None,
        # the node describes one frame every `period` published frames and has no counter of its own
        "descriptors": None if processed is None else processed // period,
        "recognition_period": period,
        "source": "estimator /diagnostics (room, room_similarity, room_recognitions = switches, recognition_held, "
        "rooms_*, recognition_mean_s over the last 100 descriptors); descriptors = frames_processed // "
        "recognition_period",
    }


def forward_speedups(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return torch's forward pass over onnxruntime's, per device and rate where both ran.

    Args:
        runs: the section's runs (``device``, ``rate_hz``, ``backend_in_use`` and
            ``overhead.model_mean_ms``, the node's own forward-pass mean); recognition
            runs are left out.

    Returns:
        One ``{"device", "rate_hz", "torch_ms", "onnxruntime_ms", "speedup"}`` per pair.
    """
    forward: dict[tuple[str, float, str], float] = {}
    for run in runs:
        if run.get("room_recognition"):
            continue
        ms = run["overhead"]["model_mean_ms"]
        if ms:
            forward[(run["device"], run["rate_hz"], run.get("backend_in_use") or run["backend"])] = ms
    pairs = []
    for (dev, rate, backend), torch_ms in forward.items():
        ort_ms = forward.get((dev, rate, "onnxruntime"))
        if backend == "torch" and ort_ms:
            pairs.append({"device": dev, "rate_hz": rate, "torch_ms": torch_ms, "onnxruntime_ms": ort_ms,
                          "speedup": round(torch_ms / ort_ms, 2)})
    return pairs


def _stream_summary(run: dict[str, Any]) -> dict[str, Any]:
    stream = run["stream"]
    return {
        "received_rate_hz": stream["received_rate_hz"],
        "sent": stream["sent"],
        "dropped": stream["dropped"],
        "drop_fraction": stream["drop_fraction"],
        "e2e_p50_ms": stream["latency"]["median_ms"],
        "e2e_p95_ms": stream["latency"]["p95_ms"],
    }


def recognition_pairs(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return each recognition run next to the plain run of the same device, backend and rate.

    Args:
        runs: the section's runs (``room_recognition``, ``stream``, ``recognition``).

    Returns:
        One ``{"device", "backend", "backend_in_use", "rate_hz", "plain", "recognition",
        "rate_change_hz"}`` per recognition run: ``plain`` and ``recognition`` hold the
        output rate, sent and dropped frames, e2e p50 / p95 (ms); ``recognition`` also the
        node's ``switches``, ``descriptors``, ``descriptor_mean_ms``, ``rooms_known`` and
        ``room_in_force``; ``rate_change_hz`` is recognition minus plain output rate.
    """
    plain = {(r["device"], r["backend"], r["rate_hz"]): r for r in runs if not r.get("room_recognition")}
    pairs = []
    for run in runs:
        if not run.get("room_recognition"):
            continue
        base = plain.get((run["device"], run["backend"], run["rate_hz"]))
        counters = run["recognition"]
        recognition = {**_stream_summary(run), **{key: counters[key] for key in (
            "switches", "descriptors", "descriptor_mean_ms", "rooms_known", "room_in_force", "camera_room")}}
        pairs.append({
            "device": run["device"], "backend": run["backend"], "backend_in_use": run["backend_in_use"],
            "rate_hz": run["rate_hz"],
            "plain": None if base is None else _stream_summary(base),
            "recognition": recognition,
            "rate_change_hz": None if base is None else round(
                run["stream"]["received_rate_hz"] - base["stream"]["received_rate_hz"], 3),
        })
    return pairs


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the lines of the final summary table for this section."""
    rows = []
    for run in result["runs"]:
        stream, overhead, recognition = run["stream"], run["overhead"], run.get("recognition")
        share = overhead["overhead_fraction_of_model"]
        value = (f"{stream['received_rate_hz']:.1f} Hz, e2e median {fmt_ms(stream['latency']['median_ms'])} "
                 f"p95 {fmt_ms(stream['latency']['p95_ms'])}, dropped {stream['dropped']}/{stream['sent']}")
        what = (f"{run['arch']} {run['device']} {run['backend_in_use'] or run['backend']}, 640x480 rgb8 "
                f"{'+ 16UC1 sensor depth ' if run.get('sensor') else ''}"
                f"@ {run['rate_hz']:g} Hz -> {result['settings'].get('depth_encoding', '32FC1')}")
        if recognition is None:
            value += f", outside model {'n/a' if share is None else f'{100 * share:.0f} %'}"
            target = ">= 55 Hz, p95 < 30 ms" if run["rate_hz"] >= 60 else ">= 30 Hz, p95 < 60 ms, overhead < 15 %"
        else:
            what += f" + room recognition ({recognition['rooms_known']} rooms)"
            value += (f", {recognition['descriptors']} descriptors of {fmt_ms(recognition['descriptor_mean_ms'])}, "
                      f"{recognition['switches']} switches, in force: {recognition['room_in_force']}")
            target = f">= {TARGETS['rate_hz_recognition']:g} Hz at 30 Hz in"
        rows.append({"section": "pipeline", "what": what, "value": value, "target": target})
    for pair in result.get("speedups", []):
        rows.append(
            {
                "section": "pipeline",
                "what": f"forward pass torch / onnxruntime, {pair['device']} @ {pair['rate_hz']:g} Hz",
                "value": f"{pair['torch_ms']:.1f} / {pair['onnxruntime_ms']:.1f} ms = {pair['speedup']:.2f}x",
                "target": f">= {TARGETS['forward_speedup']:g}x",
            }
        )
    return rows
