"""Declare node parameters with their defaults read from ``config/live.yaml``.

``config/live.yaml`` is the single source of parameter defaults: the nodes
declare each parameter with the value found there (the ``/**`` section, shared
by all nodes, merged with the node's own section), and only the descriptions,
ranges and read-only flags live in code. A parameter declared without a default
in the file, or a file that cannot be read, is a start-up error, never a silent
fallback.
"""

from __future__ import annotations

import gc
import math
import os
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import rclpy
import torch
import yaml
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node

from depth_estimator_ros import models
from depth_estimator_ros.models.base import DepthModel
from depth_estimator_ros.ros.large_messages import configure_large_messages

__all__ = [
    "PACKAGE",
    "live_config_path",
    "load_defaults",
    "describe",
    "declare_parameters",
    "refuse",
    "accept",
    "torch_thread_count",
    "load_model",
]

PACKAGE = "depth_estimator_ros"
_CONFIG = Path("config") / "live.yaml"


def live_config_path() -> Path:
    """Return the path of ``live.yaml``: the source tree's, else the installed share dir's.

    Raises:
        FileNotFoundError: neither exists.
    """
    source = Path(__file__).resolve().parents[2] / _CONFIG
    if source.is_file():
        return source
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )

        installed = Path(get_package_share_directory(PACKAGE)) / _CONFIG
    except (ImportError, PackageNotFoundError, ValueError) as exc:
        raise FileNotFoundError(f"{_CONFIG} not found at {source} and no installed {PACKAGE} share: {exc}") from exc
    if not installed.is_file():
        raise FileNotFoundError(f"{_CONFIG} not found at {source} nor {installed}")
    return installed


