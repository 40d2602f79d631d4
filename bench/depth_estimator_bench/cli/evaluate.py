"""``evaluate``: score a checkpoint on RGB-D frames; write a table, CSV, JSON and figure panels.

Usage::

    evaluate --checkpoint out/train/best.safetensors --data synthetic:seed=100,frames=120,rooms=6 \\
             --out out/eval --baseline mean
    evaluate --checkpoint model.safetensors --data ../shared/data/7scenes_kitchen --max-frames 200

Every frame is predicted at its own resolution through :class:`~depth_estimator_ros.learning.Predictor`
and scored against its sensor depth over the pixels valid for the model (finite, > 0,
within its depth range). Pooled metrics are exact per-pixel sums over all frames.
``--baseline mean`` also scores predicting one constant everywhere: the mean training
depth recorded in the checkpoint (or ``--mean-depth``). ``--oracle`` also scores the sensor
depth itself shrunk to the model's input size and enlarged back (mask-weighted, as training
targets are made): the best a model at that resolution upsampled bilinearly could score,
chiefly on the depth-boundary F1. ``--fill-eval`` hides random blobs of valid sensor pixels
in every frame and scores :func:`~depth_estimator_ros.learning.fill.fill_depth` with this
model's prediction there, next to interpolating the sensor. The table has the structure
metrics too (``si_log``, ``edge_f1/p/r``: the boundary F1, precision and recall; see
:mod:`~depth_estimator_ros.learning.metrics`). The output folder gets
``metrics.json``, ``per_frame.csv`` and ``panels/frame_NNNNN.png`` (RGB | ground
truth | prediction | absolute error, ground truth and prediction on one colour scale).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from depth_estimator_ros.atomic import write_json
from depth_estimator_ros.cli._common import add_runtime_arguments, apply_runtime, positive_float, positive_int, run_main
from depth_estimator_ros.data import open_source
from depth_estimator_ros.learning.fill import FILL_METHODS, fill_evaluation, finish_fill_evaluation
from depth_estimator_ros.learning.losses import valid_mask
from depth_estimator_ros.learning.metrics import MetricAccumulator
from depth_estimator_ros.learning.predictor import Predictor
from depth_estimator_ros.learning.transforms import border_crop, frame_focal, resize_depth
from depth_estimator_ros.models import load_checkpoint

__all__ = ["build_parser", "format_fill_table", "format_table", "main", "save_panel"]

BASELINES = ("none", "mean")
_FRAME_FIELDS = ("rmse", "mae", "abs_rel", "delta1", "n_valid", "n_missing", "si_log", "boundary_f1")
_COLUMNS = (
    ("rmse", "rmse"), ("mae", "mae"), ("abs_rel", "abs_rel"), ("sq_rel", "sq_rel"), ("log10", "log10"),
    ("delta1", "delta1"), ("delta2", "delta2"), ("delta3", "delta3"), ("si_log", "si_log"),
    ("boundary_f1", "edge_f1"), ("boundary_precision", "edge_p"), ("boundary_recall", "edge_r"),
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``evaluate`` command."""
    parser = argparse.ArgumentParser(
        prog="evaluate", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="model checkpoint (.safetensors)")
    parser.add_argument("--data", required=True, help="frame source: folder, .mat, bag or synthetic:key=value,...")
    parser.add_argument("--out", type=Path, default=Path("out/evaluate"), help="output folder (default out/evaluate)")
    parser.add_argument("--baseline", choices=BASELINES, default="none",
                        help="also score a trivial predictor: mean = the training-set mean depth everywhere")
    parser.add_argument("--mean-depth", type=positive_float, default=None,
                        help="metres for --baseline mean (default: train_mean_depth from the checkpoint)")
    parser.add_argument("--max-frames", type=positive_int, default=None,
                        help="evaluate at most N frames, evenly spaced")
    parser.add_argument("--panels", type=int, default=8, help="figure panels for N evenly spaced frames (default 8)")
    parser.add_argument("--border-crop", type=int, default=0, help="pixels cut from every border first")
    parser.add_argument("--oracle", action="store_true",
                        help="also score the sensor depth shrunk to the model's input size and enlarged back")
    parser.add_argument("--fill-eval", action="store_true",
                        help="also hide random blobs of valid sensor depth and score depth/filled/image there "
                        "against interpolating the sensor")
    parser.add_argument("--fill-blobs", type=positive_int, default=8, help="blobs hidden per frame (default 8)")
    parser.add_argument("--fill-blob-px", type=positive_float, nargs=2, default=(20.0, 80.0), metavar=("MIN", "MAX"),
                        help="range of the blobs' axes, pixels at 640 wide (default 20 80)")
    add_runtime_arguments(parser)
    return parser


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """Return a fixed-width table of metrics, one row per named result.

    Args:
        rows: row label -> metrics dict (as :func:`compute_metrics` returns).

    Returns:
        The table as text, errors in metres (RMSE, MAE) or unitless.
    """
    width = max(len(label) for label in rows) + 2
    head = "".join(f"{header:>9}" for _, header in _COLUMNS)
    lines = [f"{'':<{width}}{head}{'pixels':>12}"]
    for label, m in rows.items():
        cells = "".join(f"{m[name]:>9.4f}" for name, _ in _COLUMNS)
        lines.append(f"{label:<{width}}{cells}{m['n_valid']:>12d}")
    return "\n".join(lines)


