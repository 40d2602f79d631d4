"""``tour_eval``: several recordings played back to back as one stream, scored per visit.

Streams a tour frozen and adapting (test, then train) and writes ``tour_eval.json`` and
``tour_eval.png`` to ``--out``: per visit frozen vs adapted RMSE / AbsRel / delta1, the
first seconds, the worst window after them, how a return visit starts against the end of
the previous visit to the same room; forgetting on ``--forget-data``; RGB-only room
recognition (budgeted mode). ``--budget N:K`` (the default, deterministic: a round per N
frames, in force K frames later) or ``--realtime`` (estimator and trainer threads at
``--rate``, as ``live``).

Example (the README's tour: the kitchen three times, two rooms of ``rooms/`` between)::

    tour_eval --out out/tour
    tour_eval --tour kitchen=../shared/data/7scenes_kitchen@0:500,lab=../shared/data/rooms/d435_lab_ceiling_airplane,kitchen=../shared/data/7scenes_kitchen@500:1000
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from depth_estimator_bench.cli._engine import add_engine_arguments, config_from_args
from depth_estimator_ros.cli._common import positive_float, positive_int, run_main

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``tour_eval``."""
    from depth_estimator_bench.tour import DEFAULT_BUDGET

    b = DEFAULT_BUDGET
    p = argparse.ArgumentParser(prog="tour_eval", description="Prequential evaluation of a tour of rooms, per visit.")
    p.add_argument("--tour", default=None,
                   help="visits [LABEL=]SOURCE[@START:END], comma-separated; same LABEL = same room "
                        "(default: the README's tour of ../shared/data)")
    p.add_argument("--checkpoint", default="default", help="start model (default: the shipped base)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--budget", default=f"{b.round_every}:{b.lag}:{b.switch_lag}",
                      help="deterministic mode: a round per N frames, its weights in force K frames later and "
                           "what its selection switched to S frames later, as N:K:S (default: %(default)s)")
    mode.add_argument("--realtime", action="store_true", help="play in real time at --rate instead")
    p.add_argument("--rate", type=positive_float, default=30.0, help="stream rate in Hz (default: %(default)s)")
    p.add_argument("--forget-data", default=None,
                   help="sequence scored after the tour for forgetting (default: ../shared/data/rooms; 'none' skips)")
    p.add_argument("--forget-frames", type=positive_int, default=64,
                   help="frames of --forget-data, evenly spaced (default: %(default)s)")
    p.add_argument("--first", type=positive_float, default=3.0,
                   help="seconds of a visit reported as its start (default: %(default)s)")
    p.add_argument("--window", type=positive_float, default=1.0, help="window in seconds (default: %(default)s)")
    p.add_argument("--out", type=Path, default=Path("out/tour"), help="output folder (default: %(default)s)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "auto"), default="torch",
                   help="the estimator's backend (default: %(default)s; deterministic)")
    p.add_argument("--seed", type=int, default=0, help="engine seed (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_engine_arguments(p)
    return p


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)

    import torch

    from depth_estimator_bench.common import SHARED
    from depth_estimator_bench.prequential import Budget, load_frames, write_result
    from depth_estimator_bench.tour import default_tour, load_tour, parse_tour, plot_tour, run_tour
    from depth_estimator_ros.data import open_source
    from depth_estimator_ros.models import load_checkpoint

    torch.set_num_threads(args.threads)
    progress = not args.no_progress
    visits = default_tour() if args.tour is None else parse_tour(args.tour)
    model = load_checkpoint(args.checkpoint)[0]
    frames, spans = load_tour(visits, progress=progress)
    forget_spec = args.forget_data or str(SHARED / "data" / "rooms")
    forget = None
    if forget_spec.lower() != "none":
        forget = load_frames(open_source(forget_spec), args.forget_frames, spread=True, progress=progress)
    budget = None if args.realtime else Budget.parse(args.budget)
    result = run_tour(
        model, visits, frames, spans, config=config_from_args(args, cold=False), budget=budget, rate_hz=args.rate,
        forgetting_frames=forget, device=args.device, seed=args.seed, backend=args.backend,
        first_s=args.first, window_s=args.window, sensor_scale=args.sensor_scale == "on", progress=progress,
    )
    result["settings"].update(
        checkpoint=args.checkpoint, forget_data=forget_spec, threads=args.threads,
        command=" ".join(["tour_eval", *(sys.argv[1:] if argv is None else argv)]),
    )
    json_path = write_result(result, args.out / "tour_eval.json")
    png_path = plot_tour(result, args.out / "tour_eval.png")
    print(_table(result))
    print(f"wrote {json_path} and {png_path}")
    return 0


def _table(result: dict) -> str:
    """Return the per-visit table and the tour's summary as text."""
    lines = ["visit            frames  frozen RMSE  adapted RMSE  ratio  first 3 s (fr/ad)  return start/prev end"]
    for v in result["visits"]:
        ret = f"{v['first_adapted']['rmse']:.3f}/{v['previous_end_adapted_rmse']:.3f}" if v["return"] else "-"
        lines.append(
            f"{v['label'] + (' (again)' if v['return'] else ''):<16} {v['frames']:>6}  {v['frozen']['rmse']:>11.3f}  "
            f"{v['adapted']['rmse']:>12.3f}  {v['rmse_ratio']:>5.2f}  "
            f"{v['first_frozen']['rmse']:.3f}/{v['first_adapted']['rmse']:.3f}        {ret}"
        )
    s = result["summary"]
    lines.append(
        f"tour: RMSE {s['tour_rmse_adapted']:.3f} m adapted vs {s['tour_rmse_frozen']:.3f} m frozen "
        f"(x{s['tour_rmse_ratio']:.2f}; mean per frame x{s['tour_mean_frame_rmse_ratio']:.2f}); "
        f"{s['visits_worse_than_frozen']} visits worse than frozen, {s['visits_ending_worse_than_frozen']} ending "
        f"worse (last second); windows after the first {result['settings']['first_s']:g} s more than 2 % worse: "
        f"{s['windows_over_2pct_after_first']} of {s['windows_after_first']}; rounds {s['rounds_accepted']}/"
        f"{s['rounds_run']} accepted, {s['rounds_switched']} switches, {s['rooms']} rooms"
    )
    if "forgetting_in_force_percent" in s:
        lines.append(
            f"forgetting: {s['forgetting_in_force_percent']:+.1f} % with the weights in force, "
            f"{s['forgetting_by_appearance_percent']:+.1f} % with the room memory choosing by appearance"
        )
    if "recognition_return_right_share" in s:
        lines.append(
            f"RGB-only recognition on return visits: {s['recognition_return_chosen']} of "
            f"{s['recognition_return_windows']} windows chose a room, right in "
            f"{100 * s['recognition_return_right_share']:.0f} %; wrong picks in new rooms: "
            f"{s['recognition_wrong_in_new_rooms']}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``tour_eval``; return the exit status (0 ok, 2 bad arguments or data)."""
    return run_main("tour_eval", _run, argv)


if __name__ == "__main__":
    sys.exit(main())
