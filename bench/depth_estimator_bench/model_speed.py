"""Model section: speed, latency, FLOPs and GFLOP/s of every architecture, side by side.

For every architecture and device (and, on CUDA, fp32 and fp16 autocast) two things are
timed at batch 1:

- ``predictor``: a 640x480 camera image through :class:`learning.Predictor`, i.e. what a
  node pays per frame (resize to the model's input, forward, resize back, NaN mask);
- ``forward``: the bare model forward on a tensor already at its input size.

FLOPs per frame are counted with ``torch.utils.flop_counter.FlopCounterMode`` (one
multiply-add = 2 FLOPs, convolutions and matrix products only) and divided by the median
forward latency to give achieved GFLOP/s, printed next to a measured ``torch.mm`` peak of
large float32 matrices on the same device and threads: the distance to the hardware
limit. Registered architectures are randomly initialised at their class default input
size (speed does not depend on the weight values); :data:`SHIPPED` is the shipped
checkpoint itself, at the input size it was trained for: what the nodes run by default.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from depth_estimator_bench.common import (
    fmt_ms,
    latency_stats,
    pyplot,
    resolve_devices,
    save_figure,
    timed_loop,
    write_section,
)
from depth_estimator_bench.machine import describe_machine, machine_label

__all__ = [
    "CAMERA_SIZE",
    "SHIPPED",
    "SpeedSettings",
    "count_flops",
    "default_cpu_threads",
    "matmul_peak_gflops",
    "run",
    "summary_rows",
]

#: The camera resolution frames arrive at, (height, width).
CAMERA_SIZE: tuple[int, int] = (480, 640)

#: Name of the shipped checkpoint (``checkpoint: default``) among the measured models.
SHIPPED = "shipped"


class SpeedSettings:
    """Hold the timing budget of one measurement.

    Args:
        warmup: untimed calls before timing.
        iterations: most timed calls.
        max_seconds: time budget per measurement (at least 3 calls are always timed).
        matmul_size: side of the square matrices of the peak measurement.
    """

    def __init__(self, *, warmup: int, iterations: int, max_seconds: float, matmul_size: int) -> None:
        if warmup < 0 or iterations < 1 or not max_seconds > 0 or matmul_size < 64:
            raise ValueError("need warmup >= 0, iterations >= 1, max_seconds > 0 and matmul_size >= 64")
        self.warmup = warmup
        self.iterations = iterations
        self.max_seconds = max_seconds
        self.matmul_size = matmul_size

    @classmethod
    def preset(cls, quick: bool) -> "SpeedSettings":
        """Return the full settings, or the seconds-long smoke-test ones when ``quick``."""
        if quick:
            return cls(warmup=1, iterations=3, max_seconds=1.0, matmul_size=512)
        return cls(warmup=5, iterations=100, max_seconds=20.0, matmul_size=2048)

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-able dict."""
        return dict(vars(self))


def default_cpu_threads() -> list[int]:
    """Return the CPU thread counts measured by default: all usable cores, and half of them.

    Half is what the nodes use on their own (``torch_threads: 0``): inference and
    training each get their share of the cores.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return sorted({cores, max(1, cores // 2)}, reverse=True)


def _synchronizer(device: str) -> Callable[[], None] | None:
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else None


@contextlib.contextmanager
def _precision(device: str, precision: str) -> Iterator[None]:
    """Enter fp16 autocast for ``"amp"`` on CUDA; plain fp32 otherwise."""
    import torch

    if precision == "amp":
        with torch.autocast(device_type="cuda", dtype=torch.float16):
            yield
    else:
        yield


def matmul_peak_gflops(device: str, size: int, *, dtype_name: str = "float32", repeats: int = 5) -> dict[str, Any]:
    """Measure the best ``torch.mm`` throughput of two ``size`` x ``size`` matrices.

    Args:
        device: torch device (``"cpu"`` or ``"cuda"``), using torch's current threads.
        size: matrix side.
        dtype_name: ``"float32"`` or ``"float16"`` (CUDA only).
        repeats: timed products; the fastest counts (a peak, not a mean).

    Returns:
        ``size``, ``dtype``, ``gflops`` (2 * size**3 FLOPs / fastest time / 1e9) and
        ``tf32`` (whether float32 products may use TF32 tensor cores on this device).
    """
    import torch

    if dtype_name not in ("float32", "float16"):
        raise ValueError(f"dtype_name must be 'float32' or 'float16', got {dtype_name!r}")
    dtype = getattr(torch, dtype_name)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.rand(size, size, generator=gen).to(device=device, dtype=dtype)
    b = torch.rand(size, size, generator=gen).to(device=device, dtype=dtype)
    with torch.inference_mode():
        durations = timed_loop(
            lambda: torch.mm(a, b),
            warmup=1,
            iterations=repeats,
            max_seconds=30.0,
            min_iterations=min(3, repeats),
            synchronize=_synchronizer(device),
        )
    return {
        "size": size,
        "dtype": dtype_name,
        "gflops": round(2.0 * size**3 / min(durations) / 1e9, 2),
        "tf32": bool(device.startswith("cuda") and torch.backends.cuda.matmul.allow_tf32),
    }


def count_flops(model: Any, input_size: tuple[int, int], device: str) -> int:
    """Return the FLOPs of one forward pass of ``model`` at batch 1 and ``input_size`` (H, W)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, 3, *input_size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return int(counter.get_total_flops())