@lru_cache(maxsize=8)
def _read(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as stream:
        content = yaml.safe_load(stream)
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a mapping of node names to ros__parameters")
    return content


def load_defaults(node_name: str, path: Path | None = None) -> dict[str, Any]:
    """Return the default parameter values of ``node_name``.

    Args:
        node_name: the node's name, e.g. ``"depth_estimator"``.
        path: parameters file; :func:`live_config_path` when ``None``.

    Returns:
        ``{name: value}`` from the file's ``/**`` section updated with the node's section.

    Raises:
        FileNotFoundError: no file.
        ValueError: the file has no section for ``node_name``.
    """
    path = live_config_path() if path is None else Path(path)
    content = _read(path.resolve())
    if node_name not in content:
        raise ValueError(f"{path} has no section for node {node_name!r}; sections: {sorted(content)}")
    values: dict[str, Any] = {}
    for section in ("/**", node_name):
        values.update((content.get(section) or {}).get("ros__parameters") or {})
    return values


def describe(
    description: str,
    *,
    low: float | None = None,
    high: float | None = None,
    step: float = 0.0,
    integer: bool = False,
    read_only: bool = False,
    constraints: str = "",
) -> ParameterDescriptor:
    """Build a :class:`ParameterDescriptor`, with a range when ``low``/``high`` are given.

    Args:
        description: what the parameter does, with its unit.
        low, high: inclusive range; an open end is ``None`` (stored as the largest value).
        step: range step (0 = continuous).
        integer: the range is an ``IntegerRange``.
        read_only: cannot change after start-up.
        constraints: free-text constraints shown by ``ros2 param describe``.

    Returns:
        The descriptor (its ``name`` and ``type`` are filled in by ``declare_parameter``).
    """
    descriptor = ParameterDescriptor(
        description=description, read_only=read_only, additional_constraints=constraints
    )
    if low is not None or high is not None:
        if integer:
            descriptor.integer_range = [
                IntegerRange(
                    from_value=int(-(2**63) if low is None else low),
                    to_value=int(2**63 - 1 if high is None else high),
                    step=int(step),
                )
            ]
        else:
            descriptor.floating_point_range = [
                FloatingPointRange(
                    from_value=float(-math.inf if low is None else low),
                    to_value=float(math.inf if high is None else high),
                    step=float(step),
                )
            ]
    return descriptor


def declare_parameters(node: Node, descriptors: dict[str, ParameterDescriptor]) -> dict[str, Any]:
    """Declare every parameter of ``descriptors`` with its default from ``live.yaml``.

    Values given at start-up (``--params-file``, ``-p``) override the defaults as usual.

    Args:
        node: the node declaring them; its name selects the file section.
        descriptors: ``{name: descriptor}``.

    Returns:
        ``{name: value}`` of the declared parameters as now in force.

    Raises:
        ValueError: a parameter has no default in the file.
    """
    defaults = load_defaults(node.get_name())
    missing = sorted(set(descriptors) - set(defaults))
    if missing:
        raise ValueError(f"{live_config_path()} has no default for parameter(s) {missing} of {node.get_name()}")
    declared = node.declare_parameters("", [(name, defaults[name], d) for name, d in descriptors.items()])
    return {p.name: p.value for p in declared}


def refuse(reason: str) -> SetParametersResult:
    """Return a refusal of a parameter change, with the reason shown to the caller."""
    return SetParametersResult(successful=False, reason=reason)


def accept() -> SetParametersResult:
    """Return an acceptance of a parameter change."""
    return SetParametersResult(successful=True)


def torch_thread_count(requested: int, cpu_count: int | None = None) -> int:
    """Return the torch intra-op thread count for a ``torch_threads`` parameter value.

    Args:
        requested: the parameter; ``0`` chooses from the CPU count.
        cpu_count: CPUs available (default ``os.cpu_count()``).

    Returns:
        ``requested`` when positive, else half the CPUs (at least 1): inference and
        training each get their share, so on a 2-core machine each uses one thread
        and neither starves the other.
    """
    if requested > 0:
        return int(requested)
    cpus = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(1, cpus // 2)


def load_model(arch: str, checkpoint: str, input_size: Sequence[int]) -> tuple[DepthModel, dict[str, Any]]:
    """Build the base model the node parameters describe, on the CPU.

    Args:
        arch: registry name (``arch`` parameter).
        checkpoint: checkpoint path, ``"default"`` for the shipped base model
            (``models.SHIPPED_CHECKPOINT``), or ``""`` for untrained weights of ``arch``.
        input_size: ``[H, W]`` model input when no checkpoint is given; ``[0, 0]`` for
            the architecture's default. With a checkpoint it must be ``[0, 0]`` or the
            checkpoint's own size.

    Returns:
        ``(model, metadata)``; ``metadata`` is the checkpoint's, or ``{}``.

    Raises:
        ValueError: unknown architecture, bad size, or a checkpoint that is missing,
            unreadable or for another architecture (``models.CheckpointError``).
    """
    size = tuple(int(v) for v in input_size)
    if len(size) != 2 or (size != (0, 0) and min(size) <= 0):
        raise ValueError(
            f"input_size must be [H, W] with positive integers, or [0, 0] for the default; got {list(size)}"
        )
    if checkpoint:
        path = models.resolve_checkpoint(checkpoint)
        if not path.is_file():
            raise ValueError(f"checkpoint {str(path)!r} does not exist or is not a file")
        model, metadata = models.load_checkpoint(path, arch=arch, map_location="cpu")
        if size != (0, 0) and tuple(model.input_size) != size:
            raise ValueError(
                f"input_size {list(size)} differs from the checkpoint's {list(model.input_size)}; use [0, 0]"
            )
        return model, metadata
    if arch not in models.ARCHITECTURES:
        raise ValueError(f"arch must be one of {models.ARCHITECTURES}, got {arch!r}")
    kwargs = {} if size == (0, 0) else {"input_size": size}
    return models.build_model(arch, **kwargs), {}


def spin_nodes(build: Callable[[], Sequence[Node]], name: str, args: Sequence[str] | None) -> None:
    """Run the nodes ``build()`` makes in a single-threaded executor until Ctrl-C or SIGTERM.

    The shared ``main()`` of the package's executables: the large-message settings
    (:func:`~depth_estimator_ros.ros.large_messages.configure_large_messages`) go in
    before ``rclpy.init``; torch gets the first node's ``torch_threads``; unusable
    parameters (``ValueError``) end the process with status 1 and the reason, no
    traceback; shutdown is clean and prompt.

    Callbacks only decode, store and hand over; inference and training run on their
    own threads, so one executor thread is enough. rclpy 7.1.6's
    ``MultiThreadedExecutor`` is avoided on purpose: it re-queues tasks still waiting
    for a pool thread and spins in Python holding the GIL (ros2/rclpy#1452); with it
    the estimator got 3.5 of 30 frames per second, with this executor 30.

    Args:
        build: creates the nodes, after ``rclpy.init``.
        name: logger name for start-up messages and a refusal.
        args: command line for ``rclpy.init`` (None = ``sys.argv``).
    """
    settings = configure_large_messages()
    rclpy.init(args=args)
    nodes: Sequence[Node] = ()
    try:
        executor = SingleThreadedExecutor()
        nodes = build()
        get_logger(name).info(
            f"large messages: Fast DDS profile {settings['fastdds_profile']}, malloc {settings['malloc']}"
        )
        torch.set_num_threads(torch_thread_count(nodes[0].get_parameter("torch_threads").value))
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:  # unusable parameters: say why, no traceback
        get_logger(name).fatal(str(exc))
        raise SystemExit(1) from None
    except Exception:
        # Ctrl-C or SIGTERM during start-up shuts the context down under our feet;
        # rclpy then fails creating the next entity. That is a normal stop.
        if rclpy.ok():
            raise
    finally:
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
        # Spare the interpreter's exit a full collection over torch's object graph
        # (seconds on a busy small CPU), so the process ends promptly after a signal.
        gc.freeze()
