"""Leave-one-room-out on ``rooms/``: the base-model recipe scored on rooms it never saw.

For every real room of a folder of rooms (``../shared/data/rooms``; the rendered
``synthetic_*`` scenes are always kept for training, never scored), the base-model
recipe (:data:`RECIPE`, the shipped checkpoint's: the project's synthetic rooms join the
real ones) is trained from the ImageNet encoder on all the *other* rooms for a fixed
number of optimiser steps, then scored on every frame of the left-out room, next to

- the mean-depth baseline: the mean valid depth of that fold's training frames,
  predicted everywhere;
- optionally a synthetic-only base (``--synthetic-checkpoint``: a model that saw no real
  room at all, the product's base before this recipe).

The 7-Scenes kitchen is never trained on; ``kitchen`` adds its frozen scores for the
checkpoint given (the shipped one) and the same two references. Budgets are steps, so
the result does not depend on how busy the machine is.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from depth_estimator_bench.accuracy import score_frames
from depth_estimator_bench.common import pyplot, save_figure, write_section
from depth_estimator_bench.machine import describe_machine, machine_label

__all__ = ["RECIPE", "constant_predictor", "run", "summary_rows"]

#: The base-model recipe (``train`` options) of the shipped checkpoint; README, "Base model".
RECIPE: dict[str, Any] = {
    "arch": "fast",
    "backbone": "mobilenet_v2",
    "input_size": (144, 192),
    "extra_sources": ("synthetic:seed=0,frames=3000,rooms=1500,width=320,height=240",),
    "loss": "log_l1",
    "steps": 3000,
    "cosine": True,
    "encoder_lr_scale": 0.1,
    "max_zoom": 1.5,
    "min_room_frames": 24,
    "split": (0.85, 0.1, 0.05),
    "seed": 0,
}


def _train_fold(
    root: Path, leave_out: Sequence[str], encoder_weights: str | None, steps: int, out_dir: Path,
    device: str, progress: bool,
) -> tuple[Any, float, dict[str, int]]:
    """Train the recipe on every room but ``leave_out``; return (model, training mean depth, rooms)."""
    from depth_estimator_ros.data.collection import open_training_sources, split_sources
    from depth_estimator_ros.learning.trainer import TrainConfig, fit
    from depth_estimator_ros.models import build_model

    sources = open_training_sources([str(root), *RECIPE["extra_sources"]], list(leave_out))
    train, val, _, _ = split_sources(sources, RECIPE["split"], RECIPE["seed"], RECIPE["min_room_frames"])
    model = build_model(RECIPE["arch"], encoder_weights=encoder_weights, input_size=RECIPE["input_size"],
                        backbone=RECIPE["backbone"])
    config = TrainConfig(epochs=10_000, patience=10_000, max_steps=steps, cosine=True,
                         encoder_lr_scale=RECIPE["encoder_lr_scale"], max_zoom=RECIPE["max_zoom"],
                         loss=RECIPE["loss"], seed=RECIPE["seed"], device=device, progress=progress)
    result = fit(model, train, val, out_dir, config, provenance={"leave_out": list(leave_out)})
    return model.eval(), result.train_mean_depth, {s.name: len(s) for s in sources}


def _score_all(frames: Sequence[Any], predictors: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {name: score_frames(predict, frames) for name, predict in predictors.items()}


def constant_predictor(depth: float) -> Any:
    """Return a predictor of ``depth`` everywhere (the mean-depth baseline)."""
    return lambda rgb, _focal: np.full(rgb.shape[:2], depth, np.float32)


def run(
    out_dir: Path,
    *,
    rooms_root: Path,
    encoder_weights: str | None,
    steps: int = RECIPE["steps"],
    only: Sequence[str] | None = None,
    kitchen: Path | None = None,
    kitchen_every: int = 5,
    checkpoint: str | None = None,
    synthetic_checkpoint: Path | None = None,
    device: str = "cpu",
    quick: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run leave-one-room-out (and the kitchen rows); write ``rooms.json`` / ``rooms.png``.

    Args:
        out_dir: output folder (each fold's training folder goes under ``rooms_folds/``).
        rooms_root: the folder of room folders.
        encoder_weights: the ImageNet encoder (path or ``"imagenet"``) every fold starts from.
        steps: optimiser steps per fold.
        only: score just these rooms (default every real room).
        kitchen: the 7-Scenes kitchen folder, scored frozen with ``checkpoint``.
        kitchen_every: score every Nth kitchen frame.
        checkpoint: the base model of the kitchen rows (default the shipped one).
        synthetic_checkpoint: a synthetic-only base scored next to every row.
        device: torch device.
        quick: 3 steps and one room (a smoke run, not for reporting).
        progress: show tqdm bars.

    Returns:
        ``section``, ``machine``, ``settings``, ``rooms`` (per room: frames, training mean,
        metrics of the fold's model, the mean baseline and the synthetic base) and ``kitchen``.
    """
    import torch

    from depth_estimator_ros.data import open_source
    from depth_estimator_ros.data.collection import open_rooms
    from depth_estimator_ros.learning.predictor import Predictor
    from depth_estimator_ros.models import DEFAULT_CHECKPOINT, load_checkpoint

    out_dir = Path(out_dir)
    real = [room.name for room in open_rooms(rooms_root) if not room.name.startswith("synthetic_")]
    names = list(only) if only else real
    if quick:
        names, steps = names[:1], 3
    synthetic = None
    if synthetic_checkpoint is not None:
        synthetic = Predictor(load_checkpoint(synthetic_checkpoint)[0], device).predict
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    try:
        for name in names:
            model, mean, trained_on = _train_fold(rooms_root, [name], encoder_weights, steps,
                                                  out_dir / "rooms_folds" / name, device, progress)
            frames = list(open_rooms(rooms_root, only=[name])[0])
            predictors = {"model": Predictor(model, device).predict, "mean_depth": constant_predictor(mean)}
            if synthetic is not None:
                predictors["synthetic_base"] = synthetic
            rows.append({"room": name, "frames": len(frames), "train_mean_depth": mean,
                         "trained_on": trained_on, **_score_all(frames, predictors)})
        kitchen_rows = None
        if kitchen is not None and Path(kitchen).is_dir():
            base, meta = load_checkpoint(checkpoint or DEFAULT_CHECKPOINT)
            source = open_source(kitchen)
            frames = [source[i] for i in range(0, len(source), 1 if quick else kitchen_every)][: 5 if quick else None]
            mean = float(meta["provenance"].get("train_mean_depth", math.nan))
            predictors = {"model": Predictor(base, device).predict, "mean_depth": constant_predictor(mean)}
            if synthetic is not None:
                predictors["synthetic_base"] = synthetic
            kitchen_rows = {"frames": len(frames), "every": kitchen_every, "checkpoint": str(checkpoint or "default"),
                            "train_mean_depth": mean, **_score_all(frames, predictors)}
    finally:
        torch.set_num_threads(threads)
    result = {
        "section": "rooms",
        "machine": describe_machine(),
        "settings": {"recipe": RECIPE, "steps_per_fold": steps, "rooms_root": str(rooms_root),
                     "encoder_weights": str(encoder_weights), "quick": quick, "device": device,
                     "synthetic_checkpoint": None if synthetic_checkpoint is None else str(synthetic_checkpoint)},
        "rooms": rows,
        "kitchen": kitchen_rows,
    }
    return write_section(out_dir, "rooms", result, _plot)