def format_fill_table(result: dict[str, Any]) -> str:
    """Return the ``--fill-eval`` table: per method, errors in the hidden blobs and at their border.

    Args:
        result: :func:`~depth_estimator_ros.learning.fill.finish_fill_evaluation`'s result.

    Returns:
        The table as text: RMSE (m) and AbsRel over the hidden pixels, AbsRel over the hidden
        pixels next to a measured one (the seam), and the share of hidden pixels filled.
    """
    lines = [f"{'hidden sensor pixels filled by':<32}{'rmse':>9}{'abs_rel':>9}{'border':>9}{'filled':>9}"]
    for name in FILL_METHODS:
        m = result[name]
        lines.append(f"{name:<32}{m['rmse']:>9.4f}{m['abs_rel']:>9.4f}{m['border_abs_rel']:>9.4f}{m['coverage']:>9.3f}")
    lines.append(f"{result['hidden']} hidden pixels ({result['border']} at a blob's border) in {result['frames']} "
                 f"frames; fill_depth {result['fill_ms_mean']:.1f} ms per frame (p95 {result['fill_ms_p95']:.1f})")  # fmt: skip
    return "\n".join(lines)


def save_panel(
    path: Path, rgb: np.ndarray, target: np.ndarray, pred: np.ndarray, valid: np.ndarray, title: str
) -> None:
    """Write an RGB | ground truth | prediction | absolute error figure like the seeds'.

    Ground truth and prediction share one colour scale (2nd-98th percentile of both);
    invalid pixels are grey; the error is shown where the ground truth is valid.

    Args:
        path: PNG file to write.
        rgb: ``(H, W, 3)`` uint8.
        target: ``(H, W)`` metres, NaN invalid.
        pred: ``(H, W)`` metres, NaN invalid.
        valid: ``(H, W)`` bool, the scored pixels.
        title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = np.concatenate([target[valid], pred[np.isfinite(pred)]])
    lo, hi = (np.percentile(shown, (2, 98)) if shown.size else (0.0, 1.0))
    hi = max(hi, lo + 1e-3)
    error = np.where(valid & np.isfinite(pred), np.abs(pred - target), np.nan)
    depth_map = matplotlib.colormaps["viridis"].with_extremes(bad="0.6")
    error_map = matplotlib.colormaps["magma"].with_extremes(bad="0.6")
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    axes[0].imshow(rgb)
    axes[0].set_title("RGB")
    axes[1].imshow(np.where(valid, target, np.nan), cmap=depth_map, vmin=lo, vmax=hi)
    axes[1].set_title("ground truth")
    im = axes[2].imshow(pred, cmap=depth_map, vmin=lo, vmax=hi)
    axes[2].set_title("prediction")
    fig.colorbar(im, ax=axes[1:3], fraction=0.025, label="depth (m)")
    finite_error = error[np.isfinite(error)]
    err_hi = float(np.percentile(finite_error, 98)) if finite_error.size else 1.0
    im_err = axes[3].imshow(error, cmap=error_map, vmin=0.0, vmax=max(err_hi, 1e-3))
    axes[3].set_title("absolute error")
    fig.colorbar(im_err, ax=axes[3], fraction=0.046, label="m")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def _evenly(n: int, k: int | None) -> list[int]:
    """Return ``k`` evenly spaced indices of ``range(n)`` (all when ``k`` is None or >= n)."""
    if k is None or k >= n:
        return list(range(n))
    if k <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    apply_runtime(args)
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
    model, meta = load_checkpoint(args.checkpoint)
    mean_depth = None
    if args.baseline == "mean":
        mean_depth = args.mean_depth or meta["provenance"].get("train_mean_depth")
        if mean_depth is None or not math.isfinite(mean_depth):
            raise ValueError(f"{args.checkpoint} records no train_mean_depth; give --mean-depth for --baseline mean")
    predictor = Predictor(model, args.device)
    source = open_source(args.data)
    indices = _evenly(len(source), args.max_frames)
    if not indices:
        raise ValueError(f"{args.data}: no frames to evaluate")
    panel_positions = set(_evenly(len(indices), args.panels))
    args.out.mkdir(parents=True, exist_ok=True)

    acc = MetricAccumulator()
    base = MetricAccumulator()
    oracle = MetricAccumulator()
    fill_rows: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    predict_seconds = 0.0
    started = time.monotonic()
    for position, index in enumerate(tqdm(indices, desc="evaluating", unit="frame", disable=args.quiet)):
        frame = source[index]
        if frame.depth is None:
            raise ValueError(f"{args.data}: frame {frame.name!r} has no depth to score against")
        rgb, depth = border_crop(frame.rgb, frame.depth, args.border_crop)
        target = resize_depth(depth, rgb.shape[:2])
        valid = valid_mask(target, model.min_depth, model.max_depth)
        tic = time.perf_counter()
        pred = predictor.predict(np.ascontiguousarray(rgb), frame_focal(frame, args.border_crop))
        predict_seconds += time.perf_counter() - tic
        own = acc.update(pred, target, valid)
        row: dict[str, Any] = {"index": index, "name": frame.name, "stamp": frame.stamp}
        row.update({key: own[key] for key in _FRAME_FIELDS})
        if mean_depth is not None:
            constant = base.update(np.full_like(target, mean_depth), target, valid)
            row.update({f"mean_{key}": constant[key] for key in _FRAME_FIELDS[:4]})
        if args.oracle:
            shrunk = resize_depth(resize_depth(target, model.input_size), target.shape)
            row["oracle_boundary_f1"] = oracle.update(shrunk, target, valid)["boundary_f1"]
        if args.fill_eval:
            fill_rows.append(fill_evaluation(target, pred, valid, np.random.default_rng(index), count=args.fill_blobs,
                                             diameter_px=tuple(args.fill_blob_px)))  # fmt: skip
        rows.append(row)
        if position in panel_positions:
            save_panel(args.out / "panels" / f"frame_{index:05d}.png", rgb, target, pred, valid,
                       f"{frame.name}  RMSE {own['rmse']:.3f} m  AbsRel {own['abs_rel']:.3f}")

    with (args.out / "per_frame.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = {f"{model.arch} ({args.checkpoint.name})": acc.result()}
    if mean_depth is not None:
        table[f"mean depth {mean_depth:.3f} m"] = base.result()
    oracle_label = f"sensor via {model.input_size[0]}x{model.input_size[1]} (oracle)"
    if args.oracle:
        table[oracle_label] = oracle.result()
    fill = None
    if args.fill_eval:
        fill = {**finish_fill_evaluation(fill_rows), "blobs": args.fill_blobs, "blob_px": list(args.fill_blob_px)}
    report = {
        "checkpoint": str(args.checkpoint),
        "arch": model.arch,
        "input_size": list(model.input_size),
        "data": args.data,
        "frames": len(indices),
        "device": str(predictor.device),
        "model": acc.result(),
        "baseline_mean": None if mean_depth is None else {**base.result(), "mean_depth": mean_depth},
        "oracle": {**oracle.result(), "size": list(model.input_size)} if args.oracle else None,
        "fill_evaluation": fill,
        "predict_ms_per_frame": 1e3 * predict_seconds / len(indices),
        "seconds": round(time.monotonic() - started, 2),
        "provenance": meta["provenance"],
    }
    write_json(args.out / "metrics.json", report)
    print(f"{len(indices)} frames of {args.data}")
    print(format_table(table))
    if fill is not None:
        print(format_fill_table(fill))
    print(f"written to {args.out}/ (metrics.json, per_frame.csv, panels/)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``evaluate``; returns the exit status (2 for bad data, paths or checkpoints)."""
    return run_main("evaluate", _run, argv)


if __name__ == "__main__":
    sys.exit(main())
