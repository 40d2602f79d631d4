"""Memory section: resident memory of the live pipeline over a long run while adapting.

The ``live`` executable (estimator and trainer in one process) runs as its own process
and receives RGB + sensor depth at 30 Hz over DDS, with adaptation on, for ``--minutes``
(default 10). Its resident set (``VmRSS``) is sampled every second from this process
(psutil when installed, else ``/proc/<pid>/status``); the peak is the kernel's high-water
mark ``VmHWM``. Growth is measured over the last half of the run, where start-up,
buffer filling and allocator warm-up are over: median RSS of the last 10 % of samples
against the median of the first 10 % of that half. Target (issue 6): under 5 %.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depth_estimator_bench.common import (
    preferred_device,
    pyplot,
    save_figure,
    write_section,
)
from depth_estimator_bench.machine import describe_machine, machine_label
from depth_estimator_ros.parameters import KINECT_TOPICS

__all__ = ["GROWTH_TARGET", "LIVE_MODULE", "LiveStream", "RssSampler", "rss_summary", "load_stream_messages", "run", "stream_through_live",
           "summary_rows"]

#: Largest acceptable RSS growth over the last half of the run (issue 6).
GROWTH_TARGET = 0.05
LIVE_MODULE = "depth_estimator_ros.ros.live"
# The live process's topics here: camera inputs (the trainer's sensor depth remapped with
# its node prefix, as the live module documents) and the estimator's output.
_LIVE_REMAP = {"image": KINECT_TOPICS["image"], "online_trainer:depth": KINECT_TOPICS["depth"]}
_SENSOR_DEPTH_TOPIC = KINECT_TOPICS["depth"]
_OUTPUT_TOPIC = "depth/image"


class RssSampler:
    """Sample a process's resident memory from a thread.

    Args:
        pid: process to watch.
        interval: seconds between samples.
    """

    def __init__(self, pid: int, interval: float = 1.0) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int, int]] = []  # (wall-clock s, rss bytes, peak bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> "RssSampler":
        """Start sampling."""
        self._thread.start()
        return self

    def _run(self) -> None:
        from depth_estimator_bench.roshelpers import read_rss

        while not self._stop.is_set():
            reading = read_rss(self.pid)
            if reading is None:
                return
            self.samples.append((time.time(), *reading))
            self._stop.wait(self.interval)

    def stop(self) -> list[tuple[float, int, int]]:
        """Stop sampling and return the samples."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        return list(self.samples)


