"""Accuracy section: every architecture trained for the same wall-clock budget, scored on unseen rooms.

Issue 3 asks for ``fast``'s accuracy "after equal training budgets" to be at least that
of both seed models. The budget here is what a user of this machine has: the same
minutes of training on the same CPU, the same synthetic training rooms and validation
frames, each model at its own input size with its own training defaults from the seeds
(learning rate, micro-batch and accumulation, trainable parts) through the project's
offline trainer (:func:`learning.trainer.fit`, best validation checkpoint kept). Every
model is then scored on frames of rooms none of them saw, at the frame's resolution,
over the same pixels (sensor depth valid in :data:`EVAL_RANGE`), next to the
mean-depth baseline (the training frames' mean sensor depth predicted everywhere).

No ImageNet weights can be downloaded on the reference machine, so every encoder
starts from scratch; the seeds' frozen encoders (all of DenseNet-201's, most of VGG-16's)
then stay at their random initialisation, as the seeds' recipes prescribe. Both facts
are in the JSON (``encoder_weights``, ``trainable_parameters``) and the README.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from depth_estimator_bench.common import pyplot, save_figure, write_section
from depth_estimator_bench.machine import describe_machine, machine_label

__all__ = ["ARCHS", "EVAL_RANGE", "run", "score_frames", "summary_rows"]

#: Architectures compared: the default and both seed models (both VGG heads).
ARCHS: tuple[str, ...] = ("fast", "vgg16_coarse", "vgg16_coarse_conv", "densenet201")
#: Ground-truth depths scored, metres (inside every model's output range).
EVAL_RANGE: tuple[float, float] = (0.5, 10.0)
_FRAME = "width=320,height=240"


def _data_specs(quick: bool) -> dict[str, str]:
    """Synthetic training, validation and test sets; the three use disjoint room seeds."""
    if quick:
        return {
            "train": f"synthetic:seed=0,frames=24,rooms=4,{_FRAME}",
            "val": f"synthetic:seed=2,frames=4,rooms=2,{_FRAME}",
            "test": f"synthetic:seed=1,frames=4,rooms=2,{_FRAME}",
        }
    # Many rooms, few frames each: room scale varies widely, so a set of a few rooms
    # mostly measures whether their mean depth happens to match the training rooms'.
    return {
        "train": f"synthetic:seed=0,frames=1000,rooms=200,{_FRAME}",
        "val": f"synthetic:seed=2,frames=40,rooms=20,{_FRAME}",
        "test": f"synthetic:seed=1,frames=60,rooms=30,{_FRAME}",
    }


def _load(spec: str) -> list[Any]:
    from depth_estimator_ros.data import open_source

    source = open_source(spec)
    return [source[i] for i in range(len(source))]


def score_frames(predict: Any, frames: Sequence[Any]) -> dict[str, float]:
    """Metrics of ``predict(rgb, focal) -> depth`` over ``frames`` (pixel-weighted over the set)."""
    from depth_estimator_ros.learning.losses import valid_mask
    from depth_estimator_ros.learning.metrics import MetricAccumulator
    from depth_estimator_ros.learning.transforms import frame_focal

    total = MetricAccumulator()
    for frame in frames:
        total.update(predict(frame.rgb, frame_focal(frame)), frame.depth, valid_mask(frame.depth, *EVAL_RANGE))
    return total.result()


def _mean_depth(frames: Sequence[Any]) -> float:
    """Mean sensor depth over every scored pixel of ``frames`` (the baseline's constant)."""
    total, count = 0.0, 0
    for frame in frames:
        depth = frame.depth[np.isfinite(frame.depth)]
        depth = depth[(depth >= EVAL_RANGE[0]) & (depth <= EVAL_RANGE[1])]
        total, count = total + float(depth.sum(dtype=np.float64)), count + depth.size
    return total / count


def _train_and_score(
    arch: str, data: dict[str, list[Any]], out_dir: Path, *, minutes: float, device: str, progress: bool
) -> dict[str, Any]:
    import torch

    from depth_estimator_ros.learning.predictor import Predictor
    from depth_estimator_ros.learning.trainer import TrainConfig, fit
    from depth_estimator_ros.models import build_model, load_checkpoint

    torch.manual_seed(0)
    model = build_model(arch)
    config = TrainConfig(epochs=10_000, minutes=minutes, patience=10_000, device=device, progress=progress)
    trained = fit(model, data["train"], data["val"], out_dir / f"accuracy_{arch}", config,
                  provenance={"benchmark": "accuracy", "budget_minutes": minutes})  # fmt: skip
    best, _ = load_checkpoint(trained.checkpoint, arch=arch, map_location="cpu")
    predictor = Predictor(best.eval(), device=device)
    return {
        "arch": arch,
        "input_size": list(best.input_size),
        "encoder_weights": None,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "steps": trained.steps,
        "images_trained": int(sum(row["images"] for row in trained.history)),
        "epochs_run": trained.epochs_run,
        "best_epoch": trained.best_epoch,
        "stopped": trained.stopped,
        "train_seconds": round(trained.seconds, 1),
        "val_rmse": trained.best_metrics.get("rmse"),
        "test": score_frames(predictor.predict, data["test"]),
        "train_mean_depth": trained.train_mean_depth,
        "checkpoint": str(trained.checkpoint),
    }


def _plot(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    runs = result["runs"]
    names = [run["arch"] for run in runs]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric, label in ((axes[0], "rmse", "RMSE (m)"), (axes[1], "abs_rel", "AbsRel")):
        values = [run["test"][metric] for run in runs]
        bars = ax.bar(names, values, color=["tab:green"] + ["tab:blue"] * (len(names) - 1))
        ax.axhline(result["mean_depth_baseline"]["test"][metric], color="r", linestyle="--", linewidth=1,
                   label="predict the mean depth")  # fmt: skip
        for bar, run in zip(bars, runs):
            ax.annotate(f"{run['images_trained']} imgs", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=7)  # fmt: skip
        ax.set_ylabel(label)
        ax.tick_params(axis="x", labelsize=8)
        ax.legend(fontsize=7)
    minutes = result["settings"]["minutes_per_arch"]
    fig.suptitle(
        f"{minutes:g} min of training each, scored on unseen synthetic rooms -- {machine_label(result['machine'])}",
        fontsize=9,
    )
    return save_figure(fig, path)


def run(
    out_dir: Path,
    *,
    device: str = "auto",
    quick: bool = False,
    minutes: float = 4.0,
    archs: Sequence[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every architecture for ``minutes`` on the same data; write ``accuracy.json`` / ``.png``.

    Args:
        out_dir: output folder (each model's training folder goes there too).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA where present).
        quick: tiny data and a few seconds per model (a smoke run, not for reporting).
        minutes: wall-clock training budget per architecture (validation included).
        archs: architectures to compare (default :data:`ARCHS`).
        progress: show tqdm bars.

    Returns:
        ``section``, ``machine``, ``settings``, ``runs`` (per architecture: budget used,
        steps, images trained, test metrics) and ``mean_depth_baseline``.
    """
    import torch

    from depth_estimator_bench.common import preferred_device

    out_dir = Path(out_dir)
    dev = preferred_device(device)
    minutes = 0.1 if quick else minutes
    specs = _data_specs(quick)
    data = {part: _load(spec) for part, spec in specs.items()}
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        runs = [
            _train_and_score(arch, data, out_dir, minutes=minutes, device=dev, progress=progress)
            for arch in (archs or ARCHS)
        ]
    finally:
        torch.set_num_threads(threads)
    mean = _mean_depth(data["train"])
    baseline = {"depth_m": mean, "test": score_frames(lambda rgb, _focal: np.full(rgb.shape[:2], mean, np.float32), data["test"])}
    result: dict[str, Any] = {
        "section": "accuracy",
        "machine": describe_machine(),
        "settings": {
            "quick": quick,
            "device": dev,
            "minutes_per_arch": minutes,
            "data": specs,
            "eval_range_m": list(EVAL_RANGE),
            "torch_threads": os.cpu_count() or 1,
            "trainer": "learning.trainer.fit with each model's seed defaults, best validation checkpoint",
        },
        "runs": runs,
        "mean_depth_baseline": baseline,
    }
    return write_section(out_dir, "accuracy", result, _plot)


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the lines of the final summary table for this section."""
    minutes = result["settings"]["minutes_per_arch"]
    base = result["mean_depth_baseline"]["test"]
    rows = []
    for run in result["runs"]:
        test = run["test"]
        rows.append(
            {
                "section": "accuracy",
                "what": f"{run['arch']} after {minutes:g} min training ({run['images_trained']} images, "
                f"{run['steps']} steps), unseen synthetic rooms",
                "value": f"RMSE {test['rmse']:.3f} m, AbsRel {test['abs_rel']:.3f}, delta1 {test['delta1']:.3f}, "
                f"si-log {test['si_log']:.3f}, boundary F1 {test['boundary_f1']:.3f} "
                f"(mean depth: {base['rmse']:.3f} m, {base['abs_rel']:.3f}, {base['delta1']:.3f})",
                "target": "fast at least as accurate as both seed models",
            }
        )
    return rows
