"""``adapt_eval``: prequential evaluation of online adaptation on a real-time RGB-D stream.

Streams a sequence (RGB-D folder, rosbag2 or ``synthetic:...``) at ``--rate`` through the
estimator, once with the model frozen and once with the adaptation engine running, and
writes ``adapt_eval.json`` and ``adapt_eval.png`` (RMSE / AbsRel / delta1 over stream
time, both runs) to ``--out``. Forgetting is measured on ``--forget-data``.

Example (the README's figures)::

    adapt_eval --data ../shared/data/7scenes_kitchen \\
        --checkpoint out/pretrained/fast_synthetic.safetensors --out out/adapt_eval
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from depth_estimator_bench.cli._engine import add_engine_arguments, config_from_args, size_arg
from depth_estimator_ros.cli._common import positive_float, positive_int, run_main

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``adapt_eval``."""
    p = argparse.ArgumentParser(
        prog="adapt_eval",
        description="Prequential (test, then train) evaluation of online adaptation, with vs without.",
    )
    p.add_argument("--data", default="synthetic:seed=11,frames=300,width=320,height=240",
                   help="stream to play: RGB-D folder, rosbag2, or synthetic:... spec (default: %(default)s)")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="start model (.safetensors); default: build --arch from scratch (cold start)")
    p.add_argument("--cold-start", action="store_true",
                   help="start from an untrained --arch model (the default without --checkpoint)")
    p.add_argument("--arch", default="fast", help="architecture for a cold start (default: %(default)s)")
    p.add_argument("--input-size", type=size_arg, default=None,
                   help="HxW input size for a cold start (default: the architecture's own)")
    p.add_argument("--rate", type=positive_float, default=30.0,
                   help="stream rate in Hz (default: %(default)s, a Kinect)")
    p.add_argument("--frames", type=positive_int, default=None, help="stream only the first N frames")
    p.add_argument("--forget-data", default="synthetic:seed=0,frames=24,rooms=4,width=320,height=240",
                   help="second sequence for forgetting ('none' to skip; default: %(default)s)")
    p.add_argument("--base-data", default=None,
                   help="base-domain frames the engine replays (with --base-replay > 0), e.g. synthetic:...")
    p.add_argument("--base-frames", type=positive_int, default=64,
                   help="frames read from --base-data, evenly spaced (default: %(default)s)")
    p.add_argument("--forget-frames", type=positive_int, default=None,
                   help="frames of --forget-data scored, evenly spaced (default: all)")
    p.add_argument("--out", type=Path, default=Path("out/adapt_eval"), help="output folder (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="torch intra-op threads for the whole process (default: %(default)s; 1 lets estimator "
                        "and trainer threads each use a core of a 2-core CPU)")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "auto"), default="auto",
                   help="the estimator's inference backend (training is torch; default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="engine seed (default: %(default)s)")
    p.add_argument("--window", type=positive_float, default=2.0,
                   help="metric window in stream seconds (default: %(default)s)")
    p.add_argument("--threshold", type=positive_float, default=0.5,
                   help="RMSE (m) of the time-to-threshold figure (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_engine_arguments(p)
    return p


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cold_start and args.checkpoint is not None:
        parser.error("--cold-start and --checkpoint exclude each other")
    if args.input_size is not None and args.checkpoint is not None:
        parser.error("--input-size applies to a cold start; a checkpoint fixes its own input size")

    import torch

    from depth_estimator_bench.prequential import load_frames, plot_result, run_prequential, write_result
    from depth_estimator_ros.data import open_source
    from depth_estimator_ros.models import build_model, load_checkpoint

    torch.set_num_threads(args.threads)
    progress = not args.no_progress
    config = config_from_args(args, cold=args.checkpoint is None)
    if args.checkpoint is None:
        size = {} if args.input_size is None else {"input_size": args.input_size}
        model, start = build_model(args.arch, **size), "cold"
    else:
        model, start = load_checkpoint(args.checkpoint)[0], str(args.checkpoint)
    frames = load_frames(open_source(args.data), args.frames, progress=progress)
    forget = None
    if args.forget_data and args.forget_data.lower() != "none":
        forget = load_frames(open_source(args.forget_data), args.forget_frames, spread=True, progress=progress)
    base = None
    if args.base_data:
        base = load_frames(open_source(args.base_data), args.base_frames, spread=True, progress=progress)
    result = run_prequential(
        model, frames, config=config, rate_hz=args.rate, base_frames=base, forgetting_frames=forget,
        device=args.device, seed=args.seed, window_s=args.window, threshold_m=args.threshold,
        backend=args.backend, sensor_scale=args.sensor_scale == "on", progress=progress,
    )
    result["settings"].update(
        start=start, data=args.data, forget_data=args.forget_data, base_data=args.base_data,
        threads=args.threads, command=" ".join(["adapt_eval", *(sys.argv[1:] if argv is None else argv)]),
    )
    json_path = write_result(result, args.out / "adapt_eval.json")
    png_path = plot_result(result, args.out / "adapt_eval.png")
    s = result["summary"]
    print(
        f"second-half RMSE {s['second_half_rmse_adapted']:.3f} m adapted vs {s['second_half_rmse_frozen']:.3f} m "
        f"frozen (ratio {s['second_half_rmse_ratio']:.2f}); estimator {s['estimator_fps_adapting']:.1f} fps "
        f"while adapting; rounds {s['rounds_accepted']}/{s['rounds_run']} accepted; forgetting "
        f"{'n/a' if s['forgetting_rmse_percent'] is None else format(s['forgetting_rmse_percent'], '+.1f') + ' %'}; "
        f"RMSE < {s['threshold_m']} m after {s['time_to_rmse_below_s_adapted']} s"
    )
    print(
        f"second half, structure: si-log {s['second_half_si_log_adapted']:.3f} adapted vs "
        f"{s['second_half_si_log_frozen']:.3f} frozen; boundary F1 {s['second_half_boundary_f1_adapted']:.3f} "
        f"adapted vs {s['second_half_boundary_f1_frozen']:.3f} frozen"
    )
    print(f"wrote {json_path} and {png_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``adapt_eval``; return the exit status (0 ok, 2 bad arguments or data)."""
    return run_main("adapt_eval", _run, argv)


if __name__ == "__main__":
    sys.exit(main())
