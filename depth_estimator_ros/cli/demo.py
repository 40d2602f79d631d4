"""``make demo``: replay a recorded RGB-D session through the live pipeline, adaptation on vs off.

See :mod:`depth_estimator_ros.ros.demo` for what it does; this is its command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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
    parser.add_argument("--pretrain-minutes", type=float, default=4.0,
                        help="budget of --retrain's pretraining when its checkpoint is missing (default 4)")
    parser.add_argument("--every", type=int, default=2, help="keep every Nth frame of the source (default 2)")
    parser.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"),
                        help="image size in the bag (default 320 240)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return the process exit status."""
    args = build_parser().parse_args(argv)
    if args.every < 1 or min(args.size) < 16 or args.pretrain_minutes <= 0:
        print("demo: --every must be >= 1, --size at least 16 16, --pretrain-minutes > 0", file=sys.stderr)
        return 2
    from depth_estimator_ros.ros.demo import run_demo

    try:
        report = run_demo(args.out, data=args.data, checkpoint=args.checkpoint, retrain=args.retrain,
                          pretrain_minutes=args.pretrain_minutes, every=args.every,
                          width=args.size[0], height=args.size[1], progress=not args.no_progress)
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
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


if __name__ == "__main__":
    sys.exit(main())
