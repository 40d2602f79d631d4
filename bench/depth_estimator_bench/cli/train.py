"""``train``: train a depth model offline on RGB-D data; keep the best checkpoint.

Usage::

    # the shipped base model (README, "Base model"): ImageNet MobileNetV2, every real room
    train --data ../shared/data/rooms --encoder-weights ../shared/weights/mobilenet_v2_imagenet_from_qnnpack.safetensors \
          --input-size 144 192 --steps 3000 --cosine ...
    train --arch fast --data synthetic:seed=0,frames=2000,rooms=40 --minutes 5 --out out/train
    train --arch densenet201 --data nyu_depth_v2_labeled.mat --epochs 20 --device cuda
    train --init out/train/best.safetensors --data /data/7scenes/kitchen --scope decoder --out out/kitchen

``--data`` takes one or more sources; a folder of room folders (``rooms/``) counts as
one source per room, and ``--leave-out ROOM`` keeps a room out of training entirely.
Each source is split at random (seeded) into train / validation / test parts (80/10/10
by default; ``split.json`` lists the indices per source); the validation part picks the best
epoch and stops training early, the test part is left for ``evaluate``. The output
folder gets ``best.safetensors``, ``train_log.csv``, ``train_log.json``,
``loss_curve.png`` and ``split.json``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from depth_estimator_ros.atomic import write_json
from depth_estimator_ros.cli._common import add_runtime_arguments, apply_runtime, positive_float, positive_int, run_main
from depth_estimator_ros.data.collection import open_training_sources, split_sources
from depth_estimator_ros.learning.losses import LOSSES
from depth_estimator_ros.learning.trainer import TrainConfig, fit

from depth_estimator_bench.plots import plot_training
from depth_estimator_ros.models import ARCHITECTURES, SCOPES, build_model, load_checkpoint, save_checkpoint
from depth_estimator_ros.models.fast import BACKBONES

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``train`` command."""
    parser = argparse.ArgumentParser(
        prog="train", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, nargs="+",
                        help="frame sources: folder, folder of room folders, .mat, bag or synthetic:key=value,...")
    parser.add_argument("--leave-out", action="append", default=[], metavar="ROOM",
                        help="room folder name (inside a folder of rooms) never trained on; repeatable")
    parser.add_argument("--min-room-frames", type=int, default=0,
                        help="repeat each source's training frames up to at least N per epoch (default 0: off)")
    parser.add_argument("--out", type=Path, default=Path("out/train"), help="output folder (default out/train)")
    parser.add_argument("--arch", choices=ARCHITECTURES, default=None,
                        help="architecture (default fast, or the --init checkpoint's)")
    parser.add_argument("--init", type=Path, default=None, help="start from the weights of this checkpoint")
    parser.add_argument(
        "--encoder-weights", default="none",
        help="encoder initialisation of a new model: none (default), imagenet (torchvision's weights API) "
             "or a path to a local safetensors state dict of the torchvision model",
    )  # fmt: skip
    parser.add_argument("--backbone", choices=BACKBONES, default=None,
                        help="encoder of a new fast model (default mobilenet_v2)")
    parser.add_argument("--input-size", type=positive_int, nargs=2, metavar=("H", "W"), default=None,
                        help="model input size of a new model (default: the architecture's)")
    parser.add_argument("--epochs", type=positive_int, default=20, help="most epochs (default 20)")
    parser.add_argument("--minutes", type=positive_float, default=None, help="wall-clock budget of the whole run")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="optimiser steps budget (reproducible whatever the machine's load)")
    parser.add_argument("--cosine", action="store_true", help="cosine learning-rate decay over --steps")
    parser.add_argument("--encoder-lr-scale", type=positive_float, default=1.0,
                        help="encoder learning rate relative to the rest (default 1)")
    parser.add_argument("--loss", choices=LOSSES, default=None, help="training loss (default: the model's)")
    parser.add_argument("--max-zoom", type=float, default=1.0,
                        help="largest random zoom (crop + resize, focal length scaled) of the augmentation")
    parser.add_argument("--patience", type=positive_int, default=5, help="epochs without improvement (default 5)")
    parser.add_argument("--micro-batch", type=positive_int, default=None, help="images per pass (model default)")
    parser.add_argument("--accumulation", type=positive_int, default=None, help="passes per step (model default)")
    parser.add_argument("--lr", type=positive_float, default=None, help="Adam learning rate (model default)")
    parser.add_argument("--weight-decay", type=float, default=None, help="Adam weight decay (model default)")
    parser.add_argument("--scope", choices=SCOPES, default="default", help="trainable parts (default: the model's)")
    parser.add_argument("--no-augment", action="store_true", help="turn seed 1's augmentation off")
    parser.add_argument("--border-crop", type=int, default=0, help="pixels cut from every border (seed 1: 10)")
    parser.add_argument("--split", type=positive_float, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
                        default=(0.8, 0.1, 0.1), help="split fractions (default 0.8 0.1 0.1)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="also copy the best checkpoint to this file when done, with its metadata "
                             "beside it as .json")
    parser.add_argument("--half", action="store_true",
                        help="store the --checkpoint copy in float16 (half the size; loads as float32)")
    add_runtime_arguments(parser)
    return parser


