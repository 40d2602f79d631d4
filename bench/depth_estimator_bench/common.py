"""Helpers every benchmark section shares: devices, timing loops, statistics, output files."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from depth_estimator_ros import parameters
from depth_estimator_ros.atomic import write_json

__all__ = [
    "SHARED",
    "KITCHEN",
    "DEVICE_CHOICES",
    "resolve_devices",
    "preferred_device",
    "latency_stats",
    "fmt_ms",
    "rate_hz",
    "timed_loop",
    "pyplot",
    "save_figure",
]

#: ``../shared`` beside the project checkout: the data (``data/7scenes_kitchen``, ``data/rooms``)
#: and weights the benchmarks and the demo use where present (the one place that finds it).
SHARED = Path(__file__).resolve().parents[3] / "shared"
#: The real Kinect stream of the benchmarks and the demo, in :data:`SHARED`.
KITCHEN = SHARED / "data" / "7scenes_kitchen"

#: Values of the ``--device`` option (the nodes' ``device`` names).
DEVICE_CHOICES: tuple[str, ...] = parameters.DEVICE_CHOICES


def resolve_devices(device: str) -> list[str]:
    """Return the torch devices a section should measure.

    Args:
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (the CPU, plus CUDA when available).

    Returns:
        ``["cpu"]``, ``["cuda"]`` or ``["cpu", "cuda"]``.

    Raises:
        ValueError: unknown name, or ``"cuda"`` on a machine without a usable GPU.
    """
    import torch

    if device not in DEVICE_CHOICES:
        raise ValueError(f"device must be one of {DEVICE_CHOICES}, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False; use 'cpu' or 'auto'")
    if device == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    return [device]


def preferred_device(device: str) -> str:
    """Return the single device a node-level section runs on: CUDA when allowed and present."""
    return resolve_devices(device)[-1]


def latency_stats(seconds: Sequence[float]) -> dict[str, float | int | None]:
    """Summarise latency samples.

    Args:
        seconds: one duration per sample, in seconds.

    Returns:
        ``n``, ``median_ms``, ``p95_ms``, ``mean_ms``, ``min_ms``, ``max_ms`` (None when
        there are no samples).
    """
    values = np.asarray(list(seconds), dtype=np.float64) * 1e3
    if values.size == 0:
        return {"n": 0, "median_ms": None, "p95_ms": None, "mean_ms": None, "min_ms": None, "max_ms": None}
    return {
        "n": int(values.size),
        "median_ms": round(float(np.median(values)), 3),
        "p95_ms": round(float(np.percentile(values, 95)), 3),
        "mean_ms": round(float(values.mean()), 3),
        "min_ms": round(float(values.min()), 3),
        "max_ms": round(float(values.max()), 3),
    }


def fmt_ms(value: float | None) -> str:
    """Return milliseconds for a summary table: ``"12.3 ms"``, or ``"n/a"`` when unmeasured."""
    return "n/a" if value is None else f"{value:.1f} ms"


def rate_hz(times: Sequence[float]) -> float | None:
    """Return the mean rate of events at ``times`` (seconds), or None with fewer than two."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return round((len(times) - 1) / (times[-1] - times[0]), 3)


def timed_loop(
    step: Callable[[], Any],
    *,
    warmup: int,
    iterations: int,
    max_seconds: float,
    min_iterations: int = 3,
    synchronize: Callable[[], None] | None = None,
) -> list[float]:
    """Run ``step`` after a warm-up and return the duration of each timed call.

    The loop stops after ``iterations`` calls, or once ``max_seconds`` have passed and at
    least ``min_iterations`` calls were timed, whichever comes first.

    Args:
        step: the work to time (its result is discarded).
        warmup: untimed calls first (allocator, oneDNN/cuDNN kernel selection).
        iterations: most timed calls.
        max_seconds: time budget of the timed calls.
        min_iterations: fewest timed calls, even past the budget.
        synchronize: called after each call before reading the clock
            (``torch.cuda.synchronize`` for GPU work).

    Returns:
        Durations in seconds, one per timed call.
    """
    if warmup < 0 or iterations < 1 or min_iterations < 1 or not max_seconds > 0:
        raise ValueError("need warmup >= 0, iterations >= 1, min_iterations >= 1 and max_seconds > 0")
    sync = synchronize or (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    durations: list[float] = []
    budget_end = time.perf_counter() + max_seconds
    while len(durations) < iterations:
        start = time.perf_counter()
        step()
        sync()
        end = time.perf_counter()
        durations.append(end - start)
        if end > budget_end and len(durations) >= min_iterations:
            break
    return durations


def write_section(
    out_dir: Path, name: str, result: dict[str, Any], plot: Callable[[dict[str, Any], Path], Path]
) -> dict[str, Any]:
    """Plot ``result`` to ``<name>.png``, record both files in it, write ``<name>.json``; return it."""
    out_dir = Path(out_dir)
    png = plot(result, out_dir / f"{name}.png")
    result["files"] = {"json": str(out_dir / f"{name}.json"), "png": str(png)}
    write_json(out_dir / f"{name}.json", result)
    return result


def pyplot() -> Any:
    """Return ``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Save a matplotlib figure as PNG, close it and return the path."""
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
