"""``bench``: measure speed, latency, adaptation and memory; write JSON + PNG and a summary.

Usage::

    bench --out out/bench                       # every section, full budget (make bench)
    bench --out out/bench --quick --only model  # seconds-long smoke run of one section
    bench --only memory --minutes 10 --device cpu
    bench --only pipeline --pipeline-rooms --pipeline-backends auto --pipeline-rates 30
                                                  # shipped model, plain vs room recognition of 8 rooms (issue 23)
    bench --only soak --minutes 10 --device cpu   # 60 Hz VGA soak (issue 7), never in the default set
    bench --only accuracy --train-minutes 4       # every model trained 4 min, scored on unseen rooms (issue 3)
    bench --only rooms --rooms-steps 600          # leave-one-room-out of the base recipe on ../shared/data/rooms
    bench --only two_hosts                        # separate mode across two network namespaces (root)
    bench --only scene_folds                      # base recipe on held-out scenes of rooms/ + rooms_more/, 2 folds x 2 seeds
    bench --only tour                             # the README's tour of rooms, budgeted mode (tour_eval)

Every section writes ``<section>.json`` and ``<section>.png`` (each JSON holds the machine
description); at the end a summary table is printed and written to ``summary.json`` and
``summary.md``. Benchmarks report numbers next to their targets and never fail on a
number; the exit status is 1 only when a section could not run at all.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from depth_estimator_bench import SECTIONS
from depth_estimator_ros.atomic import write_bytes, write_json
from depth_estimator_bench.common import DEVICE_CHOICES, KITCHEN, SHARED
from depth_estimator_ros.cli._common import positive_float, positive_int, run_main
from depth_estimator_ros.parameters import parameter

__all__ = ["OPTIONAL_SECTIONS", "build_parser", "main", "format_table"]

#: Sections run only when named with ``--only`` (too long for ``make bench``).
OPTIONAL_SECTIONS: tuple[str, ...] = ("soak", "accuracy", "rooms", "scene_folds", "two_hosts", "tour")
_ALL_SECTIONS = SECTIONS + OPTIONAL_SECTIONS
#: Rooms of ``--pipeline-rooms`` without a number: a full memory of the trainer's default ``max_rooms``.
MAX_ROOMS: int = parameter("max_rooms").default


def _csv(allowed: Sequence[str] | None) -> Any:
    def parse(text: str) -> tuple[str, ...]:
        items = tuple(part.strip() for part in text.split(",") if part.strip())
        if not items:
            raise argparse.ArgumentTypeError("expected a comma-separated list")
        if allowed is not None:
            bad = [item for item in items if item not in allowed]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown {bad}; allowed: {', '.join(allowed)}")
        return items

    return parse


def _rates(text: str) -> tuple[float, ...]:
    rates = tuple(positive_float(part) for part in text.split(",") if part.strip())
    if not rates:
        raise argparse.ArgumentTypeError(f"expected positive rates in Hz such as 30,60, got {text!r}")
    return rates


def _thread_counts(text: str) -> tuple[int, ...]:
    counts = tuple(positive_int(part) for part in text.split(",") if part.strip())
    if not counts:
        raise argparse.ArgumentTypeError(f"expected positive integers such as 2,1, got {text!r}")
    return counts


def _room_count(text: str) -> int:
    from depth_estimator_ros.adaptation.recognition import MAX_RECEIVED_ROOMS

    count = positive_int(text)
    if count > MAX_RECEIVED_ROOMS:
        raise argparse.ArgumentTypeError(f"at most {MAX_RECEIVED_ROOMS} rooms (what an estimator accepts), got {count}")
    return count


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``bench`` command."""
    parser = argparse.ArgumentParser(
        prog="bench",
        description="Measure model speed, the ROS pipeline, adaptation and memory; write JSON + PNG per "
        "section and a summary table. Reports numbers next to their targets, never fails on one.",
    )
    parser.add_argument("--out", type=Path, default=Path("out/bench"), help="output folder (default out/bench)")
    parser.add_argument(
        "--only",
        type=_csv(_ALL_SECTIONS),
        default=SECTIONS,
        help=f"comma-separated sections to run (default: {','.join(SECTIONS)}; "
        f"{','.join(OPTIONAL_SECTIONS)} only when named)",
    )
    parser.add_argument("--quick", action="store_true", help="seconds-long smoke settings, not for reporting")
    parser.add_argument(
        "--device", choices=DEVICE_CHOICES, default="auto", help="auto = CPU, plus CUDA where present (default)"
    )
    parser.add_argument(
        "--minutes", type=positive_float, default=10.0,
        help="length of the memory and soak runs in minutes (default 10)",
    )
    parser.add_argument(
        "--train-minutes", type=positive_float, default=4.0,
        help="training budget per architecture of the accuracy section, in minutes (default 4)",
    )
    parser.add_argument(
        "--archs", type=_csv(None), default=None,
        help="architectures of the model and accuracy sections (default all registered / compared); the "
        "model section also takes 'shipped', the shipped checkpoint at its own input size (measured by default)",
    )
    parser.add_argument(
        "--threads",
        type=_thread_counts,
        default=None,
        help="CPU torch thread counts of the model section, e.g. 2,1 (default: all cores and half of them)",
    )
    parser.add_argument(
        "--image-reliability", choices=("best_effort", "reliable"), default="best_effort",
        help="QoS reliability of the pipeline's camera stream and the node's subscription (default best_effort)",
    )
    parser.add_argument(
        "--depth-encoding", choices=("32FC1", "16UC1"), default="32FC1",
        help="the estimator's depth_encoding in the pipeline section (default 32FC1)",
    )
    parser.add_argument(
        "--pipeline-arch", default="fast", help="architecture the ROS sections run (default fast)"
    )
    parser.add_argument(
        "--pipeline-backends", type=_csv(("torch", "onnxruntime", "auto")), default=("torch", "onnxruntime"),
        help="the estimator's inference backends in the pipeline section, one run each (default torch,onnxruntime)",
    )
    parser.add_argument(
        "--pipeline-threads", type=int, default=0,
        help="the estimator's torch_threads in the pipeline section (intra-op threads of torch and "
        "onnxruntime; default 0 = half the CPUs, as beside a trainer)",
    )
    parser.add_argument(
        "--pipeline-rates", type=_rates, default=(30.0, 60.0),
        help="camera rates of the pipeline section in Hz, one run each (default 30,60)",
    )
    parser.add_argument(
        "--pipeline-checkpoint", default=None,
        help="the estimator's checkpoint in the pipeline section: 'default' (the shipped model) or a path; "
        "default: a seeded random initialisation of --pipeline-arch, or the shipped model with --pipeline-rooms",
    )
    parser.add_argument(
        "--pipeline-rooms", type=_room_count, nargs="?", const=MAX_ROOMS, default=0, metavar="N",
        help="pipeline section: after every plain run, a recognition run of the same node with room_recognition "
        "on (default recognition_period), fed a room memory of N rooms (without N: "
        f"{MAX_ROOMS}, max_rooms' default) built from the checkpoint, keyframes from ../shared/data/rooms "
        "(synthetic rooms beyond), the camera playing one of the rooms; reports both runs side by side",
    )
    parser.add_argument(
        "--pipeline-sensor", action="store_true",
        help="pipeline section: publish a 640x480 16UC1 sensor depth on sensor_depth with every frame, stamped "
        "like it (as a Kinect does), so the node runs as beside the sensor (sensor_scale, the default, compares "
        "and scales each frame); each run reports the node's sensor counters",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="start model of the adaptation section (.safetensors); default: a seeded random "
        "initialisation of --pipeline-arch (cold start). The two_hosts section's base model (default: the "
        "shipped one)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="7-Scenes kitchen folder for the adaptation and memory sections "
        "(default ../shared/data/7scenes_kitchen beside the project)",
    )
    parser.add_argument(
        "--rooms-steps", type=positive_int, default=None,
        help="optimiser steps per fold of the rooms section (default: the shipped recipe's) and of scene_folds (600)",
    )
    parser.add_argument("--rooms-only", type=_csv(None), default=None, help="rooms section: score just these rooms")
    parser.add_argument(
        "--synthetic-checkpoint", type=Path, default=None,
        help="rooms section: a synthetic-only base scored next to every room",
    )
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    return parser