def _sources_table(specs: Sequence[str], names: set[str]) -> list[dict[str, str]]:
    """Return what each training source is and its licence: SOURCES.tsv rows of folder rooms, else a note.

    Sources found in no ``SOURCES.tsv`` beside them (a synthetic spec, a lone folder) get a
    row saying so, so that a checkpoint's metadata lists every source it learned from.
    """
    rows = []
    for spec in specs:
        table = Path(spec) / "SOURCES.tsv"
        if not table.is_file():
            continue
        lines = table.read_text().splitlines()
        header = lines[0].split("\t")
        for line in lines[1:]:
            row = dict(zip(header, line.split("\t")))
            if row.get("name") in names:
                rows.append(row)
    listed = {row["name"] for row in rows}
    for name in sorted(names - listed):
        if name.startswith("synthetic-seed"):
            rows.append({"name": name, "sensor": "SYNTHETIC: rendered by depth_estimator_ros.data.synthetic",
                         "license": "Apache-2.0 (this package)"})
        else:
            rows.append({"name": name, "license": "not recorded (no SOURCES.tsv beside it)"})
    return rows


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    apply_runtime(args)
    if args.min_room_frames < 0:
        raise ValueError(f"--min-room-frames must be >= 0, got {args.min_room_frames}")
    sources = open_training_sources(args.data, args.leave_out)
    train, val, test, split = split_sources(sources, args.split, args.seed, args.min_room_frames)
    if val is None:
        raise ValueError(f"{', '.join(args.data)}: no validation frames; need at least one "
                         "(more frames or another --split)")
    if args.init is not None:
        model, _ = load_checkpoint(args.init, arch=args.arch)
    else:
        options = {} if args.input_size is None else {"input_size": tuple(args.input_size)}
        if args.backbone is not None:
            if (args.arch or "fast") != "fast":
                raise ValueError("--backbone applies to the fast architecture")
            options["backbone"] = args.backbone
        weights = None if args.encoder_weights == "none" else args.encoder_weights
        model = build_model(args.arch or "fast", encoder_weights=weights, **options)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "split.json", {"data": args.data, "leave_out": args.leave_out, "seed": args.seed,
                                         "fractions": list(args.split), "sources": split})
    config = TrainConfig(
        epochs=args.epochs, minutes=args.minutes, max_steps=args.steps, cosine=args.cosine,
        encoder_lr_scale=args.encoder_lr_scale, max_zoom=args.max_zoom, loss=args.loss, micro_batch=args.micro_batch, accumulation=args.accumulation,
        lr=args.lr, weight_decay=args.weight_decay, scope=args.scope, patience=args.patience,
        augment=not args.no_augment, border_crop=args.border_crop, seed=args.seed, device=args.device,
        progress=not args.quiet,
    )  # fmt: skip
    command = "train " + shlex.join(list(argv) if argv is not None else sys.argv[1:])
    provenance = {
        "data": list(args.data), "command": command, "init": None if args.init is None else str(args.init),
        "encoder_weights": model.encoder_provenance, "split_seed": args.seed, "leave_out": args.leave_out,
        "rooms": {source.name: len(source) for source in sources},
        "licences": _sources_table(args.data, {source.name for source in sources}),
        "never_trained_on": "7scenes_kitchen (the unseen room adaptation is measured on)",
    }
    result = fit(model, train, val, args.out, config, provenance=provenance, plot=plot_training)
    best = result.best_metrics
    print(f"{model.arch}: {result.epochs_run} epoch(s), {result.steps} steps in {result.seconds:.0f} s "
          f"(stopped: {result.stopped}); best epoch {result.best_epoch}: validation RMSE {best['rmse']:.3f} m, "
          f"AbsRel {best['abs_rel']:.3f}, delta1 {best['delta1']:.3f}; training mean depth "
          f"{result.train_mean_depth:.3f} m")
    print(f"checkpoint: {result.checkpoint}")
    if args.checkpoint is not None:
        sidecar = export_checkpoint(result.checkpoint, args.checkpoint, half=args.half)
        print(f"copied to: {args.checkpoint} (metadata: {sidecar})")
    return 0


def export_checkpoint(source: Path, target: Path, *, half: bool = False) -> Path:
    """Copy a checkpoint (optionally as float16) and write its metadata beside it as JSON.

    Both files are written atomically. Returns the ``.json`` path.
    """
    model, meta = load_checkpoint(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(target, model, provenance=meta["provenance"], dtype=torch.float16 if half else None)
    _, meta = load_checkpoint(target)
    meta["stored_dtype"] = "float16" if half else "float32"
    return write_json(target.with_suffix(".json"), meta, sort_keys=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``train``; returns the exit status (2 for bad data, paths or checkpoints)."""
    return run_main("train", _run, argv)


if __name__ == "__main__":
    sys.exit(main())
