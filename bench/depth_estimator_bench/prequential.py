"""Prequential ("test, then train") evaluation of online adaptation on a real-time stream.

The stream is played exactly as the live system sees it:

- frame ``i`` becomes available at wall time ``t0 + i / rate_hz``;
- the *estimator* loop always takes the newest available frame (older ones are dropped,
  like a keep-last-1 subscription), predicts it with the weights in force at that
  moment (:meth:`Predictor.predict_versioned`) and scores it against its sensor depth
  (invalid pixels and depths outside the model's range are ignored);
- a *trainer* thread offers every frame to the :class:`AdaptationEngine` when it
  becomes available (the trainer node subscribes to all frames); accepted weights
  reach the predictor through ``on_update_state``, the same in-process hook the live
  node uses.

A frame is always scored before it can be trained on: rounds hold out the newest
frames, and a round takes far longer than one prediction.

Both runs (adaptation on, adaptation off) stream the same frames in the same process,
one after the other. Forgetting is measured on a second sequence (e.g. the synthetic
rooms the base model was pretrained on): pooled metrics with the base weights and
with the weights in force at the end of the adapted stream.

Metrics per window and per half are pooled over pixels (RMSE over all valid pixels of
the window, not a mean of per-frame RMSEs): :func:`~depth_estimator_ros.learning.metrics.window_metrics`
and :func:`~depth_estimator_ros.learning.metrics.pool_frame_metrics`, the definitions
``make demo`` reports too.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depth_estimator_ros.adaptation.config import AdaptationConfig
from depth_estimator_ros.adaptation.engine import SHARED_PROCESS_SWITCH_INTERVAL_S, AdaptationEngine
from depth_estimator_ros.adaptation.sensor_scale import SensorScale
from depth_estimator_ros.atomic import write_json
from depth_estimator_ros.data.frame import Frame
from depth_estimator_ros.learning.losses import valid_mask
from depth_estimator_ros.learning.metrics import POOLED_METRICS, compute_metrics, pool_frame_metrics, window_metrics
from depth_estimator_ros.learning.predictor import Predictor
from depth_estimator_ros.learning.transforms import frame_focal
from depth_estimator_ros.models.base import DepthModel

from depth_estimator_bench.common import pyplot, save_figure

__all__ = [
    "load_frames",
    "stream",
    "Budget",
    "stream_budgeted",
    "evaluate_frames",
    "run_prequential",
    "plot_result",
    "write_result",
    "run_benchmark",
]


def load_frames(
    source: Sequence[Frame], count: int | None = None, *, spread: bool = False, progress: bool = False
) -> list[Frame]:
    """Read the first ``count`` frames of ``source`` into memory (all when None).

    Frames are loaded before the stream starts so that decoding files does not compete
    with the estimator and the trainer for the CPU (a camera driver delivers decoded
    frames).

    Args:
        source: a frame source.
        count: frames to read, or None for all.
        spread: take ``count`` evenly spaced frames instead of the first ones (a sample of
            every room of a folder of rooms rather than the first room).
        progress: show a progress bar.

    Returns:
        The frames, each with sensor depth.
    """
    n = len(source) if count is None else min(int(count), len(source))
    if n < 1:
        raise ValueError(f"the source {getattr(source, 'name', '')!r} has no frames to stream")
    indices = range(n)
    if spread and n < len(source):
        indices = sorted({int(round(i)) for i in np.linspace(0, len(source) - 1, n)})
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc=f"loading {getattr(source, 'name', 'frames')}", unit="frame")
    frames = [source[i] for i in indices]
    for frame in frames:
        if frame.depth is None:
            raise ValueError(f"frame {frame.name!r} has no sensor depth; prequential evaluation needs RGB-D frames")
    return frames


def _score(depth: np.ndarray, frame: Frame, min_depth: float, max_depth: float) -> dict[str, float]:
    target = frame.depth
    assert target is not None
    if target.shape != depth.shape:
        raise ValueError(f"frame {frame.name!r}: sensor depth {target.shape} differs from the image {depth.shape}")
    m = compute_metrics(depth, target, valid_mask(target, min_depth, max_depth))
    keys = ("rmse", "abs_rel", "delta1", "n_valid", "si_log", "boundary_f1", "n_pairs", "boundary_counts")
    return {key: m[key] for key in keys}


def stream(
    predictor: Predictor,
    frames: Sequence[Frame],
    *,
    rate_hz: float = 30.0,
    engine: AdaptationEngine | None = None,
    progress: bool = False,
    label: str = "stream",
    scale: SensorScale | None = None,
) -> dict[str, Any]:
    """Play ``frames`` at ``rate_hz`` through the estimator (and the engine, when given).

    Args:
        predictor: the estimator's predictor; its weights are swapped by ``engine``.
        frames: RGB-D frames (sensor depth at the image size).
        rate_hz: stream rate in frames per second.
        engine: the adaptation engine, or None for a frozen model. It is started here
            and stopped at the end; ``on_update_state`` is wired to ``predictor``.
        progress: show a progress bar.
        label: progress bar label.
        scale: the estimator's sensor scale (``sensor_scale``), or None: each predicted
            frame is rescaled by it, then compared with its sensor depth for the next.

    Returns:
        ``per_frame`` (one row per scored frame: ``index``, ``t`` stream seconds,
        ``version``, ``latency_s`` from availability to depth, ``predict_s``, metrics;
        the metrics are computed after the stream from the model-resolution depth, which
        is then brought to the image size as the estimator does, so ``predict_s`` leaves
        out that resize),
        ``frames_streamed``, ``frames_scored``, ``wall_s``, ``estimator_fps``,
        ``predict_ms_mean``, ``versions`` and ``engine`` (its final ``stats()`` or None).
    """
    if not rate_hz > 0:
        raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
    n = len(frames)
    period = 1.0 / rate_hz
    lo, hi = predictor.min_depth, predictor.max_depth
    stop = threading.Event()
    feeder: threading.Thread | None = None
    predictor.predict(frames[0].rgb, frame_focal(frames[0]))  # warm-up (allocations, kernel choice), as a node does before its first frame
    t0 = time.monotonic() + 0.05
    if engine is not None:
        engine.on_update_state = lambda version, state: predictor.load_over_base(state, version=version)
        engine.start()

        def feed() -> None:
            for i, frame in enumerate(frames):
                delay = t0 + i * period - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return
                engine.offer(frame)

        feeder = threading.Thread(target=feed, name="prequential-trainer-feed", daemon=True)
        feeder.start()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=label, unit="frame")
    rows: list[dict[str, Any]] = []
    maps: list[np.ndarray] = []  # model-resolution depth, scored after the stream
    last = -1
    try:
        while last < n - 1:
            now = time.monotonic()
            newest = min(n - 1, int(math.floor((now - t0) * rate_hz)))
            if newest <= last:
                time.sleep(max(0.0, t0 + (last + 1) * period - now))
                continue
            frame = frames[newest]
            start = time.monotonic()
            small, version = predictor.predict_versioned(frame.rgb, focal=frame_focal(frame), upsample=False)
            if scale is not None:
                own, small = small, scale.apply(small, newest * period)
                scale.observe(own, frame.depth, newest * period)
            end = time.monotonic()
            rows.append({
                "index": newest,
                "t": newest * period,
                "version": version,
                "latency_s": end - (t0 + newest * period),
                "predict_s": end - start,
                "room": None if engine is None else engine.room,
            })
            maps.append(small)
            if bar is not None:
                bar.update(newest - last)
            last = newest
    finally:
        wall = time.monotonic() - t0
        stop.set()
        if feeder is not None:
            feeder.join(timeout=30.0)
        if engine is not None:
            engine.stop(timeout=120.0)
        if bar is not None:
            bar.close()
    # Scored after the stream, not on the estimator's thread: the metrics (boundary F1 at the
    # image size) cost more than a prediction and took frames and rounds from what is measured.
    for row, small in zip(rows, maps):
        frame = frames[row["index"]]
        row.update(_score(predictor.upsample(small, frame.rgb.shape[:2]), frame, lo, hi))
    first_seen: dict[int, float] = {}
    for r in rows:
        first_seen.setdefault(r["version"], r["t"])
    return {
        "per_frame": rows,
        "frames_streamed": n,
        "frames_scored": len(rows),
        "wall_s": wall,
        "estimator_fps": len(rows) / wall if wall > 0 else math.nan,
        "predict_ms_mean": 1000.0 * float(np.mean([r["predict_s"] for r in rows])) if rows else math.nan,
        "latency_ms_mean": 1000.0 * float(np.mean([r["latency_s"] for r in rows])) if rows else math.nan,
        "versions": [{"version": v, "first_t": t} for v, t in sorted(first_seen.items())],
        "engine": None if engine is None else engine.stats(),
    }


@dataclass(frozen=True)
class Budget:
    """The cost model of a deterministic, compute-budgeted stream.

    A round runs after every ``round_every`` frames (when enough new frames are in) and
    its weights are in force ``lag`` frames later: the stream time a round and the
    hand-over take on the target machine, stated instead of measured. Two settings
    compared under one budget see the same frames with the same rounds, whatever the
    machine's speed that day.

    Attributes:
        round_every: frames between round starts (30 at 30 Hz: one round a second).
        lag: frames from a round's start until its trained weights predict.
        switch_lag: frames from a round's start until weights its test-then-train
            selection switched to predict (they are published before training).
    """

    round_every: int = 30
    lag: int = 15
    switch_lag: int = 5

    def __post_init__(self) -> None:
        if self.round_every < 1 or self.lag < 0 or not 0 <= self.switch_lag <= self.lag:
            raise ValueError(
                f"a budget needs round_every >= 1 and 0 <= switch_lag <= lag, got {self.round_every}, {self.lag}, "
                f"{self.switch_lag}"
            )

    @classmethod
    def parse(cls, text: str) -> "Budget":
        """Return the budget ``"N:K[:S]"`` describes (a round per N frames, in force K frames later, switches S)."""
        try:
            values = [int(v) for v in text.split(":")]
            if len(values) not in (2, 3):
                raise ValueError
        except ValueError:
            raise ValueError(f"expected a budget N:K or N:K:S such as 20:20:5, got {text!r}") from None
        return cls(*values)


def stream_budgeted(
    predictor: Predictor,
    frames: Sequence[Frame],
    budget: Budget,
    *,
    rate_hz: float = 30.0,
    engine: AdaptationEngine | None = None,
    before_frame: Callable[[int], None] | None = None,
    progress: bool = False,
    label: str = "stream",
    scale: SensorScale | None = None,
) -> dict[str, Any]:
    """Play ``frames`` in stream time under ``budget``: deterministic, no threads, no clock.

    Each frame is predicted with the weights in force and scored first, then offered to
    the engine (test, then train); every ``budget.round_every`` frames the engine runs a
    round in this thread, and what it publishes reaches ``predictor`` ``budget.lag``
    frames later. The rows are those of :func:`stream` (``latency_s`` is the stated
    lag), plus ``room``: the engine's room in force when the frame was scored.
    ``before_frame(i)`` is called before frame ``i`` is scored (a tour snapshots the
    room memory at each visit's start). ``scale`` as in :func:`stream` (a pair counts
    from the next frame on, as in the estimator).
    """
    pending: list[tuple[int, int, dict]] = []
    published: list[tuple[int, dict]] = []
    if engine is not None:
        engine.on_update_state = lambda version, state: published.append((version, state))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(frames), desc=label, unit="frame")
    lo, hi = predictor.min_depth, predictor.max_depth
    rows: list[dict[str, Any]] = []
    start = time.monotonic()
    for i, frame in enumerate(frames):
        if before_frame is not None:
            before_frame(i)
        for due in [p for p in pending if p[0] <= i]:
            pending.remove(due)
            if due[1] > predictor.version:  # a later version already in force wins
                predictor.load_over_base(due[2], version=due[1])
        t = time.monotonic()
        depth, version = predictor.predict_versioned(frame.rgb, focal=frame_focal(frame))
        if scale is not None:
            own, depth = depth, scale.apply(depth, i / rate_hz)
            scale.observe(own, frame.depth, i / rate_hz)
        row: dict[str, Any] = {
            "index": i, "t": i / rate_hz, "version": version, "latency_s": budget.lag / rate_hz,
            "predict_s": time.monotonic() - t, "room": None if engine is None else engine.room,
        }
        row.update(_score(depth, frame, lo, hi))
        rows.append(row)
        if engine is not None:
            engine.offer(frame)
            published.clear()
            engine.check_change()  # between rounds: a room change switches a few frames in, not a round later
            pending += [(i + budget.switch_lag, version, state) for version, state in published]
            if (i + 1) % budget.round_every == 0 and engine.buffer.new_count >= engine.config.min_new_frames:
                published.clear()
                result = engine.run_round()
                trained = result.outcome == "accepted"
                for k, (version, state) in enumerate(published):
                    last = k == len(published) - 1
                    pending.append((i + (budget.lag if trained and last else budget.switch_lag), version, state))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    wall = time.monotonic() - start
    first_seen: dict[int, float] = {}
    for r in rows:
        first_seen.setdefault(r["version"], r["t"])
    return {
        "per_frame": rows,
        "frames_streamed": len(frames),
        "frames_scored": len(rows),
        "wall_s": wall,
        "estimator_fps": math.nan,  # not a real-time run
        "predict_ms_mean": 1000.0 * float(np.mean([r["predict_s"] for r in rows])) if rows else math.nan,
        "latency_ms_mean": 1000.0 * budget.lag / rate_hz,
        "versions": [{"version": v, "first_t": t} for v, t in sorted(first_seen.items())],
        "engine": None if engine is None else engine.stats(),
        "budget": {"round_every": budget.round_every, "lag": budget.lag, "switch_lag": budget.switch_lag},
    }


def evaluate_frames(predictor: Predictor, frames: Sequence[Frame]) -> dict[str, float]:
    """Return pooled RMSE / AbsRel / delta1 of ``predictor`` on ``frames`` (no timing)."""
    return pool_frame_metrics(
        [_score(predictor.predict(f.rgb, frame_focal(f)), f, predictor.min_depth, predictor.max_depth) for f in frames]
    )


def _summarise(run: dict[str, Any], window_s: float, duration_s: float, threshold_m: float) -> dict[str, Any]:
    rows = run["per_frame"]
    windows = window_metrics(rows, window_s, duration_s)
    reached = next((w["t1"] for w in windows if w["frames"] and w["rmse"] < threshold_m), None)
    summary = {k: v for k, v in run.items() if k != "per_frame"}
    summary.update(
        windows=windows,
        overall=pool_frame_metrics(rows),
        first_half=pool_frame_metrics([r for r in rows if r["t"] < duration_s / 2]),
        second_half=pool_frame_metrics([r for r in rows if r["t"] >= duration_s / 2]),
        time_to_rmse_below_s=reached,
        per_frame=[
            {k: (round(v, 5) if isinstance(v, float) else v) for k, v in r.items()} for r in rows
        ],
    )
    return summary


def run_prequential(
    model: DepthModel,
    frames: Sequence[Frame],
    *,
    config: AdaptationConfig | None = None,
    rate_hz: float = 30.0,
    base_frames: Sequence[Frame] | None = None,
    forgetting_frames: Sequence[Frame] | None = None,
    device: str = "cpu",
    seed: int = 0,
    window_s: float = 2.0,
    threshold_m: float = 0.5,
    backend: str = "torch",
    sensor_scale: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Stream ``frames`` without and then with adaptation and measure forgetting.

    Args:
        model: the start model (it is copied, never modified).
        frames: the RGB-D stream.
        config: engine settings (defaults when None).
        rate_hz: stream rate (30 Hz: a Kinect).
        base_frames: base-domain frames for the engine's base replay.
        forgetting_frames: a second sequence scored with the base weights and with the
            adapted weights at the end of the stream; skipped when None.
        device: torch device of predictor and engine.
        seed: engine seed.
        window_s: metric window length in stream seconds.
        threshold_m: RMSE threshold of the time-to-threshold figure (cold start).
        backend: the estimator's inference backend (``torch`` | ``onnxruntime`` | ``auto``,
            :class:`~depth_estimator_ros.learning.predictor.Predictor`); training is torch.
        sensor_scale: the adapting stream's estimator rescales its output by the sensor's
            depth ratio of the last frames (the estimator's ``sensor_scale``); the frozen
            stream never does, and forgetting scores the weights alone.
        progress: show progress bars.

    Returns:
        ``settings``, ``frozen`` and ``adapted`` (see :func:`stream`, plus ``windows``,
        ``overall``, ``first_half``, ``second_half``, ``time_to_rmse_below_s``),
        ``forgetting`` and ``summary``.
    """
    config = AdaptationConfig() if config is None else config
    duration = len(frames) / rate_hz
    import torch

    def make_predictor() -> Predictor:
        return Predictor(model, device, backend=backend, threads=torch.get_num_threads())

    frozen = stream(make_predictor(), frames, rate_hz=rate_hz, progress=progress, label="frozen")
    predictor = make_predictor()
    engine = AdaptationEngine(model, config, base_frames=base_frames, device=device, seed=seed)
    # Inference and training share this interpreter now, exactly as in `live`.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(SHARED_PROCESS_SWITCH_INTERVAL_S)
    try:
        adapted = stream(predictor, frames, rate_hz=rate_hz, engine=engine, progress=progress, label="adapting",
                         scale=SensorScale(predictor.min_depth, predictor.max_depth) if sensor_scale else None)
    finally:
        sys.setswitchinterval(switch_interval)
    forgetting: dict[str, Any] | None = None
    if forgetting_frames:
        before = evaluate_frames(Predictor(model, device), forgetting_frames)
        after = evaluate_frames(predictor, forgetting_frames)
        forgetting = {
            "frames": len(forgetting_frames),
            "before": before,
            "after": after,
            "rmse_change_percent": 100.0 * (after["rmse"] / before["rmse"] - 1.0),
        }
    frozen_s = _summarise(frozen, window_s, duration, threshold_m)
    adapted_s = _summarise(adapted, window_s, duration, threshold_m)
    stats = adapted["engine"]
    ratio = adapted_s["second_half"]["rmse"] / frozen_s["second_half"]["rmse"]
    summary = {
        "second_half_rmse_adapted": adapted_s["second_half"]["rmse"],
        "second_half_rmse_frozen": frozen_s["second_half"]["rmse"],
        "second_half_rmse_ratio": ratio,
        "second_half_abs_rel_adapted": adapted_s["second_half"]["abs_rel"],
        "second_half_abs_rel_frozen": frozen_s["second_half"]["abs_rel"],
        "second_half_delta1_adapted": adapted_s["second_half"]["delta1"],
        "second_half_delta1_frozen": frozen_s["second_half"]["delta1"],
        "second_half_si_log_adapted": adapted_s["second_half"]["si_log"],
        "second_half_si_log_frozen": frozen_s["second_half"]["si_log"],
        "second_half_boundary_f1_adapted": adapted_s["second_half"]["boundary_f1"],
        "second_half_boundary_f1_frozen": frozen_s["second_half"]["boundary_f1"],
        "estimator_fps_adapting": adapted_s["estimator_fps"],
        "estimator_fps_frozen": frozen_s["estimator_fps"],
        "rounds_run": stats["rounds_run"],
        "rounds_accepted": stats["rounds_accepted"],
        "rounds_rejected_nan": stats["rounds_rejected_nan"],
        "rounds_rejected_worse": stats["rounds_rejected_worse"],
        "rounds_aborted": stats["rounds_aborted"],
        "rounds_failed": stats["rounds_failed"],
        "rounds_switched": stats["rounds_switched"],
        "feature_cache_nbytes": stats["feature_cache_nbytes"],
        "final_version": stats["version"],
        "forgetting_rmse_percent": None if forgetting is None else forgetting["rmse_change_percent"],
        "time_to_rmse_below_s_adapted": adapted_s["time_to_rmse_below_s"],
        "time_to_rmse_below_s_frozen": frozen_s["time_to_rmse_below_s"],
        "threshold_m": threshold_m,
    }
    return {
        "settings": {
            "arch": model.arch,
            "model_config": model.config,
            "rate_hz": rate_hz,
            "frames": len(frames),
            "duration_s": duration,
            "window_s": window_s,
            "device": str(device),
            "backend": predictor.backend,
            "backend_note": predictor.backend_note,
            "seed": seed,
            "engine": config.to_dict(),
            "sensor_scale": sensor_scale,
            "base_frames": 0 if base_frames is None else len(base_frames),
        },
        "summary": summary,
        "frozen": frozen_s,
        "adapted": adapted_s,
        "forgetting": forgetting,
    }


