"""Held-out scene folds over several folders of rooms: how a base-model recipe does on scenes it never saw.

Leave-one-room-out (:mod:`rooms`) trains once per room: with ``rooms_more/``'s 43 scenes
that is too many trainings for a 2-core machine. Here the real scenes of every folder are
grouped by the repository they came from (``SOURCES.tsv``'s ``source`` column: frames of
one lab's set-up never sit on both sides of a fold), the groups dealt into ``folds``
folds of about equal frames, and the recipe trained once per fold on everything else
(rendered ``synthetic_*`` scenes and the synthetic generator always train). Every real
scene is then scored by the model that never saw it, next to that fold's training-mean
depth. Several seeds and several recipes (``variants``: train options over
:data:`rooms.RECIPE`) run the same folds, so a recipe is chosen on held-out scenes with
the seed's spread visible. Budgets are optimiser steps.
"""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from depth_estimator_bench.accuracy import score_frames
from depth_estimator_ros.atomic import write_json
from depth_estimator_bench.machine import describe_machine
from depth_estimator_bench.rooms import RECIPE, constant_predictor

__all__ = ["CLOSE_RANGE_M", "MIN_SCORED_FRAMES", "scene_groups", "deal_folds", "run", "per_scene", "summary_rows"]

#: A scene is close range when its median sensor depth is at most this (metres): tabletops, bins, shelves.
CLOSE_RANGE_M = 1.5

#: Scenes with fewer frames are scored and listed, but left out of the summary (issue 24: ">= 5 frames").
MIN_SCORED_FRAMES = 5


def scene_groups(roots: Sequence[Path]) -> dict[str, list[tuple[Path, str, int]]]:
    """Return the real scenes of ``roots`` grouped by source repository: ``{group: [(root, scene, frames)]}``.

    A scene missing from its folder's ``SOURCES.tsv`` (or a folder without one) is a group
    of its own. Rendered ``synthetic_*`` scenes are left out: they always train.
    """
    from depth_estimator_ros.data.collection import open_rooms

    groups: dict[str, list[tuple[Path, str, int]]] = defaultdict(list)
    for root in map(Path, roots):
        repo: dict[str, str] = {}
        table = root / "SOURCES.tsv"
        if table.is_file():
            with table.open(newline="") as f:
                for row in csv.DictReader(f, delimiter="\t"):
                    repo[row["name"]] = row.get("source", "").split("@")[0] or row["name"]
        for room in open_rooms(root):
            if not room.name.startswith("synthetic_"):
                groups[repo.get(room.name, room.name)].append((root, room.name, len(room)))
    return dict(groups)