def _plot(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    rows = list(result["rooms"])
    labels = [row["room"] for row in rows]
    if result["kitchen"]:
        rows.append(result["kitchen"])
        labels.append("7scenes_kitchen\n(shipped model)")
    kinds = [k for k in ("model", "mean_depth", "synthetic_base") if rows and k in rows[0]]
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8))
    x = np.arange(len(rows))
    width = 0.8 / max(1, len(kinds))
    for ax, metric, title in ((axes[0], "rmse", "RMSE (m)"), (axes[1], "abs_rel", "AbsRel")):
        for k, kind in enumerate(kinds):
            ax.bar(x + k * width, [row[kind][metric] for row in rows], width, label=kind.replace("_", " "))
        ax.set_xticks(x + width * (len(kinds) - 1) / 2, labels, rotation=35, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
    fig.suptitle(f"leave one room out, {result['settings']['steps_per_fold']} steps per fold -- "
                 f"{machine_label(result['machine'])}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one summary row per room: model vs mean-depth RMSE."""
    rows = []
    for row in result["rooms"]:
        model, mean = row["model"]["rmse"], row["mean_depth"]["rmse"]
        rows.append({"section": "rooms", "what": f"{row['room']} RMSE (left out)",
                     "value": f"{model:.3f} m vs mean {mean:.3f} m", "target": "below the mean-depth baseline"})
    if result["kitchen"]:
        k = result["kitchen"]["model"]
        rows.append({"section": "rooms", "what": "kitchen frozen AbsRel / delta1",
                     "value": f"{k['abs_rel']:.3f} / {k['delta1']:.3f}", "target": "<= 0.25 / >= 0.60"})
    return rows
