"""Tour evaluation: several recordings played back to back as one stream, scored per visit.

A robot goes from room to room and comes back. A *tour* is a list of *visits*, each a
recording (any RGB-D folder, rosbag2 or ``synthetic:`` spec ``data.open_source`` opens,
with its own intrinsics) or a frame range of one, so a room can be visited twice on
different parts. Visits with the same label are the same room.

The tour is streamed prequentially (each frame scored with the weights in force before
it can be trained on), once frozen and once adapting, by :mod:`.prequential`: in stream
time under a stated cost model (:class:`~.prequential.Budget`: deterministic, for
choosing settings) or in real time (the realistic check). Reported per visit: frozen vs
adapted RMSE / AbsRel / delta1, the first seconds, the worst window after them, and for a
return visit how it starts against the end of the previous visit to the same room.
After the stream: forgetting on a second sequence (the base's rooms) with the weights
in force, and with the room memory choosing by appearance only (no sensor depth), and
(budgeted mode) RGB-only room recognition on every visit with the memory as it was
when the visit began.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from depth_estimator_ros.adaptation.buffer import prepare_frame, stack_frames
from depth_estimator_ros.adaptation.config import AdaptationConfig
from depth_estimator_ros.adaptation.engine import SHARED_PROCESS_SWITCH_INTERVAL_S, AdaptationEngine
from depth_estimator_ros.adaptation.sensor_scale import SensorScale
from depth_estimator_ros.adaptation.rooms import (
    RECOGNITION_MARGIN,
    RECOGNITION_THRESHOLD,
    RoomMemory,
    appearance_descriptors,
)
from depth_estimator_ros.data.frame import Frame
from depth_estimator_ros.learning.metrics import POOLED_METRICS, pool_frame_metrics
from depth_estimator_ros.learning.predictor import Predictor
from depth_estimator_ros.learning.transforms import frame_focal
from depth_estimator_ros.models.base import DepthModel

from depth_estimator_bench.common import KITCHEN, SHARED, pyplot, save_figure
from depth_estimator_bench.prequential import Budget, _score, load_frames, stream, stream_budgeted

__all__ = [
    "Visit",
    "parse_tour",
    "default_tour",
    "load_tour",
    "run_tour",
    "plot_tour",
    "RECOGNITION_THRESHOLD",
    "RECOGNITION_MARGIN",
    "RECOGNITION_QUERIES",
    "DEFAULT_BUDGET",
]

#: The cost model of the README's budgeted tour: rounds back to back, one per 20 frames
#: of a 30 Hz stream, each one's weights in force when the next starts; a switch chosen
#: by a round's test-then-train selection is published before it trains, in force 5
#: frames after the round started (scoring a round's new frames with 2-3 candidates costs
#: about a quarter of a round). An idle 2-core CPU ran 53 rounds in the kitchen's 1000
#: frames in real time (one per 19 frames); a busy one 12 (one per 83).
DEFAULT_BUDGET = Budget(round_every=20, lag=20, switch_lag=5)

#: Frames per window of the RGB-only recognition (its threshold and margin: the runtime's).
RECOGNITION_QUERIES = 5


@dataclass(frozen=True)
class Visit:
    """One visit of a tour: frames ``[start, end)`` of ``source``, in room ``label``."""

    label: str
    source: str
    start: int = 0
    end: int | None = None

    def __str__(self) -> str:
        end = "" if self.end is None else str(self.end)
        return f"{self.label}={self.source}@{self.start}:{end}"


def parse_tour(text: str) -> list[Visit]:
    """Parse ``"[LABEL=]SOURCE[@START:END],..."`` into visits.

    The label defaults to the source's folder name; the range to the whole recording.
    Visits are separated by ``;`` when the text has one (``synthetic:`` specs hold
    commas), else by ``,``.

    Raises:
        ValueError: an empty tour or a malformed range.
    """
    visits = []
    for item in (part.strip() for part in text.split(";" if ";" in text else ",")):
        if not item:
            continue
        head, sep, tail = item.partition("=")
        label, rest = (head, tail) if sep and ":" not in head and "/" not in head else ("", item)
        source, _, span = rest.partition("@")
        start, end = 0, None
        if span:
            lo, sep, hi = span.partition(":")
            try:
                start = int(lo) if lo else 0
                end = int(hi) if hi else None
            except ValueError:
                raise ValueError(f"visit {item!r}: expected @START:END with integers") from None
            if not sep or start < 0 or (end is not None and end <= start):
                raise ValueError(f"visit {item!r}: expected @START:END with 0 <= START < END")
        visits.append(Visit(label or Path(source).name or source, source, start, end))
    if not visits:
        raise ValueError("a tour needs at least one visit")
    return visits


def default_tour(shared: Path = SHARED) -> list[Visit]:
    """Return the README's tour: the kitchen three times, with two rooms of ``rooms/`` between.

    Kitchen (unseen by the base) 0-300, the HoloLens lounge 0-90, kitchen 300-600, the
    RealSense lab, the lounge again 90-187, kitchen 600-1000: 1286 frames, three return
    visits. The lounge and the lab are rooms the base was trained on.
    """
    rooms = shared / "data" / "rooms"
    kitchen = str(KITCHEN if shared == SHARED else shared / "data" / "7scenes_kitchen")
    lounge, lab = str(rooms / "hololens_office_lounge"), str(rooms / "d435_lab_ceiling_airplane")
    return [
        Visit("kitchen", kitchen, 0, 300),
        Visit("lounge", lounge, 0, 90),
        Visit("kitchen", kitchen, 300, 600),
        Visit("lab", lab, 0, None),
        Visit("lounge", lounge, 90, None),
        Visit("kitchen", kitchen, 600, 1000),
    ]


def load_tour(visits: Sequence[Visit], *, progress: bool = False) -> tuple[list[Frame], list[tuple[int, int]]]:
    """Load every visit's frames into memory, back to back.

    Returns:
        The frames and, per visit, its ``(first, end)`` indices in them.
    """
    from depth_estimator_ros.data import open_source

    sources: dict[str, Any] = {}
    frames: list[Frame] = []
    spans: list[tuple[int, int]] = []
    for visit in visits:
        source = sources.get(visit.source) or sources.setdefault(visit.source, open_source(visit.source))
        end = len(source) if visit.end is None else min(visit.end, len(source))
        if visit.start >= end:
            raise ValueError(f"visit {visit}: the recording has {len(source)} frames")
        part = load_frames(_Range(source, visit.start, end), progress=progress)
        spans.append((len(frames), len(frames) + len(part)))
        frames += part
    return frames, spans


class _Range:
    """Frames ``[start, end)`` of a source, as a sequence."""

    def __init__(self, source: Any, start: int, end: int) -> None:
        self.source, self.start, self.end = source, start, end
        self.name = f"{getattr(source, 'name', 'frames')}[{start}:{end}]"

    def __len__(self) -> int:
        return self.end - self.start

    def __getitem__(self, i: int) -> Frame:
        return self.source[self.start + i]


def _pooled(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    keep = (*POOLED_METRICS, "si_log", "boundary_f1", "frames")
    return {k: v for k, v in pool_frame_metrics(rows).items() if k in keep}


def summarise_visits(
    visits: Sequence[Visit],
    spans: Sequence[tuple[int, int]],
    frozen: Sequence[dict[str, Any]],
    adapted: Sequence[dict[str, Any]],
    *,
    rate_hz: float,
    first_s: float = 3.0,
    window_s: float = 1.0,
) -> list[dict[str, Any]]:
    """Return one summary per visit from the per-frame rows of both runs.

    Rows are matched by frame ``index`` (a real-time run scores a subset of the frames;
    a frame scored in one run only is left out of the comparison).
    """
    by_index = {r["index"]: r for r in frozen}
    first_n, window_n = max(1, round(first_s * rate_hz)), max(1, round(window_s * rate_hz))
    seen: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    for number, (visit, (lo, hi)) in enumerate(zip(visits, spans)):
        pairs = [(by_index[r["index"]], r) for r in adapted if lo <= r["index"] < hi and r["index"] in by_index]
        f_rows = [f for f, _ in pairs]
        a_rows = [a for _, a in pairs]
        first = [(f, a) for f, a in pairs if f["index"] < lo + first_n]
        windows = []
        for w0 in range(lo + first_n, hi, window_n):
            inside = [(f, a) for f, a in pairs if w0 <= f["index"] < w0 + window_n]
            if inside:
                fr, ad = _pooled([f for f, _ in inside])["rmse"], _pooled([a for _, a in inside])["rmse"]
                windows.append({"t0": w0 / rate_hz, "frozen": fr, "adapted": ad, "ratio": ad / fr})
        summary: dict[str, Any] = {
            "visit": number,
            "label": visit.label,
            "spec": str(visit),
            "frames": hi - lo,
            "t0": lo / rate_hz,
            "t1": hi / rate_hz,
            "return": visit.label in seen,
            "frozen": _pooled(f_rows),
            "adapted": _pooled(a_rows),
            "first_s": first_s,
            "first_frozen": _pooled([f for f, _ in first]),
            "first_adapted": _pooled([a for _, a in first]),
            "worst_window_ratio_after_first": max((w["ratio"] for w in windows), default=math.nan),
            "last_second_ratio": _pooled([a for f, a in pairs if f["index"] >= hi - window_n])["rmse"]
            / _pooled([f for f, a in pairs if f["index"] >= hi - window_n])["rmse"],
            "windows_over_2pct_after_first": sum(1 for w in windows if w["ratio"] > 1.02),
            "windows_after_first": len(windows),
            "room_at_start": a_rows[0].get("room") if a_rows else None,
            "room_at_end": a_rows[-1].get("room") if a_rows else None,
        }
        summary["rmse_ratio"] = summary["adapted"]["rmse"] / summary["frozen"]["rmse"]
        if visit.label in seen:
            prev_lo, prev_hi = spans[seen[visit.label]]
            tail = [a for a in adapted if max(prev_lo, prev_hi - first_n) <= a["index"] < prev_hi]
            tail_frozen = [f for f in frozen if max(prev_lo, prev_hi - first_n) <= f["index"] < prev_hi]
            prev_end = _pooled(tail)["rmse"]
            summary["previous_end_adapted_rmse"] = prev_end
            summary["previous_end_frozen_rmse"] = _pooled(tail_frozen)["rmse"]
            summary["return_start_ratio"] = summary["first_adapted"]["rmse"] / prev_end
        seen[visit.label] = number
        out.append(summary)
    return out


class _MemorySnapshots:
    """Copies of the room memory's keyframes at each visit's start."""

    def __init__(self, engine: AdaptationEngine, spans: Sequence[tuple[int, int]]) -> None:
        self.engine = engine
        self.starts = {lo: n for n, (lo, _) in enumerate(spans)}
        self.keyframes: dict[int, dict[str, torch.Tensor]] = {}

    def __call__(self, i: int) -> None:
        number = self.starts.get(i)
        if number is None:
            return
        memory = self.engine.memory
        self.keyframes[number] = {
            name: room.keyframes.clone() for name in memory.names() if (room := memory.get(name)) is not None
        }


@torch.no_grad()
def _descriptors(model: DepthModel, frames: Sequence[Frame], size: tuple[int, int]) -> torch.Tensor:
    """Return ``(N, C)`` appearance descriptors of ``frames`` at the engine's storage size."""
    out = []
    for lo in range(0, len(frames), 16):
        batch = [prepare_frame(f, size) for f in frames[lo : lo + 16]]
        out.append(appearance_descriptors(model.encode(stack_frames(batch)[0])))
    return torch.cat(out) if out else torch.zeros(0, 0)