def rss_summary(times_s: np.ndarray, rss: np.ndarray, peaks: np.ndarray) -> dict[str, Any]:
    """Summarise an RSS series.

    Args:
        times_s: ``(N,)`` sample times in seconds from the start of the run.
        rss: ``(N,)`` resident bytes.
        peaks: ``(N,)`` high-water-mark bytes.

    Returns:
        ``last_half_from_s``, ``peak_mib``, ``steady_mib`` (median of the last half), ``growth_last_half``
        (fraction, see the module docstring), ``slope_mib_per_min`` (least-squares over
        the last half), ``samples``.
    """
    if len(rss) < 4:
        raise ValueError(f"need at least 4 RSS samples, got {len(rss)}")
    half = len(rss) // 2
    tail_t, tail = times_s[half:], rss[half:].astype(np.float64)
    window = max(2, len(tail) // 10)
    start, end = float(np.median(tail[:window])), float(np.median(tail[-window:]))
    slope = float(np.polyfit(tail_t / 60.0, tail / 2**20, 1)[0]) if np.ptp(tail_t) > 0 else 0.0
    return {
        "samples": int(len(rss)),
        "last_half_from_s": round(float(times_s[half]), 2),
        "peak_mib": round(float(max(peaks.max(), rss.max())) / 2**20, 1),
        "steady_mib": round(float(np.median(tail)) / 2**20, 1),
        "last_half_start_mib": round(start / 2**20, 1),
        "last_half_end_mib": round(end / 2**20, 1),
        "growth_last_half": round((end - start) / start, 4),
        "slope_mib_per_min": round(slope, 3),
    }


def load_stream_messages(data: Path | None, count: int) -> tuple[list[Any], list[Any], str]:
    """Return ``count`` RGB and sensor-depth messages of a real stream (or a synthetic room).

    Args:
        data: a 7-Scenes (or other RGB-D folder) path; when None or missing, a synthetic
            640x480 room is used instead.
        count: frames to load (they are published in a loop).

    Returns:
        ``(rgb messages (rgb8), depth messages (32FC1 metres), source description)``.
    """
    from std_msgs.msg import Header

    from depth_estimator_ros.data import open_source
    from depth_estimator_ros.ros import codec

    if data is not None and Path(data).is_dir():
        source, description = open_source(str(data)), str(data)
    else:
        spec = f"synthetic:seed=3,frames={count},width=640,height=480"
        source, description = open_source(spec), f"{spec} (real stream not found at {data})"
    rgb_msgs, depth_msgs = [], []
    for index in range(min(count, len(source))):
        frame = source[index]
        header = Header(frame_id="camera_rgb_optical_frame")
        rgb_msgs.append(codec.rgb_to_image(frame.rgb, header))
        depth_msgs.append(codec.depth_to_image(frame.depth, header))
    return rgb_msgs, depth_msgs, description


def _plot(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    series = np.asarray(result["series"], dtype=np.float64).reshape(-1, 3)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    minutes = series[:, 0] / 60.0
    ax.plot(minutes, series[:, 1], label="RSS")
    ax.plot(minutes, series[:, 2], linestyle=":", label="peak (VmHWM)")
    summary = result["rss"]
    ax.axvline(result["window_start_s"] / 60.0, color="0.5", linewidth=0.8, label="first depth: soak starts")
    ax.axvspan(summary["last_half_from_s"] / 60.0, minutes[-1], color="0.9", label="last half (growth measured)")
    ax.set_xlabel("minutes since the process started")
    ax.set_ylabel("MiB")
    ax.set_title(
        f"live pipeline, {result['settings']['arch']} on {result['settings']['device']}, adapting, "
        f"30 Hz: growth over last half {100 * summary['growth_last_half']:.1f} % (target < 5 %)",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.suptitle(machine_label(result["machine"]), fontsize=8)
    return save_figure(fig, path)



@dataclass
class LiveStream:
    """What one RGB-D stream into the ``live`` process produced (see :func:`stream_through_live`)."""

    stream: dict[str, Any]  # pipeline.measure_stream's result (rate, drops, latency, samples)
    diagnostics: Any  # the DiagnosticsRecorder of /diagnostics
    started: float  # wall time the process was started, s
    window_start_s: float  # start of the measured window, s after `started`
    rss_series: np.ndarray  # (N, 3): s after `started`, RSS MiB, peak MiB
    rss: dict[str, Any]  # rss_summary over the measured window, plus peak_mib
    domain: int
    device: str
    description: str
    frames_looped: int
    log: Path


def stream_through_live(
    out_dir: Path,
    *,
    device: str,
    arch: str,
    data: Path | None,
    rate_hz: float,
    duration_s: float,
    frames: int,
    log_name: str,
    desc: str,
    sample_interval: float = 1.0,
    progress: bool = True,
) -> LiveStream:
    """Start ``live`` adapting, stream RGB + sensor depth into it and sample its RSS.

    Args:
        out_dir: output folder (the process log and base checkpoint go there).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        arch: architecture the pipeline runs.
        data: RGB-D folder streamed in a loop (synthetic room when missing).
        rate_hz: camera rate (RGB and depth each).
        duration_s: length of the measured window.
        frames: distinct frames looped.
        log_name: file name of the process log.
        desc: progress bar label.
        sample_interval: seconds between RSS samples.
        progress: show a tqdm bar.
    """
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from depth_estimator_bench.pipeline import measure_stream
    from depth_estimator_bench.roshelpers import (
        DiagnosticsRecorder,
        NodeProcess,
        RosClient,
        base_checkpoint,
        set_bench_domain,
    )
    from depth_estimator_ros.ros.qos import DIAGNOSTICS_QOS, SENSOR_QOS

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    domain = set_bench_domain()
    dev = preferred_device(device)
    rgb_msgs, depth_msgs, description = load_stream_messages(data, frames)
    checkpoint = base_checkpoint(out_dir, arch)
    params = {"arch": arch, "checkpoint": str(checkpoint), "device": dev, "adaptation_enabled": True}
    log = out_dir / log_name
    with NodeProcess(LIVE_MODULE, params, log, remappings=_LIVE_REMAP) as live, RosClient("bench_live_stream") as client:
        started = time.time()
        sampler = RssSampler(live.pid, interval=sample_interval).start()
        diagnostics = DiagnosticsRecorder(["online_trainer", "depth_estimator"])
        client.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics, DIAGNOSTICS_QOS)
        depth_pub = client.node.create_publisher(Image, _SENSOR_DEPTH_TOPIC, SENSOR_QOS)

        def publish_depth(index: int, stamp: Any) -> None:
            msg = depth_msgs[index % len(depth_msgs)]
            msg.header.stamp = stamp
            depth_pub.publish(msg)

        try:
            stream = measure_stream(
                client,
                [live],
                image_messages=rgb_msgs,
                rate_hz=rate_hz,
                warmup_s=0.0,
                measure_s=duration_s,
                start_timeout_s=180.0,
                image_topic=_LIVE_REMAP["image"],
                depth_topic=_OUTPUT_TOPIC,
                extra_publish=publish_depth,
                progress=progress,
                desc=desc,
            )
        finally:
            samples = sampler.stop()
    series = np.asarray([(t - started, rss / 2**20, peak / 2**20) for t, rss, peak in samples]).reshape(-1, 3)
    # The growth figure is about the adapting steady state: only samples from the measured
    # window count (start-up, model load and the first answer come before it).
    window_start_s = stream["window_start_unix_s"] - started
    in_window = series[series[:, 0] >= window_start_s]
    rss = rss_summary(in_window[:, 0], in_window[:, 1] * 2**20, in_window[:, 2] * 2**20)
    rss["peak_mib"] = round(float(series[:, 2].max()), 1)
    return LiveStream(stream, diagnostics, started, window_start_s, series, rss, domain, dev, description,
                      len(rgb_msgs), log)

def run(
    out_dir: Path,
    *,
    device: str = "auto",
    quick: bool = False,
    minutes: float = 10.0,
    arch: str = "fast",
    data: Path | None = None,
    rate_hz: float = 30.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the live pipeline for ``minutes`` and write ``memory.json`` / ``memory.png``.

    Args:
        out_dir: output folder.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when present).
        quick: 20 seconds instead of ``minutes``, fewer frames.
        minutes: length of the run.
        arch: architecture the pipeline runs.
        data: RGB-D folder streamed in a loop (synthetic room when missing).
        rate_hz: camera rate.
        progress: show a tqdm bar.

    Returns:
        ``section``, ``machine``, ``settings``, ``rss`` (see :func:`rss_summary`),
        ``stream`` (depth rate and latency while adapting), ``trainer`` (its last
        diagnostics) and ``series`` ([seconds, RSS MiB, peak MiB] per sample).
    """
    duration_s = min(20.0, minutes * 60.0) if quick else minutes * 60.0
    live = stream_through_live(
        out_dir, device=device, arch=arch, data=data, rate_hz=rate_hz, duration_s=duration_s,
        frames=30 if quick else 150, log_name="memory_live.log", desc=f"memory soak {duration_s / 60:.1f} min",
        sample_interval=0.5 if quick else 1.0, progress=progress,
    )
    stream, series, rss = live.stream, live.rss_series, live.rss
    stream.pop("samples")
    result: dict[str, Any] = {
        "section": "memory",
        "machine": describe_machine(),
        "settings": {
            "quick": quick,
            "duration_s": duration_s,
            "arch": arch,
            "device": live.device,
            "rate_hz": rate_hz,
            "adaptation_enabled": True,
            "stream": live.description,
            "frames_looped": live.frames_looped,
            "ros_domain_id": live.domain,
            "rss_source": "psutil" if _has_psutil() else "/proc/<pid>/status VmRSS, VmHWM",
        },
        "target_growth_last_half": GROWTH_TARGET,
        "window_start_s": round(float(live.window_start_s), 2),
        "rss": rss,
        "stream": stream,
        "diagnostics": live.diagnostics.latest(),
        "series": [[round(t, 2), round(r, 2), round(p, 2)] for t, r, p in series],
        "log": str(live.log),
    }
    return write_section(out_dir, "memory", result, _plot)


def _has_psutil() -> bool:
    try:
        import psutil  # noqa: F401
    except ImportError:
        return False
    return True


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the lines of the final summary table for this section."""
    rss, stream, settings = result["rss"], result["stream"], result["settings"]
    return [
        {
            "section": "memory",
            "what": f"live {settings['arch']} {settings['device']}, adapting, "
            f"{settings['duration_s'] / 60:.1f} min @ {settings['rate_hz']:g} Hz",
            "value": f"peak {rss['peak_mib']} MiB, steady {rss['steady_mib']} MiB, "
            f"growth last half {100 * rss['growth_last_half']:.1f} %, depth {stream['received_rate_hz']:.1f} Hz",
            "target": "growth < 5 %",
        }
    ]