def write_result(result: dict[str, Any], path: Path) -> Path:
    """Write a result as indented JSON (NaN becomes null), atomically, and return the path."""
    return write_json(path, result)


def plot_result(result: dict[str, Any], path: Path) -> Path:
    """Plot RMSE, AbsRel and delta1 per window over stream time, adapted vs frozen, as a PNG.

    Args:
        result: a :func:`run_prequential` result.
        path: the PNG to write.

    Returns:
        ``path``.
    """
    plt = pyplot()

    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    labels = {"rmse": "RMSE (m)", "abs_rel": "AbsRel", "delta1": "δ < 1.25"}
    for run, style in (("frozen", "--"), ("adapted", "-")):
        windows = result[run]["windows"]
        centres = [(w["t0"] + w["t1"]) / 2 for w in windows]
        for ax, key in zip(axes, POOLED_METRICS):
            label = f"adaptation {'on' if run == 'adapted' else 'off'}"
            ax.plot(centres, [w[key] for w in windows], style, marker=".", label=label)
    for v in result["adapted"]["versions"][1:]:
        for ax in axes:
            ax.axvline(v["first_t"], color="0.85", linewidth=0.6, zorder=0)
    for ax, key in zip(axes, POOLED_METRICS):
        ax.set_ylabel(labels[key])
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[-1].set_xlabel("stream time (s); grey lines: new weights in force")
    s, settings = result["summary"], result["settings"]
    fig.suptitle(
        f"prequential, {settings['arch']} at {settings['rate_hz']:g} Hz: second-half RMSE "
        f"{s['second_half_rmse_adapted']:.3f} m adapted vs {s['second_half_rmse_frozen']:.3f} m frozen",
        fontsize=10,
    )
    return save_figure(fig, Path(path))