def _throughput(durations: Sequence[float]) -> dict[str, Any]:
    stats = latency_stats(durations)
    stats["per_second"] = round(len(durations) / float(np.sum(durations)), 3)
    return stats


def _measure_arch(
    arch: str, device: str, precisions: Sequence[str], settings: SpeedSettings, camera: tuple[int, int]
) -> list[dict[str, Any]]:
    """Time one architecture (or :data:`SHIPPED`) on one device in every precision; return one row per precision."""
    import torch

    from depth_estimator_ros.models import DEFAULT_CHECKPOINT, build_model, load_checkpoint

    torch.manual_seed(0)
    model = (load_checkpoint(DEFAULT_CHECKPOINT)[0] if arch == SHIPPED else build_model(arch)).eval()
    n_params = sum(p.numel() for p in model.parameters())
    height, width = model.input_size
    flops = count_flops(model, (height, width), "cpu")  # FLOPs do not depend on the device
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(*camera, 3), dtype=np.uint8)
    x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0)).to(device)
    sync = _synchronizer(device)
    rows = []
    for precision in precisions:
        try:
            predictor = _predictor(model, device, precision)
        except (ValueError, RuntimeError) as exc:  # an architecture that does not export: say so, go on
            if precision != "onnxruntime":
                raise
            rows.append({"arch": arch, "device": device, "precision": precision, "skipped": str(exc)})
            continue
        pred_times, fwd_times = _time_predictor(predictor, device, precision, image, x, settings, sync)
        del predictor  # the predictor's model copy, before the next precision builds its own
        forward = _throughput(fwd_times)
        forward["achieved_gflops"] = round(flops / (forward["median_ms"] / 1e3) / 1e9, 2)
        rows.append(
            {
                "arch": arch,
                "device": device,
                "precision": precision,
                "input_size": [height, width],
                "camera_size": list(camera),
                "params_m": round(n_params / 1e6, 3),
                "gflops_per_frame": round(flops / 1e9, 3),
                "predictor": _throughput(pred_times),
                "forward": forward,
            }
        )
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def _predictor(model: Any, device: str, precision: str) -> Any:
    """Return the Predictor that runs ``model`` in ``precision`` (fp32 | amp | onnxruntime) on ``device``."""
    import torch

    from depth_estimator_ros.learning import Predictor

    if precision == "onnxruntime":
        return Predictor(model, device=device, backend="onnxruntime", threads=torch.get_num_threads())
    return Predictor(model, device=device, amp=precision == "amp")


def _time_predictor(
    predictor: Any,
    device: str,
    precision: str,
    image: np.ndarray,
    x: Any,
    settings: SpeedSettings,
    sync: Callable[[], None] | None,
) -> tuple[list[float], list[float]]:
    """Time ``predictor.predict`` on ``image`` and its bare forward pass on ``x``; return both durations.

    The forward pass is the onnxruntime session for ``precision == "onnxruntime"``, else the
    predictor's own model copy (already on the device, in eval mode).
    """
    import torch

    loop = {"warmup": settings.warmup, "iterations": settings.iterations, "max_seconds": settings.max_seconds,
            "synchronize": sync}
    pred_times = timed_loop(lambda: predictor.predict(image), **loop)
    if precision == "onnxruntime":
        session = predictor._session
        height, width = x.shape[-2:]
        x_u8 = np.random.default_rng(0).integers(0, 256, size=(1, height, width, 3), dtype=np.uint8)
        focal = np.ones(1, np.float32)
        return pred_times, timed_loop(lambda: session.run(x_u8, focal), **loop)
    bare = predictor.model
    with torch.inference_mode(), _precision(device, precision):
        return pred_times, timed_loop(lambda: bare(x), **loop)


