"""Soak section: the live pipeline under a 60 Hz VGA RGB-D stream for minutes while adapting.

The ``live`` executable (estimator and trainer in one process) runs as its own process
and receives 640x480 RGB and sensor depth at ``rate_hz`` (default 60) over DDS, with
adaptation on, for ``minutes`` (default 10). Recorded over time (issue 7, load):

- estimator latency, header stamp at publish -> depth received here, per answered
  frame; bounded means the last tenth of the run is no slower than the first (the
  estimator keeps only the newest frame and drops stale ones instead of queueing);
- resident memory of the process (``VmRSS``, peak ``VmHWM``), growth over the last half;
- the trainer's replay-buffer fill against its capacity;
- the weights version of trainer and estimator (adaptation keeps publishing, the
  estimator keeps swapping them in), and the estimator's stale-frame drops.

Only ``bench --only soak`` runs it (it is not in the default set of ``make bench``):
``bench --only soak --minutes 10 --device cpu``. Numbers are reported, never asserted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from depth_estimator_bench.common import (
    latency_stats,
    pyplot,
    save_figure,
    write_section,
)
from depth_estimator_bench.machine import describe_machine, machine_label
from depth_estimator_bench.memory import GROWTH_TARGET, stream_through_live

__all__ = ["SOAK_TARGETS", "latency_drift", "run", "summary_rows"]

#: Reported next to the numbers: latency of the last tenth at most 1.5x the first tenth's
#: (bounded, no queueing), RSS growth over the last half under 5 %, buffer never above capacity.
SOAK_TARGETS: dict[str, float] = {"latency_drift_max": 1.5, "rss_growth_max": GROWTH_TARGET}
# Camera topics of the live process here (the trainer's sensor depth remapped with its
# node prefix, as ros/live.py documents) and the estimator's output.


def latency_drift(samples: np.ndarray) -> dict[str, Any]:
    """Compare the latency of the first and last tenth of a run.

    Args:
        samples: ``(N, 2)`` rows of [seconds since the window start, latency in seconds].

    Returns:
        ``first_tenth`` and ``last_tenth`` latency stats (ms) and ``p95_ratio`` (last / first;
        None with fewer than 20 samples).
    """
    samples = np.asarray(samples, dtype=np.float64).reshape(-1, 2)
    if len(samples) < 20:
        return {"first_tenth": latency_stats([]), "last_tenth": latency_stats([]), "p95_ratio": None}
    tenth = len(samples) // 10
    first, last = latency_stats(samples[:tenth, 1]), latency_stats(samples[-tenth:, 1])
    ratio = last["p95_ms"] / first["p95_ms"] if first["p95_ms"] else None
    return {"first_tenth": first, "last_tenth": last, "p95_ratio": None if ratio is None else round(ratio, 3)}


def _plot(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
    (ax_lat, ax_rss), (ax_fill, ax_ver) = axes
    start = result["window_start_s"]
    latency = np.asarray(result["latency_series"], dtype=np.float64).reshape(-1, 2)
    ax_lat.plot((latency[:, 0] + start) / 60.0, latency[:, 1] * 1e3, ".", markersize=2)
    ax_lat.set_ylabel("publish -> depth received (ms)")
    ax_lat.set_title(f"estimator latency, p95 last/first tenth {result['latency_drift']['p95_ratio']}", fontsize=9)
    rss = np.asarray(result["rss_series"], dtype=np.float64).reshape(-1, 3)
    ax_rss.plot(rss[:, 0] / 60.0, rss[:, 1], label="RSS")
    ax_rss.plot(rss[:, 0] / 60.0, rss[:, 2], linestyle=":", label="peak (VmHWM)")
    ax_rss.set_ylabel("MiB")
    ax_rss.set_title(f"live process memory, growth last half {100 * result['rss']['growth_last_half']:.1f} %",
                     fontsize=9)
    ax_rss.legend(fontsize=8)
    fill = np.asarray(result["buffer_series"], dtype=np.float64).reshape(-1, 3)
    ax_fill.plot(fill[:, 0] / 60.0, fill[:, 1], label="buffer fill")
    ax_fill.plot(fill[:, 0] / 60.0, fill[:, 2], linestyle="--", color="r", label="capacity")
    ax_fill.set_ylabel("frames")
    ax_fill.set_xlabel("minutes since the process started")
    ax_fill.legend(fontsize=8)
    for key, label in (("trainer", "trainer version"), ("estimator", "estimator weights in force")):
        series = np.asarray(result["version_series"][key], dtype=np.float64).reshape(-1, 2)
        ax_ver.step(series[:, 0] / 60.0, series[:, 1], where="post", label=label)
    ax_ver.set_ylabel("weights version")
    ax_ver.set_xlabel("minutes since the process started")
    ax_ver.legend(fontsize=8)
    settings = result["settings"]
    fig.suptitle(
        f"soak: live {settings['arch']} on {settings['device']}, 640x480 @ {settings['rate_hz']:g} Hz, adapting, "
        f"{settings['duration_s'] / 60:.1f} min -- {machine_label(result['machine'])}",
        fontsize=9,
    )
    return save_figure(fig, path)


def run(
    out_dir: Path,
    *,
    minutes: float = 10.0,
    rate_hz: float = 60.0,
    quick: bool = False,
    device: str = "auto",
    arch: str = "fast",
    data: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Stream RGB-D into the live pipeline for ``minutes``; write ``soak.json`` / ``soak.png``.

    Args:
        out_dir: output folder (the process log and base checkpoint go there too).
        minutes: length of the measured run.
        rate_hz: camera rate (RGB and depth each).
        quick: 30 seconds instead of ``minutes``, fewer distinct frames.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when present).
        arch: architecture the pipeline runs.
        data: RGB-D folder streamed in a loop (a synthetic 640x480 room when missing).
        progress: show a tqdm bar.

    Returns:
        ``section``, ``machine``, ``settings``, ``targets``, ``stream`` (rate, drops and
        latency over the run), ``latency_drift`` (see :func:`latency_drift`), ``rss`` (see
        ``memory.rss_summary``), ``buffer`` (max fill, capacity), ``weights`` (versions at
        the end, updates seen by the estimator), ``diagnostics`` (last values) and the
        series behind the plot: ``latency_series``, ``rss_series``, ``buffer_series``,
        ``version_series``.
    """
    duration_s = 30.0 if quick else minutes * 60.0
    live = stream_through_live(
        out_dir, device=device, arch=arch, data=data, rate_hz=rate_hz, duration_s=duration_s,
        frames=30 if quick else 150, log_name="soak_live.log",
        desc=f"soak {duration_s / 60:.1f} min @ {rate_hz:g} Hz", progress=progress,
    )
    stream, rss, rss_series, started = live.stream, live.rss, live.rss_series, live.started
    diagnostics = live.diagnostics
    statuses = diagnostics.latest()
    fill = diagnostics.series("buffer_fill")
    capacity = diagnostics.series("buffer_capacity")
    trainer_version = diagnostics.series("version")
    estimator_version = diagnostics.series("weights_version")
    stale = diagnostics.series("dropped_stale")
    latency_series = stream.pop("samples")
    capacity_now = capacity[-1][1] if capacity else float("nan")
    buffer_series = [[round(t - started, 2), value, capacity_now] for t, value in fill]
    estimator_versions = [v for _, v in estimator_version]
    result: dict[str, Any] = {
        "section": "soak",
        "machine": describe_machine(),
        "settings": {
            "quick": quick,
            "duration_s": duration_s,
            "arch": arch,
            "device": live.device,
            "rate_hz": rate_hz,
            "camera_size": [480, 640],
            "adaptation_enabled": True,
            "stream": live.description,
            "frames_looped": live.frames_looped,
            "ros_domain_id": live.domain,
        },
        "targets": SOAK_TARGETS,
        "window_start_s": round(float(live.window_start_s), 2),
        "stream": stream,
        "latency_drift": latency_drift(np.asarray(latency_series)),
        "rss": rss,
        "buffer": {
            "max_fill": max((v for _, v in fill), default=None),
            "capacity": capacity_now,
            "within_capacity": all(v <= c for (_, v), (_, c) in zip(fill, capacity)),
        },
        "weights": {
            "trainer_version_end": int(trainer_version[-1][1]) if trainer_version else None,
            "estimator_version_end": int(estimator_versions[-1]) if estimator_versions else None,
            "estimator_updates_seen": len(set(estimator_versions)) - 1 if estimator_versions else 0,
        },
        "estimator_dropped_stale_end": stale[-1][1] if stale else 0,
        "diagnostics": statuses,
        "latency_series": latency_series,
        "rss_series": [[round(t, 2), round(r, 2), round(p, 2)] for t, r, p in rss_series],
        "buffer_series": buffer_series,
        "version_series": {
            "trainer": [[round(t - started, 2), v] for t, v in trainer_version],
            "estimator": [[round(t - started, 2), v] for t, v in estimator_version],
        },
        "log": str(live.log),
    }
    return write_section(out_dir, "soak", result, _plot)


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the lines of the final summary table for this section."""
    settings, stream, drift = result["settings"], result["stream"], result["latency_drift"]
    rss, buffer, weights = result["rss"], result["buffer"], result["weights"]
    return [
        {
            "section": "soak",
            "what": f"live {settings['arch']} {settings['device']}, adapting, 640x480 @ {settings['rate_hz']:g} Hz, "
            f"{settings['duration_s'] / 60:.1f} min",
            "value": f"depth {stream['received_rate_hz']:.1f} Hz "
            f"(stale dropped {result['estimator_dropped_stale_end']:g}), "
            f"latency p95 first/last tenth {drift['first_tenth']['p95_ms']}/{drift['last_tenth']['p95_ms']} ms, "
            f"RSS growth last half {100 * rss['growth_last_half']:.1f} %, buffer max {buffer['max_fill']}/"
            f"{buffer['capacity']:g}, weights v{weights['trainer_version_end']} "
            f"({weights['estimator_updates_seen']} updates in the estimator)",
            "target": "latency p95 last/first <= 1.5, RSS growth < 5 %, buffer <= capacity, weights keep updating",
        }
    ]