SectionRunner = Callable[[argparse.Namespace, Path, bool], tuple[dict[str, Any], list[dict[str, Any]]]]


def _model(args: argparse.Namespace, data: Path, progress: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from depth_estimator_bench import model_speed

    result = model_speed.run(
        args.out, device=args.device, quick=args.quick, archs=args.archs, threads=args.threads, progress=progress
    )
    return result, model_speed.summary_rows(result)


def _pipeline(args: argparse.Namespace, data: Path, progress: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from depth_estimator_bench import pipeline

    result = pipeline.run(
        args.out, device=args.device, quick=args.quick, arch=args.pipeline_arch, progress=progress,
        rates_hz=args.pipeline_rates, backends=args.pipeline_backends, threads=args.pipeline_threads,
        image_reliability=args.image_reliability, depth_encoding=args.depth_encoding,
        checkpoint=args.pipeline_checkpoint or ("default" if args.pipeline_rooms else None),
        rooms=args.pipeline_rooms, rooms_root=SHARED / "data" / "rooms", sensor=args.pipeline_sensor,
    )
    return result, pipeline.summary_rows(result)


def _adaptation(args: argparse.Namespace, data: Path, progress: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from depth_estimator_bench import adaptation

    result = adaptation.run(
        args.out, device=args.device, quick=args.quick, arch=args.pipeline_arch, checkpoint=args.checkpoint,
        data=data, progress=progress,
    )
    return result, adaptation.summary_rows(result)


def _memory(args: argparse.Namespace, data: Path, progress: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from depth_estimator_bench import memory

    result = memory.run(
        args.out, device=args.device, quick=args.quick, minutes=args.minutes, arch=args.pipeline_arch, data=data,
        progress=progress,
    )
    return result, memory.summary_rows(result)


def _accuracy(args: argparse.Namespace, data: Path, progress: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from depth_estimator_bench import accuracy

    result = accuracy.run(
        args.out, device=args.device, quick=args.quick, minutes=args.train_minutes, archs=args.archs,
        progress=progress,
    )
    return result, accuracy.summary_rows(result)


def _rooms(args: argparse.Namespace, data: Path, progress: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from depth_estimator_bench import rooms
    from depth_estimator_bench.common import preferred_device

    if not (SHARED / "data" / "rooms").is_dir():
        return {"skipped": f"{SHARED / 'data' / 'rooms'} is absent"}, []
    result = rooms.run(
        args.out, rooms_root=SHARED / "data" / "rooms",
        encoder_weights=str(SHARED / "weights" / "mobilenet_v2_imagenet_from_qnnpack.safetensors"),
        steps=args.rooms_steps or rooms.RECIPE["steps"], only=args.rooms_only, kitchen=data,
        checkpoint=None if args.checkpoint is None else str(args.checkpoint),
        synthetic_checkpoint=args.synthetic_checkpoint, device=preferred_device(args.device),
        quick=args.quick, progress=progress,
    )
    return result, rooms.summary_rows(result)


def _scene_folds(args: argparse.Namespace, data: Path, progress: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from depth_estimator_bench import scene_folds
    from depth_estimator_bench.common import preferred_device
    from depth_estimator_ros.atomic import write_json

    roots = [SHARED / "data" / "rooms", SHARED / "data" / "rooms_more"]
    if not all(root.is_dir() for root in roots):
        return {"skipped": f"{SHARED / 'data'} lacks rooms/ or rooms_more/"}, []
    result = scene_folds.run(
        args.out, roots=roots,
        encoder_weights=str(SHARED / "weights" / "mobilenet_v2_imagenet_from_qnnpack.safetensors"),
        variants={"recipe": {}}, steps=2 if args.quick else args.rooms_steps or 600, folds=2,
        only_folds=[0] if args.quick else None, seeds=(0,) if args.quick else (0, 1),
        device=preferred_device(args.device), progress=progress,
    )
    result["per_scene"] = scene_folds.per_scene(result)
    write_json(args.out / "scene_folds.json", result)
    return result, scene_folds.summary_rows(result)


def _soak(args: argparse.Namespace, data: Path, progress: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from depth_estimator_bench import soak

    result = soak.run(
        args.out, minutes=args.minutes, quick=args.quick, device=args.device, arch=args.pipeline_arch, data=data,
        progress=progress,
    )
    return result, soak.summary_rows(result)


def _two_hosts(args: argparse.Namespace, data: Path, progress: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from depth_estimator_bench import two_hosts
    from depth_estimator_bench.common import preferred_device

    result = two_hosts.run(
        args.out, quick=args.quick, data=data, checkpoint=str(args.checkpoint or "default"),
        device=preferred_device(args.device), progress=progress,
    )
    return result, two_hosts.summary_rows(result)


def _tour(args: argparse.Namespace, data: Path, progress: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from depth_estimator_bench import tour

    if not (SHARED / "data" / "rooms").is_dir() or not data.is_dir():
        return {"skipped": f"{SHARED / 'data'} lacks rooms/ or the kitchen"}, []
    result = tour.run_section(args.out, checkpoint=str(args.checkpoint or "default"), quick=args.quick,
                              device=args.device, progress=progress)
    return result, tour.summary_rows(result)


#: Every section by name, in the order they run (a registry: a new section is one entry).
SECTION_RUNNERS: dict[str, SectionRunner] = {
    "model": _model, "pipeline": _pipeline, "adaptation": _adaptation, "memory": _memory,
    "soak": _soak, "accuracy": _accuracy, "rooms": _rooms, "scene_folds": _scene_folds, "two_hosts": _two_hosts, "tour": _tour,
}


def _run_section(name: str, args: argparse.Namespace) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run one section; return its result and its summary rows."""
    runner = SECTION_RUNNERS.get(name)
    if runner is None:
        raise ValueError(f"unknown section {name!r}; allowed: {_ALL_SECTIONS}")
    return runner(args, args.data or KITCHEN, not args.no_progress)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Return ``rows`` (section, what, value, target) as a Markdown table."""
    header = ("section", "what", "value", "target")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(key, "")).replace("|", "/") for key in header) + " |")
    return "\n".join(lines)


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from depth_estimator_bench.machine import describe_machine, machine_label

    args.out.mkdir(parents=True, exist_ok=True)
    machine = describe_machine()
    rows: list[dict[str, Any]] = []
    sections: dict[str, Any] = {}
    failed = []
    for name in _ALL_SECTIONS:
        if name not in args.only:
            continue
        started = time.time()
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        try:
            result, section_rows = _run_section(name, args)
        except Exception as exc:  # a section that cannot run is reported; the others still run
            traceback.print_exc()
            failed.append(name)
            sections[name] = {"error": f"{type(exc).__name__}: {exc}"}
            rows.append({"section": name, "what": "FAILED", "value": f"{type(exc).__name__}: {exc}", "target": ""})
            continue
        sections[name] = {"files": result.get("files", {}), "elapsed_s": round(time.time() - started, 1)}
        if result.get("skipped"):
            sections[name]["skipped"] = result["skipped"]
        rows.extend(section_rows)
    title = f"Benchmarks {machine['date']} -- {machine_label(machine)}"
    if args.quick:
        title += " (--quick: not for reporting)"
    table = format_table(rows)
    summary = {"machine": machine, "quick": args.quick, "device": args.device, "sections": sections, "rows": rows}
    write_json(args.out / "summary.json", summary)
    write_bytes(args.out / "summary.md", f"## {title}\n\n{table}\n".encode())
    print(f"\n{title}\n{table}\n\nwritten to {args.out}/")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected sections, print the summary table and write summary.json/.md.

    Returns 0, 1 when a section failed (the others still ran and were reported), 2 for bad arguments.
    """
    return run_main("bench", _run, argv)


if __name__ == "__main__":
    sys.exit(main())