def deal_folds(groups: Mapping[str, Sequence[tuple[Path, str, int]]], folds: int) -> list[list[str]]:
    """Deal groups, largest first, into ``folds`` lists of scene names with about equal frames."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    dealt: list[list[str]] = [[] for _ in range(folds)]
    frames = [0] * folds
    for _, scenes in sorted(groups.items(), key=lambda kv: (-sum(n for *_, n in kv[1]), kv[0])):
        k = frames.index(min(frames))
        dealt[k] += [name for _, name, _ in scenes]
        frames[k] += sum(n for *_, n in scenes)
    return [sorted(names) for names in dealt]


def _train(roots: Sequence[Path], leave_out: Sequence[str], recipe: Mapping[str, Any], encoder_weights: str | None,
           steps: int, seed: int, out_dir: Path, device: str, progress: bool) -> tuple[Any, float]:
    from depth_estimator_ros.data.collection import open_training_sources, split_sources
    from depth_estimator_ros.learning.trainer import TrainConfig, fit
    from depth_estimator_ros.models import build_model

    sources = open_training_sources([*map(str, roots), *recipe["extra_sources"]], list(leave_out))
    train, val, _, _ = split_sources(sources, recipe["split"], seed, recipe["min_room_frames"])
    model = build_model(recipe["arch"], encoder_weights=encoder_weights, input_size=recipe["input_size"],
                        backbone=recipe["backbone"])
    config = TrainConfig(epochs=10_000, patience=10_000, max_steps=steps, cosine=True,
                         encoder_lr_scale=recipe["encoder_lr_scale"], max_zoom=recipe["max_zoom"],
                         loss=recipe["loss"], seed=seed, device=device, progress=progress)
    result = fit(model, train, val, out_dir, config, provenance={"leave_out": list(leave_out)})
    return model.eval(), result.train_mean_depth


def _median_depth(frames: Sequence[Any]) -> float:
    import numpy as np

    depth = np.concatenate([f.depth[np.isfinite(f.depth) & (f.depth > 0)].ravel() for f in frames])
    return float(np.median(depth)) if depth.size else math.nan


def run(
    out_dir: Path,
    *,
    roots: Sequence[Path],
    encoder_weights: str | None,
    variants: Mapping[str, Mapping[str, Any]],
    steps: int = 600,
    folds: int = 2,
    only_folds: Sequence[int] | None = None,
    seeds: Sequence[int] = (0, 1),
    device: str = "cpu",
    progress: bool = False,
) -> dict[str, Any]:
    """Train every variant x seed x fold, score each held-out real scene; write ``scene_folds.json``.

    Args:
        out_dir: output folder (training folders under ``scene_folds/``).
        roots: folders of room folders (``rooms/``, ``rooms_more/``); never the kitchen.
        encoder_weights: the ImageNet encoder every training starts from.
        variants: name -> train options that differ from :data:`rooms.RECIPE` (``loss``,
            ``roots`` to train on fewer folders, ...).
        steps: optimiser steps per training.
        folds: number of folds the scene groups are dealt into.
        only_folds: run just these fold indices (the rest are listed, not trained).
        seeds: split and training seeds.
        device: torch device.
        progress: show tqdm bars.

    Returns:
        ``machine``, ``settings``, ``folds`` (scene names) and ``rows``: one per variant,
        seed, fold and held-out scene with the model's and the mean depth's metrics.
    """
    import torch

    from depth_estimator_ros.data.collection import open_rooms
    from depth_estimator_ros.learning.predictor import Predictor

    out_dir = Path(out_dir)
    roots = [Path(r) for r in roots]
    groups = scene_groups(roots)
    dealt = deal_folds(groups, folds)
    where = {name: root for scenes in groups.values() for root, name, _ in scenes}
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    rows: list[dict[str, Any]] = []
    result = {"section": "scene_folds", "machine": describe_machine(), "folds": dealt, "rows": rows,
              "settings": {"steps": steps, "seeds": list(seeds), "roots": [str(r) for r in roots],
                           "variants": {k: dict(v) for k, v in variants.items()}, "recipe": RECIPE,
                           "encoder_weights": str(encoder_weights)}}
    try:
        for name, options in variants.items():
            recipe = {**RECIPE, **options}
            train_roots = [Path(r) for r in recipe.get("roots", roots)]
            for seed in seeds:
                for k, held in enumerate(dealt):
                    if only_folds is not None and k not in only_folds:
                        continue
                    leave = [s for s in held if where[s] in train_roots]
                    model, mean = _train(train_roots, leave, recipe, encoder_weights, steps, seed,
                                         out_dir / "scene_folds" / f"{name}_s{seed}_f{k}", device, progress)
                    predict = Predictor(model, device).predict
                    for scene in held:
                        frames = list(open_rooms(where[scene], only=[scene])[0])
                        rows.append({"variant": name, "seed": seed, "fold": k, "scene": scene,
                                     "root": where[scene].name, "frames": len(frames), "train_mean_depth": mean,
                                     "median_depth": _median_depth(frames),
                                     "model": score_frames(predict, frames),
                                     "mean_depth": score_frames(constant_predictor(mean), frames)})
                    write_json(out_dir / "scene_folds.json", result)
    finally:
        torch.set_num_threads(threads)
    return result


def per_scene(result: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Return, per variant, one row per held-out scene with its metrics averaged over the seeds.

    Each row: ``scene``, ``frames``, ``seeds``, ``close_range`` (median sensor depth at most
    :data:`CLOSE_RANGE_M`), the seed-mean ``abs_rel`` / ``rmse`` / ``delta1`` / ``si_log`` /
    ``boundary_f1`` of the model, the spread of its AbsRel over the seeds, and the mean depth's AbsRel / RMSE.
    """
    import numpy as np

    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in result["rows"]:
        grouped[(row["variant"], row["scene"])].append(row)
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (variant, scene), rows in sorted(grouped.items()):
        model = {k: float(np.mean([r["model"][k] for r in rows])) for k in
                 ("abs_rel", "rmse", "delta1", "si_log", "boundary_f1")}
        spread = [r["model"]["abs_rel"] for r in rows]
        out[variant].append({
            "scene": scene, "frames": rows[0]["frames"], "seeds": len(rows), **model,
            "abs_rel_min": min(spread), "abs_rel_max": max(spread),
            "close_range": rows[0].get("median_depth", math.inf) <= CLOSE_RANGE_M,
            "mean_depth_abs_rel": float(np.mean([r["mean_depth"]["abs_rel"] for r in rows])),
            "mean_depth_rmse": float(np.mean([r["mean_depth"]["rmse"] for r in rows])),
        })
    return dict(out)


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return ``bench``'s summary lines: per variant, the scenes of >= 5 frames against the mean depth."""
    if "skipped" in result:
        return [{"section": "scene_folds", "what": "scene folds", "value": result["skipped"], "target": ""}]
    lines = []
    for variant, rows in per_scene(result).items():
        scored = [r for r in rows if r["frames"] >= MIN_SCORED_FRAMES]
        close = [r for r in scored if r["close_range"]]
        wins = sum(r["abs_rel"] < r["mean_depth_abs_rel"] and r["rmse"] < r["mean_depth_rmse"] for r in scored)
        mean = sum(r["abs_rel"] for r in scored) / max(1, len(scored))
        close_mean = sum(r["abs_rel"] for r in close) / max(1, len(close))
        lines += [
            {"section": "scene_folds", "what": f"{variant}: scenes of >= 5 frames beating the mean depth",
             "value": f"{wins} of {len(scored)} (mean AbsRel {mean:.3f})", "target": "every one"},
            {"section": "scene_folds", "what": f"{variant}: close-range scenes, mean AbsRel",
             "value": f"{close_mean:.3f} over {len(close)}", "target": "<= 0.35"},
        ]
    return lines
