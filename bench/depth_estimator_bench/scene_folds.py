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
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from depth_estimator_bench.accuracy import score_frames
from depth_estimator_ros.atomic import write_json
from depth_estimator_bench.machine import describe_machine
from depth_estimator_bench.rooms import RECIPE, constant_predictor

__all__ = ["scene_groups", "deal_folds", "run"]


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
                                     "model": score_frames(predict, frames),
                                     "mean_depth": score_frames(constant_predictor(mean), frames)})
                    write_json(out_dir / "scene_folds.json", result)
    finally:
        torch.set_num_threads(threads)
    return result