def _memory_of(keyframes: dict[str, torch.Tensor], arch: str) -> RoomMemory:
    memory = RoomMemory({}, arch, capacity=max(1, len(keyframes)))
    for name, frames in keyframes.items():
        memory.store(name, {}, frames)
    return memory


def recognition_by_visit(
    model: DepthModel,
    visits: Sequence[Visit],
    spans: Sequence[tuple[int, int]],
    frames: Sequence[Frame],
    snapshots: _MemorySnapshots,
    size: tuple[int, int],
    adapted: Sequence[dict[str, Any]],
    *,
    threshold: float = RECOGNITION_THRESHOLD,
    margin: float = RECOGNITION_MARGIN,
    queries: int = RECOGNITION_QUERIES,
) -> list[dict[str, Any]]:
    """Recognise each visit's room from RGB only, window by window, with the memory at its start.

    A pick is right when the room was in force (chosen with sensor depth) during an
    earlier visit to the same place; in a place never visited before, any pick is wrong
    (the base should stay).
    """
    rooms_of: dict[str, set[str]] = {}
    out = []
    for number, (visit, (lo, hi)) in enumerate(zip(visits, spans)):
        memory = _memory_of(snapshots.keyframes.get(number, {}), model.arch)
        expected = rooms_of.get(visit.label, set()) & set(memory.names())
        desc = _descriptors(model, frames[lo:hi], size)
        chosen = [
            memory.recognise(desc[w : w + queries], threshold=threshold, margin=margin)[0]
            for w in range(0, len(desc) - queries + 1, queries)
        ]
        named = [c for c in chosen if c is not None]
        out.append({
            "visit": number,
            "label": visit.label,
            "expected": sorted(expected),
            "windows": len(chosen),
            "windows_chosen": len(named),
            "windows_right": sum(1 for c in named if c in expected),
        })
        rooms_of.setdefault(visit.label, set()).update(
            r["room"] for r in adapted if lo <= r["index"] < hi and r.get("room") is not None
        )
    return out


