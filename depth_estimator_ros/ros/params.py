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
import signal
import threading
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
from rclpy.signals import SignalHandlerOptions

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


#: Longest wait of the executor before it looks at a stop request (a signal), seconds.
STOP_POLL_S = 0.1
#: Logged once the nodes are built and spinning: the process is ready for frames and signals.
READY_MESSAGE = "ready"


class _StopOnSignal:
    """SIGINT/SIGTERM handlers that ask the spin loop to stop, once, whatever arrives after.

    rclpy's own handlers shut the context down at the first signal, under the inference
    thread's feet (it then fails to publish: "publisher's context is invalid"), and the
    previous Python handler raises ``KeyboardInterrupt`` wherever the main thread is,
    the cleanup included: under ``ros2 launch`` a terminal's Ctrl-C reaches the process
    twice (the terminal signals the whole process group, launch forwards it again).
    These handlers only record the request; before the nodes spin, the first signal
    also interrupts the start-up with ``KeyboardInterrupt``. Later signals are ignored.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.interruptible = True  # a signal may raise KeyboardInterrupt (start-up)
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        first = not self.requested.is_set()
        self.requested.set()
        if first and self.interruptible:
            self.interruptible = False
            raise KeyboardInterrupt

    def ignore(self) -> None:
        """Ignore the signals from now on, at the C level.

        The process is ending: at its exit the interpreter puts a Python handler back to
        the default action, and a late copy of the signal would then kill the process
        with a SIGINT status (seen once in three runs of the Ctrl-C test: exit -2); an ignored signal
        stays ignored.
        """
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_IGN)


def spin_nodes(build: Callable[[], Sequence[Node]], name: str, args: Sequence[str] | None) -> None:
    """Run the nodes ``build()`` makes in a single-threaded executor until Ctrl-C or SIGTERM.

    The shared ``main()`` of the package's executables: the large-message settings
    (:func:`~depth_estimator_ros.ros.large_messages.configure_large_messages`) go in
    before ``rclpy.init``; torch gets the first node's ``torch_threads``; unusable
    parameters (``ValueError``) end the process with status 1 and the reason, no
    traceback; shutdown is clean and prompt.

    Shutdown order: a signal only asks the loop to stop (:class:`_StopOnSignal`; rclpy's
    handlers are not installed); then every node is destroyed, which first ends its
    inference or training thread, and only then is the context shut down, so no thread
    publishes into a dead context. Repeated signals during that cleanup are ignored.
    :data:`READY_MESSAGE` is logged once the nodes spin.

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
    stop = _StopOnSignal()
    nodes: Sequence[Node] = ()
    executor = None
    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
        executor = SingleThreadedExecutor()
        nodes = build()
        get_logger(name).info(
            f"large messages: Fast DDS profile {settings['fastdds_profile']}, malloc {settings['malloc']}"
        )
        torch.set_num_threads(torch_thread_count(nodes[0].get_parameter("torch_threads").value))
        for node in nodes:
            executor.add_node(node)
        stop.interruptible = False
        if not stop.requested.is_set():
            get_logger(name).info(f"{READY_MESSAGE}: {', '.join(node.get_name() for node in nodes)}")
        # spin_once with a deadline: a Python signal handler runs only between two waits.
        while not stop.requested.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=STOP_POLL_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:  # unusable parameters: say why, no traceback
        get_logger(name).fatal(str(exc))
        raise SystemExit(1) from None
    finally:
        stop.interruptible = False  # from here on a signal never raises
        for node in nodes:
            node.destroy_node()  # ends the node's inference / training thread first
        if executor is not None:
            executor.shutdown(timeout_sec=STOP_POLL_S)
        rclpy.try_shutdown()
        stop.ignore()
        # Spare the interpreter's exit a full collection over torch's object graph
        # (seconds on a busy small CPU), so the process ends promptly after a signal.
        gc.freeze()
