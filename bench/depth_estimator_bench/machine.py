"""Describe the machine a benchmark ran on: CPU, memory, library versions, GPU, threads."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["describe_machine", "cpu_model", "total_memory_bytes", "machine_label"]


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """Return the CPU model name from ``/proc/cpuinfo``, or ``platform.processor()``.

    Args:
        cpuinfo: the file to read (Linux layout: ``model name : ...`` lines).

    Returns:
        The first ``model name`` (x86) or ``Model`` / ``Hardware`` (ARM boards) value,
        ``platform.processor()`` when the file is missing, or ``"unknown"``.
    """
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return platform.processor() or "unknown"
    for key in ("model name", "Model", "Hardware"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or "unknown"


def total_memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Return the machine's physical memory in bytes (``MemTotal``), or None if unknown."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def describe_machine() -> dict[str, Any]:
    """Return a JSON-able description of this machine and its numeric libraries.

    Returns:
        ``date`` (UTC, ISO 8601), ``hostname``, ``platform``, ``python``, ``cpu_model``,
        ``logical_cores``, ``usable_cores`` (CPU affinity), ``memory_gib``, ``torch``,
        ``torchvision``, ``cuda`` (torch's CUDA build or None), ``cudnn``, ``gpu`` (name
        and memory of device 0, or None), ``torch_threads``, ``torch_interop_threads``,
        and the thread environment variables that change torch's speed.
    """
    import torch
    import torchvision

    memory = total_memory_bytes()
    gpu: dict[str, Any] | None = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
            "count": torch.cuda.device_count(),
        }
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "memory_gib": round(memory / 2**30, 1) if memory else None,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu": gpu,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "thread_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
    }


def machine_label(machine: dict[str, Any]) -> str:
    """Return a one-line label for plots and tables, e.g. ``"AMD EPYC, 2 cores, torch 2.14.1"``."""
    label = f"{machine['cpu_model']}, {machine['usable_cores']} cores, torch {machine['torch']}"
    if machine.get("gpu"):
        label += f", {machine['gpu']['name']}"
    return label
