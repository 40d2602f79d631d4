"""``make demo``: replay a recorded RGB-D session through the live pipeline, adaptation on vs off.

See :mod:`depth_estimator_bench.demo` for what it does; this is its command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from depth_estimator_ros.cli._common import positive_float, positive_int, run_main

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``demo``."""
    parser = argparse.ArgumentParser(
        prog="demo",
        description="Play an RGB-D bag through the live pipeline (estimator + online trainer) twice, "
        "with and without adaptation, and report depth error over time.",
    )
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    parser.add_argument("--data", default=None,
                        help="frame source of the stream (default: ../shared/data/7scenes_kitchen when present, "
                        "else an unseen synthetic room)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="base model (default: the checkpoint shipped with the package)")
    parser.add_argument("--retrain", action="store_true",
                        help="use <out>/../pretrained/fast_synthetic.safetensors instead, pretrained on "
                        "synthetic rooms when missing")
    parser.add_argument("--pretrain-minutes", type=positive_float, default=4.0,
                        help="budget of --retrain's pretraining when its checkpoint is missing (default 4)")
    parser.add_argument("--every", type=positive_int, default=2, help="keep every Nth frame of the source (default 2)")
    parser.add_argument("--sensor-rate", type=positive_float, default=30.0,
                        help="frame rate of the source in Hz; the bag plays at this / --every (default 30)")
    parser.add_argument("--size", type=positive_int, nargs=2, default=(320, 240), metavar=("W", "H"),
                        help="image size in the bag (default 320 240)")
    parser.add_argument("--window", type=positive_float, default=3.0,
                        help="length of the report's time windows in seconds of stream time (default 3)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if min(args.size) < 16:
        raise ValueError(f"--size must be at least 16 16, got {args.size[0]} {args.size[1]}")
    from depth_estimator_bench.demo import run_demo

    try:
        report = run_demo(args.out, data=args.data, checkpoint=args.checkpoint, retrain=args.retrain,
                          pretrain_minutes=args.pretrain_minutes, every=args.every, sensor_rate_hz=args.sensor_rate,
                          width=args.size[0], height=args.size[1], window_s=args.window,
                          progress=not args.no_progress)
    except RuntimeError as exc:  # a live process that did not come up, an interrupted playback
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print(f"\nstream: {report['data']} ({report['rate_hz']:g} Hz, {report['image_size'][0]}x{report['image_size'][1]})")
    print(f"{'run':<10}{'frames':>8}{'Hz':>7}{'RMSE':>8}{'2nd half RMSE':>15}{'AbsRel':>8}{'δ1':>7}{'versions':>10}")
    for name, run in report["runs"].items():
        def fmt(value, spec):
            return format(value, spec) if value is not None else "-"
        print(f"{name:<10}{run['depth_images_scored']:>8}{fmt(run['depth_rate_hz'], '7.1f')}"
              f"{fmt(run['rmse'], '8.3f')}{fmt(run['second_half_rmse'], '15.3f')}{fmt(run['abs_rel'], '8.3f')}"
              f"{fmt(run['delta1'], '7.3f')}{run['weights_versions']:>10}")
    print(f"report: {args.out / 'report.json'}, {args.out / 'report.png'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return the process exit status (2 for bad arguments, data or paths, 1 when a run fails)."""
    return run_main("demo", _run, argv)


if __name__ == "__main__":
    sys.exit(main())
