"""Run the package's nodes: the base model they start from, torch's threads, signals and the spin loop.

The process side of the executables (``depth_estimator``, ``online_trainer``, ``live``):
:func:`load_model` builds the base model the parameters describe, :func:`torch_thread_count`
turns ``torch_threads`` into a count, and :func:`spin_nodes` is their shared ``main()``
(large-message settings, ``rclpy.init``, SIGINT/SIGTERM, a clean shutdown). The parameters
themselves are ``ros/params.py``'s.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
import torch
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from depth_estimator_ros import models
from depth_estimator_ros.models.base import DepthModel
from depth_estimator_ros.ros.large_messages import configure_large_messages

__all__ = [
    "STOP_POLL_S",
    "READY_MESSAGE",
    "CALLBACK_ERROR_LOG_PERIOD_S",
    "torch_thread_count",
    "load_model",
    "spin_nodes",
]


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


#: Shortest time between two log lines about exceptions escaping callbacks, seconds.
CALLBACK_ERROR_LOG_PERIOD_S = 5.0


class _CallbackErrors:
    """Log exceptions that escaped a callback: the first at once, then at most one per period."""

    def __init__(self, logger: Any, period: float = CALLBACK_ERROR_LOG_PERIOD_S) -> None:
        self._logger = logger
        self._period = period
        self._count = 0
        self._last_logged: float | None = None

    def record(self, formatted: str) -> None:
        self._count += 1
        now = time.monotonic()
        if self._last_logged is None or now - self._last_logged >= self._period:
            self._last_logged = now
            self._logger.error(
                f"a callback raised (a bug; the nodes keep running; {self._count} so far, logged at most "
                f"every {self._period:g} s):\n{formatted}"
            )


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

    An exception that escapes a callback while the nodes spin is a bug, not a parameter
    problem: it is logged with its traceback (at most once per
    :data:`CALLBACK_ERROR_LOG_PERIOD_S`, with a count) and the nodes keep spinning.

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
        try:
            nodes = build()
        except ValueError as exc:  # unusable parameters: say why, no traceback
            get_logger(name).fatal(str(exc))
            raise SystemExit(1) from None
        get_logger(name).info(
            f"large messages: Fast DDS profile {settings['fastdds_profile']}, malloc {settings['malloc']}"
        )
        torch.set_num_threads(torch_thread_count(nodes[0].get_parameter("torch_threads").value))
        for node in nodes:
            executor.add_node(node)
        stop.interruptible = False
        if not stop.requested.is_set():
            get_logger(name).info(f"{READY_MESSAGE}: {', '.join(node.get_name() for node in nodes)}")
        errors = _CallbackErrors(get_logger(name))
        # spin_once with a deadline: a Python signal handler runs only between two waits.
        while not stop.requested.is_set() and rclpy.ok():
            try:
                executor.spin_once(timeout_sec=STOP_POLL_S)
            except (KeyboardInterrupt, ExternalShutdownException):
                raise
            except Exception:  # a callback's bug: logged and counted, the nodes keep running
                errors.record(traceback.format_exc())
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
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
