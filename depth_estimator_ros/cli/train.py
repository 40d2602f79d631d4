"""``train``: train a depth model offline on RGB-D data; keep the best checkpoint.

Usage::

    train --arch fast --data synthetic:seed=0,frames=2000,rooms=40 --minutes 5 --out out/train
    train --arch densenet201 --data nyu_depth_v2_labeled.mat --epochs 20 --device cuda
    train --init out/train/best.safetensors --data /data/7scenes/kitchen --scope decoder --out out/kitchen

The data is split at random (seeded) into train / validation / test parts (80/10/10
by default; ``split.json`` lists the indices); the validation part picks the best
epoch and stops training early, the test part is left for ``evaluate``. The output
folder gets ``best.safetensors``, ``train_log.csv``, ``train_log.json``,
``loss_curve.png`` and ``split.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from depth_estimator_ros.cli._common import add_runtime_arguments, apply_runtime, positive_float, positive_int, run_main
from depth_estimator_ros.data import Subset, open_source, split_indices
from depth_estimator_ros.learning.trainer import TrainConfig, fit
from depth_estimator_ros.models import ARCHITECTURES, SCOPES, build_model, load_checkpoint

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``train`` command."""
    parser = argparse.ArgumentParser(
        prog="train", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", required=True, help="frame source: folder, .mat, bag or synthetic:key=value,...")
    parser.add_argument("--out", type=Path, default=Path("out/train"), help="output folder (default out/train)")
    parser.add_argument("--arch", choices=ARCHITECTURES, default=None,
                        help="architecture (default fast, or the --init checkpoint's)")
    parser.add_argument("--init", type=Path, default=None, help="start from the weights of this checkpoint")
    parser.add_argument(
        "--encoder-weights", choices=("imagenet", "none"), default="none",
        help="encoder initialisation of a new model (default none; imagenet needs the torchvision weights)",
    )  # fmt: skip
    parser.add_argument("--input-size", type=positive_int, nargs=2, metavar=("H", "W"), default=None,
                        help="model input size of a new model (default: the architecture's)")
    parser.add_argument("--epochs", type=positive_int, default=20, help="most epochs (default 20)")
    parser.add_argument("--minutes", type=positive_float, default=None, help="wall-clock budget of the whole run")
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
                        help="also copy the best checkpoint to this file when done")
    add_runtime_arguments(parser)
    return parser


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    apply_runtime(args)
    source = open_source(args.data)
    parts = split_indices(len(source), args.split, seed=args.seed)
    train, val, test = (Subset(source, idx, name=f"{source.name}[{label}]")
                        for idx, label in zip(parts, ("train", "val", "test")))
    if len(train) == 0 or len(val) == 0:
        raise ValueError(f"{args.data}: {len(source)} frames give {len(train)} training and {len(val)} "
                         "validation frames; need at least one of each (more frames or another --split)")
    if args.init is not None:
        model, _ = load_checkpoint(args.init, arch=args.arch)
    else:
        options = {} if args.input_size is None else {"input_size": tuple(args.input_size)}
        weights = None if args.encoder_weights == "none" else args.encoder_weights
        model = build_model(args.arch or "fast", encoder_weights=weights, **options)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "split.json").write_text(json.dumps(
        {"data": args.data, "seed": args.seed, "fractions": list(args.split),
         **{label: idx.tolist() for label, idx in zip(("train", "val", "test"), parts)}}) + "\n")
    config = TrainConfig(
        epochs=args.epochs, minutes=args.minutes, micro_batch=args.micro_batch, accumulation=args.accumulation,
        lr=args.lr, weight_decay=args.weight_decay, scope=args.scope, patience=args.patience,
        augment=not args.no_augment, border_crop=args.border_crop, seed=args.seed, device=args.device,
        progress=not args.quiet,
    )  # fmt: skip
    command = "train " + shlex.join(list(argv) if argv is not None else sys.argv[1:])
    provenance = {"data": args.data, "command": command, "init": None if args.init is None else str(args.init),
                  "encoder_weights": model.encoder_weights, "split_seed": args.seed}
    result = fit(model, train, val, args.out, config, provenance=provenance)
    best = result.best_metrics
    print(f"{model.arch}: {result.epochs_run} epoch(s), {result.steps} steps in {result.seconds:.0f} s "
          f"(stopped: {result.stopped}); best epoch {result.best_epoch}: validation RMSE {best['rmse']:.3f} m, "
          f"AbsRel {best['abs_rel']:.3f}, delta1 {best['delta1']:.3f}; training mean depth "
          f"{result.train_mean_depth:.3f} m")
    print(f"checkpoint: {result.checkpoint}")
    if args.checkpoint is not None:
        args.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.checkpoint.with_name(args.checkpoint.name + f".tmp{os.getpid()}")
        shutil.copyfile(result.checkpoint, tmp)
        tmp.replace(args.checkpoint)
        print(f"copied to: {args.checkpoint}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``train``; returns the exit status (2 for bad data, paths or checkpoints)."""
    return run_main("train", _run, argv)


if __name__ == "__main__":
    sys.exit(main())