def forgetting_by_appearance(
    model: DepthModel,
    engine: AdaptationEngine,
    frames: Sequence[Frame],
    *,
    threshold: float = RECOGNITION_THRESHOLD,
    margin: float = RECOGNITION_MARGIN,
    queries: int = RECOGNITION_QUERIES,
    device: str = "cpu",
) -> dict[str, Any]:
    """Score ``frames`` with the weights the room memory picks by appearance, window by window."""
    size = engine.buffer.size
    desc = _descriptors(model, frames, size)
    predictor = Predictor(model, device)
    rows, picks = [], []
    for w in range(0, len(frames), queries):
        name, _ = engine.memory.recognise(desc[w : w + queries], threshold=threshold, margin=margin)
        if not picks or name != picks[-1]:  # new weights only when the pick changes
            room = engine.memory.get(name) if name is not None else None
            predictor.load_over_base(room.delta if room is not None else {})
        picks.append(name)
        for f in frames[w : w + queries]:
            rows.append(_score(predictor.predict(f.rgb, frame_focal(f)), f, predictor.min_depth, predictor.max_depth))
    return {"metrics": pool_frame_metrics(rows), "windows": len(picks), "windows_with_a_room": sum(p is not None for p in picks)}


def run_tour(
    model: DepthModel,
    visits: Sequence[Visit],
    frames: Sequence[Frame],
    spans: Sequence[tuple[int, int]],
    *,
    config: AdaptationConfig | None = None,
    budget: Budget | None = DEFAULT_BUDGET,
    rate_hz: float = 30.0,
    forgetting_frames: Sequence[Frame] | None = None,
    device: str = "cpu",
    seed: int = 0,
    backend: str = "torch",
    first_s: float = 3.0,
    window_s: float = 1.0,
    sensor_scale: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Stream a tour frozen and adapting; return per-visit and whole-tour results.

    Args:
        budget: the cost model of the deterministic mode; None plays the tour in real
            time at ``rate_hz`` (estimator and trainer threads, as ``live``).
        Others: as :func:`~.prequential.run_prequential`.
    """
    config = AdaptationConfig() if config is None else config

    def make_predictor() -> Predictor:
        return Predictor(model, device, backend=backend, threads=torch.get_num_threads())

    engine = AdaptationEngine(model, config, device=device, seed=seed)
    snapshots = _MemorySnapshots(engine, spans)
    predictor = make_predictor()
    scale = SensorScale(predictor.min_depth, predictor.max_depth) if sensor_scale else None
    if budget is not None:
        frozen = stream_budgeted(make_predictor(), frames, budget, rate_hz=rate_hz, progress=progress, label="frozen")
        adapted = stream_budgeted(
            predictor, frames, budget, rate_hz=rate_hz, engine=engine, before_frame=snapshots,
            progress=progress, label="adapting", scale=scale,
        )
    else:
        frozen = stream(make_predictor(), frames, rate_hz=rate_hz, progress=progress, label="frozen")
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SHARED_PROCESS_SWITCH_INTERVAL_S)
        try:
            adapted = stream(predictor, frames, rate_hz=rate_hz, engine=engine, progress=progress, label="adapting",
                             scale=scale)
        finally:
            sys.setswitchinterval(switch_interval)
    f_rows, a_rows = frozen["per_frame"], adapted["per_frame"]
    per_visit = summarise_visits(visits, spans, f_rows, a_rows, rate_hz=rate_hz, first_s=first_s, window_s=window_s)
    common = {r["index"] for r in f_rows} & {r["index"] for r in a_rows}
    f_all = [r for r in f_rows if r["index"] in common]
    a_all = [r for r in a_rows if r["index"] in common]
    overall = {"frozen": pool_frame_metrics(f_all), "adapted": pool_frame_metrics(a_all)}
    mean_f = float(np.mean([r["rmse"] for r in f_all if r["n_valid"]]))
    mean_a = float(np.mean([r["rmse"] for r in a_all if r["n_valid"]]))
    stats = engine.stats()
    summary = {
        "tour_rmse_frozen": overall["frozen"]["rmse"],
        "tour_rmse_adapted": overall["adapted"]["rmse"],
        "tour_rmse_ratio": overall["adapted"]["rmse"] / overall["frozen"]["rmse"],
        "tour_mean_frame_rmse_frozen": mean_f,
        "tour_mean_frame_rmse_adapted": mean_a,
        "tour_mean_frame_rmse_ratio": mean_a / mean_f,
        "visits_worse_than_frozen": sum(1 for v in per_visit if v["adapted"]["rmse"] > v["frozen"]["rmse"]),
        "visits_ending_worse_than_frozen": sum(1 for v in per_visit if v["last_second_ratio"] > 1.0),
        "worst_window_ratio_after_first": max(v["worst_window_ratio_after_first"] for v in per_visit),
        "windows_over_2pct_after_first": sum(v["windows_over_2pct_after_first"] for v in per_visit),
        "windows_after_first": sum(v["windows_after_first"] for v in per_visit),
        "return_start_ratios": [v["return_start_ratio"] for v in per_visit if v["return"]],
        "rounds_run": stats["rounds_run"],
        "rounds_accepted": stats["rounds_accepted"],
        "rounds_switched": stats["rounds_switched"],
        "rooms": stats["rooms"],
        "final_version": stats["version"],
        "estimator_fps_adapting": adapted["estimator_fps"],
    }
    recognition = None
    if budget is not None:
        recognition = recognition_by_visit(model, visits, spans, frames, snapshots, engine.buffer.size, a_rows)
        returns = [r for r in recognition if r["expected"]]
        chosen = sum(r["windows_chosen"] for r in returns)
        summary["recognition_return_windows"] = sum(r["windows"] for r in returns)
        summary["recognition_return_chosen"] = chosen
        summary["recognition_return_right_share"] = (
            sum(r["windows_right"] for r in returns) / chosen if chosen else math.nan
        )
        firsts = [r for r in recognition if not r["expected"]]
        summary["recognition_wrong_in_new_rooms"] = sum(r["windows_chosen"] for r in firsts)
    forgetting = None
    if forgetting_frames:
        from depth_estimator_bench.prequential import evaluate_frames

        before = evaluate_frames(Predictor(model, device), forgetting_frames)
        after = evaluate_frames(predictor, forgetting_frames)
        by_appearance = forgetting_by_appearance(model, engine, forgetting_frames, device=device)
        forgetting = {
            "frames": len(forgetting_frames),
            "before": before,
            "after_in_force": after,
            "after_by_appearance": by_appearance,
            "in_force_rmse_change_percent": 100.0 * (after["rmse"] / before["rmse"] - 1.0),
            "by_appearance_rmse_change_percent": 100.0 * (by_appearance["metrics"]["rmse"] / before["rmse"] - 1.0),
        }
        summary["forgetting_in_force_percent"] = forgetting["in_force_rmse_change_percent"]
        summary["forgetting_by_appearance_percent"] = forgetting["by_appearance_rmse_change_percent"]
    return {
        "settings": {
            "arch": model.arch,
            "visits": [str(v) for v in visits],
            "frames": len(frames),
            "rate_hz": rate_hz,
            "mode": "budget" if budget is not None else "realtime",
            "budget": None if budget is None else {
                "round_every": budget.round_every, "lag": budget.lag, "switch_lag": budget.switch_lag,
            },
            "device": str(device),
            "backend": predictor.backend,
            "seed": seed,
            "engine": config.to_dict(),
            "sensor_scale": sensor_scale,
            "first_s": first_s,
            "window_s": window_s,
            "recognition": {
                "threshold": RECOGNITION_THRESHOLD, "margin": RECOGNITION_MARGIN, "queries": RECOGNITION_QUERIES,
            },
        },
        "summary": summary,
        "visits": per_visit,
        "recognition": recognition,
        "forgetting": forgetting,
        "rooms": engine.memory.summary(),
        "per_frame": {
            "frozen": [{k: r[k] for k in ("index", "rmse", "n_valid")} for r in f_rows],
            "adapted": [{k: r[k] for k in ("index", "rmse", "n_valid", "version", "room")} for r in a_rows],
        },
    }


def plot_tour(result: dict[str, Any], path: Path, *, window_frames: int = 15) -> Path:
    """Plot RMSE over stream time, frozen vs adapted, with the visits marked, as a PNG."""
    plt = pyplot()

    rate = result["settings"]["rate_hz"]
    fig, ax = plt.subplots(figsize=(10, 4))
    for run, style in (("frozen", "--"), ("adapted", "-")):
        rows = result["per_frame"][run]
        xs, ys = [], []
        for lo in range(0, len(rows), window_frames):
            part = [dict(r, abs_rel=0.0, delta1=0.0) for r in rows[lo : lo + window_frames]]
            xs.append(part[0]["index"] / rate)
            ys.append(pool_frame_metrics(part)["rmse"])
        ax.plot(xs, ys, style, label=f"adaptation {'on' if run == 'adapted' else 'off'}")
    colours = {}
    for v in result["visits"]:
        colour = colours.setdefault(v["label"], f"C{len(colours) + 2}")
        ax.axvspan(v["t0"], v["t1"], color=colour, alpha=0.12, linewidth=0)
        ax.text((v["t0"] + v["t1"]) / 2, 0.98, v["label"] + (" (again)" if v["return"] else ""),
                transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=8)
    s = result["summary"]
    mode = result["settings"]["mode"]
    if mode == "budget":
        b = result["settings"]["budget"]
        mode = f"budget: a round per {b['round_every']} frames, in force {b['lag']} frames later"
    ax.set_title(
        f"tour ({mode}): RMSE {s['tour_rmse_adapted']:.3f} m adapted vs {s['tour_rmse_frozen']:.3f} m frozen "
        f"(x{s['tour_rmse_ratio']:.2f}), {s['rounds_switched']} switches, {s['rooms']} rooms", fontsize=9,
    )
    ax.set_xlabel("stream time (s); shaded: visits")
    ax.set_ylabel("RMSE (m)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", bbox_to_anchor=(1.0, 0.9))
    return save_figure(fig, Path(path))


def run_section(
    out_dir: Path, *, checkpoint: str = "default", quick: bool = False, device: str = "cpu", progress: bool = False
) -> dict[str, Any]:
    """``bench --only tour``: the README's tour in the budgeted mode; writes ``tour.json`` / ``tour.png``.

    ``quick`` plays the first 60 frames of each visit (a smoke run, not for reporting).
    """
    from depth_estimator_ros.data import open_source
    from depth_estimator_ros.models import load_checkpoint

    from depth_estimator_bench.machine import describe_machine
    from depth_estimator_bench.prequential import write_result

    visits = default_tour()
    if quick:
        visits = [Visit(v.label, v.source, v.start, v.start + 60) for v in visits]
    model = load_checkpoint(checkpoint)[0]
    frames, spans = load_tour(visits, progress=progress)
    forget = load_frames(open_source(str(SHARED / "data" / "rooms")), 16 if quick else 64, spread=True)
    result = run_tour(model, visits, frames, spans, forgetting_frames=forget, device=device, progress=progress)
    result["machine"] = describe_machine()
    result["settings"]["checkpoint"] = checkpoint
    out_dir = Path(out_dir)
    files = {"json": str(write_result(result, out_dir / "tour.json")), "png": str(plot_tour(result, out_dir / "tour.png"))}
    return {**result, "files": files}


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the lines of ``bench``'s summary table for the tour."""
    if "skipped" in result:
        return [{"section": "tour", "what": "tour", "value": result["skipped"], "target": ""}]
    s, b = result["summary"], result["settings"]["budget"]
    return [
        {
            "section": "tour",
            "what": f"{len(result['visits'])} visits, {result['settings']['frames']} frames, a round per "
                    f"{b['round_every']} frames in force {b['lag']} later",
            "value": f"RMSE {s['tour_rmse_adapted']:.3f} m adapted vs {s['tour_rmse_frozen']:.3f} m frozen "
                     f"(x{s['tour_rmse_ratio']:.2f}); {s['visits_worse_than_frozen']} visits worse than frozen, "
                     f"{s['visits_ending_worse_than_frozen']} ending worse",
            "target": "<= 0.6x frozen, no visit worse",
        },
        {
            "section": "tour",
            "what": "forgetting on rooms/ after the tour (in force / memory by appearance)",
            "value": f"{s.get('forgetting_in_force_percent', math.nan):+.1f} % / "
                     f"{s.get('forgetting_by_appearance_percent', math.nan):+.1f} %",
            "target": "<= 5 % by appearance",
        },
    ]