def run_benchmark(
    data: Path,
    out_dir: Path,
    *,
    device: str = "cpu",
    quick: bool = False,
    arch: str = "fast",
    checkpoint: Path | None = None,
    rate_hz: float = 30.0,
) -> dict[str, Any]:
    """Run the prequential comparison on an RGB-D stream for the benchmark suite.

    Args:
        data: a stream ``data.open_source`` opens (e.g. the 7-Scenes kitchen folder).
        out_dir: folder for ``adaptation_prequential.json`` / ``.png``.
        device: torch device.
        quick: stream the first 300 frames only.
        arch: architecture to build when ``checkpoint`` is None (cold start).
        checkpoint: start model; None builds ``arch`` from scratch.
        rate_hz: stream rate.

    Returns:
        The result's ``summary`` with the settings and the written ``files``.
    """
    from depth_estimator_ros.data import open_source
    from depth_estimator_ros.models import build_model, load_checkpoint

    model = build_model(arch) if checkpoint is None else load_checkpoint(checkpoint)[0]
    frames = load_frames(open_source(str(data)), 300 if quick else None)
    # a cold start has no encoder worth keeping: adapt everything
    config = AdaptationConfig(scope="all") if checkpoint is None else None
    result = run_prequential(model, frames, rate_hz=rate_hz, device=device, config=config)
    out_dir = Path(out_dir)
    json_path = write_result(result, out_dir / "adaptation_prequential.json")
    png_path = plot_result(result, out_dir / "adaptation_prequential.png")
    return {
        **result["summary"],
        "settings": result["settings"],
        "start": "cold" if checkpoint is None else str(checkpoint),
        "files": {"json": str(json_path), "png": str(png_path)},
    }