def _speed_ratios(rows: Sequence[dict[str, Any]], reference: str = "fast") -> dict[str, dict[str, float]]:
    """Return ``{"cpu/fp32/2t": {"fast/vgg16_coarse predictor": 7.1, ...}}``: how many times faster ``reference`` is."""
    ratios: dict[str, dict[str, float]] = {}
    for setup in dict.fromkeys(r["setup"] for r in rows):
        by_arch = {r["arch"]: r for r in rows if r["setup"] == setup}
        if reference not in by_arch:
            continue
        ref = by_arch[reference]
        group = {}
        for arch, row in by_arch.items():
            if arch == reference:
                continue
            for mode in ("predictor", "forward"):
                group[f"{reference}/{arch} {mode}"] = round(row[mode]["median_ms"] / ref[mode]["median_ms"], 2)
        if group:
            ratios[setup] = group
    return ratios


def _backend_ratios(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Return ``{"fast 2t": {"forward": 3.1, "predictor": 2.4}}``: torch time / onnxruntime time on the CPU."""
    ratios: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["precision"] != "onnxruntime":
            continue
        twin = next((r for r in rows if r["arch"] == row["arch"] and r["precision"] == "fp32"
                     and r["device"] == row["device"] and r["threads"] == row["threads"]), None)
        if twin is not None:
            ratios[f"{row['arch']} {row['threads']}t"] = {
                mode: round(twin[mode]["median_ms"] / row[mode]["median_ms"], 2) for mode in ("forward", "predictor")
            }
    return ratios


def _plot(result: dict[str, Any], path: Path) -> Path:
    plt = pyplot()
    rows = result["models"]
    labels = [f"{r['arch']}\n{r['setup']}" for r in rows]
    positions = np.arange(len(rows))
    fig, (ax_fps, ax_flops) = plt.subplots(1, 2, figsize=(max(9.0, 1.6 * len(rows) + 4), 4.8))
    width = 0.38
    predictor_fps = [r["predictor"]["per_second"] for r in rows]
    forward_fps = [r["forward"]["per_second"] for r in rows]
    bars = ax_fps.bar(positions - width / 2, predictor_fps, width, label="640x480 via Predictor")
    ax_fps.bar(positions + width / 2, forward_fps, width, label="bare forward at input size")
    ax_fps.bar_label(bars, fmt="%.1f", fontsize=7)
    ax_fps.axhline(30.0, color="k", linestyle="--", linewidth=0.8, label="30 Hz camera")
    ax_fps.set_yscale("log")
    ax_fps.set_ylabel("frames per second (batch 1, log)")
    ax_fps.set_xticks(positions, labels, fontsize=7)
    ax_fps.legend(fontsize=7)
    ax_fps.set_title("Throughput")
    achieved = [r["forward"]["achieved_gflops"] for r in rows]
    ax_flops.bar(positions, achieved, 0.6, color="tab:green", label="achieved (forward)")
    peaks = [result["matmul_peak"][r["peak_setup"]]["gflops"] for r in rows]
    ax_flops.scatter(positions, peaks, marker="_", s=900, color="k", label="torch.mm peak, same setup")
    ax_flops.set_yscale("log")
    ax_flops.set_ylabel("GFLOP/s (log)")
    ax_flops.set_xticks(positions, labels, fontsize=7)
    ax_flops.legend(fontsize=7)
    ax_flops.set_title("Achieved vs matrix-multiply peak")
    fig.suptitle(f"Model speed -- {machine_label(result['machine'])}", fontsize=9)
    return save_figure(fig, path)


def run(
    out_dir: Path,
    *,
    device: str = "auto",
    quick: bool = False,
    archs: Sequence[str] | None = None,
    camera: tuple[int, int] = CAMERA_SIZE,
    threads: Sequence[int] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure every architecture and write ``model.json`` and ``model.png`` into ``out_dir``.

    Args:
        out_dir: output folder (created).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CPU, plus CUDA when present).
        quick: seconds-long smoke settings instead of the full budget.
        archs: architectures to measure, :data:`SHIPPED` among them; default every
            registered one and the shipped checkpoint (where the package has it).
        camera: camera image size (height, width) fed to the Predictor.
        threads: torch intra-op thread counts to measure on the CPU; default
            :func:`default_cpu_threads`.
        progress: show a tqdm bar.

    Returns:
        The JSON-able result: ``section``, ``machine``, ``settings``, ``matmul_peak``
        (per setup), ``models`` (one row per arch and setup -- device, precision,
        threads -- with ``predictor`` and ``forward`` latency stats, ``per_second``,
        ``gflops_per_frame``, ``achieved_gflops``, ``fraction_of_matmul_peak``),
        ``speed_ratios`` and ``files``.
    """
    import torch
    from tqdm import tqdm

    from depth_estimator_ros.models import ARCHITECTURES, SHIPPED_CHECKPOINT

    allowed = (*ARCHITECTURES, SHIPPED)
    archs = tuple(archs) if archs else ARCHITECTURES + ((SHIPPED,) if SHIPPED_CHECKPOINT.is_file() else ())
    unknown = [a for a in archs if a not in allowed]
    if unknown:
        raise ValueError(f"unknown architectures {unknown}; allowed: {allowed}")
    devices = resolve_devices(device)
    settings = SpeedSettings.preset(quick)
    default_threads = torch.get_num_threads()
    cpu_threads = sorted(set(threads), reverse=True) if threads else default_cpu_threads()
    if min(cpu_threads) < 1:
        raise ValueError(f"thread counts must be >= 1, got {list(cpu_threads)}")
    started = time.time()
    # (device, torch threads, precisions, name of the setup in results)
    from depth_estimator_ros.learning.onnx_backend import onnxruntime_available

    ort = ("onnxruntime",) if onnxruntime_available() else ()
    setups = [("cpu", n, ("fp32", *ort), f"cpu/fp32/{n}t") for n in cpu_threads if "cpu" in devices]
    setups += [(d, default_threads, ("fp32", "amp"), d) for d in devices if d.startswith("cuda")]
    peaks: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    try:
        for dev, n_threads, _, name in setups:
            torch.set_num_threads(n_threads)
            if dev == "cpu":
                peaks[name] = matmul_peak_gflops(dev, settings.matmul_size)
            else:
                peaks[f"{name}/fp32"] = matmul_peak_gflops(dev, 8192)
                peaks[f"{name}/amp"] = matmul_peak_gflops(dev, 8192, dtype_name="float16")
        jobs = [(arch, setup) for setup in setups for arch in archs]
        for arch, setup in tqdm(jobs, desc="model speed", unit="model", disable=not progress):
            dev, n_threads, precisions, name = setup
            torch.set_num_threads(n_threads)
            for row in _measure_arch(arch, dev, precisions, settings, camera):
                row["threads"] = n_threads
                if "skipped" in row:
                    skipped.append(row)
                    continue
                if dev == "cpu":  # onnxruntime rows: their own setup, the same machine peak as torch's
                    row["setup"] = name if row["precision"] == "fp32" else f"cpu/{row['precision']}/{n_threads}t"
                    row["peak_setup"] = name
                else:
                    row["setup"] = row["peak_setup"] = f"{name}/{row['precision']}"
                peak = peaks[row["peak_setup"]]["gflops"]
                row["forward"]["fraction_of_matmul_peak"] = round(row["forward"]["achieved_gflops"] / peak, 4)
                rows.append(row)
    finally:
        torch.set_num_threads(default_threads)
    result: dict[str, Any] = {
        "section": "model",
        "machine": describe_machine(),
        "settings": {**settings.as_dict(), "quick": quick, "camera_size": list(camera), "batch": 1},
        "weights": f"random initialisation (speed does not depend on weight values); {SHIPPED}: the "
        "shipped checkpoint",
        "inference_mode": True,
        "cpu_threads": list(cpu_threads),
        "matmul_peak": peaks,
        "models": rows,
        "speed_ratios": _speed_ratios(rows),
        "backend_ratios": _backend_ratios(rows),
        "skipped": skipped,
        "elapsed_s": round(time.time() - started, 1),
    }
    return write_section(out_dir, "model", result, _plot)


def summary_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the lines of the final summary table for this section."""
    lines = []
    for r in result["models"]:
        lines.append(
            {
                "section": "model",
                "what": f"{r['arch']} {r['setup']} 640x480 -> {r['input_size'][1]}x{r['input_size'][0]}",
                "value": f"{r['predictor']['per_second']:.1f} fps, median {fmt_ms(r['predictor']['median_ms'])} "
                f"p95 {fmt_ms(r['predictor']['p95_ms'])}, "
                f"{r['gflops_per_frame']:.2f} GFLOP, {r['forward']['achieved_gflops']:.1f} GFLOP/s",
                "target": "",
            }
        )
    for group, ratios in result["speed_ratios"].items():
        text = ", ".join(f"{k.split()[0]} x{v}" for k, v in ratios.items() if k.endswith("predictor"))
        lines.append({"section": "model", "what": f"speed ratios {group}", "value": text, "target": "fast >> seeds"})
    for group, ratios in result.get("backend_ratios", {}).items():
        lines.append({"section": "model", "what": f"torch / onnxruntime time, {group}",
                      "value": f"forward x{ratios['forward']}, Predictor x{ratios['predictor']}", "target": ">= 3x"})
    for row in result.get("skipped", []):
        lines.append({"section": "model", "what": f"{row['arch']} {row['precision']}", "value": "skipped: "
                      + row["skipped"][:120], "target": ""})
    return lines
