"""ROS plumbing of the node-level benchmarks: node processes, a client node, paced publishing.

The benchmarks talk to the nodes exactly as a robot would: over DDS, the nodes running
as separate processes started from their console entry points, parameters passed with
``--ros-args``. The benchmarks are clients of the ``ros/`` layer's public interface
(topics, QoS profiles, parameters, diagnostics); rclpy and the ROS messages are imported
inside the functions that talk to nodes, so the model section runs without them.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "set_bench_domain",
    "base_checkpoint",
    "NodeProcess",
    "RosClient",
    "PacedPublisher",
    "StampRecorder",
    "DiagnosticsRecorder",
    "read_rss",
    "stamp_ns",
    "wait_until",
]


def set_bench_domain() -> int:
    """Put this process and its children on a ROS domain of their own, on localhost only.

    Keeps ``ROS_DOMAIN_ID`` when the caller set it; otherwise picks one at random in
    1..100 so a benchmark never hears (or disturbs) other nodes on the machine. Also
    applies the nodes' large-message settings (Fast DDS profile, malloc thresholds) to
    this process, as a camera driver set up like ``live.launch.py`` would have them.

    Returns:
        The domain id in use.
    """
    from depth_estimator_ros.ros.large_messages import configure_large_messages

    configure_large_messages()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if "ROS_DOMAIN_ID" not in os.environ:
        os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
    return int(os.environ["ROS_DOMAIN_ID"])


def base_checkpoint(out_dir: Path, arch: str, *, seed: int = 0) -> Path:
    """Write (once) a seeded, randomly initialised checkpoint of ``arch`` for the nodes to share.

    Every node of a benchmark loads this one file, so estimator and trainer start from
    identical base weights (the trainer's payloads are differences from that base).

    Returns:
        ``out_dir / f"base_{arch}.safetensors"``.
    """
    import torch

    from depth_estimator_ros.models import build_model, save_checkpoint

    path = Path(out_dir) / f"base_{arch}.safetensors"
    if not path.exists():
        torch.manual_seed(seed)
        save_checkpoint(path, build_model(arch), provenance={"source": f"bench: random initialisation, seed {seed}"})
    return path


def wait_until(predicate: Callable[[], bool], timeout: float, *, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def read_rss(pid: int) -> tuple[int, int] | None:
    """Return ``(resident, peak resident)`` memory of process ``pid`` in bytes, or None once it is gone.

    The resident size comes from psutil when installed, else ``/proc/<pid>/status``
    ``VmRSS``; the peak is ``VmHWM`` (Linux), or the resident size where that is unknown.
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            rss = int(psutil.Process(pid).memory_info().rss)
        except psutil.Error:
            return None
    else:
        rss_kib = _proc_status_kib(pid, "VmRSS")
        if rss_kib is None:
            return None
        rss = rss_kib * 1024
    hwm_kib = _proc_status_kib(pid, "VmHWM")
    return rss, max(rss, hwm_kib * 1024) if hwm_kib is not None else rss


def _proc_status_kib(pid: int, key: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class NodeProcess:
    """Run one of the package's ROS executables as a separate process.

    Args:
        module: module holding ``main()``, e.g. ``"depth_estimator_ros.ros.estimator_node"``.
        parameters: ROS parameters, passed as ``-p name:=value``.
        log_path: file that receives the process's stdout and stderr.
        remappings: topic remappings ``{"from": "to"}``, passed as ``-r from:=to``.
        env: extra environment variables.
        prefix: command line the process is started under, e.g. ``["ip", "netns", "exec", "ns"]``
            (:meth:`~depth_estimator_bench.netns.Host.wrap`); it must ``exec`` the
            command so that signals reach the node.
    """

    def __init__(
        self,
        module: str,
        parameters: Mapping[str, Any],
        log_path: Path,
        *,
        remappings: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        args = [*prefix, sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())", "--ros-args"]
        for name, value in parameters.items():
            args += ["-p", f"{name}:={_param_text(value)}"]
        for source, target in (remappings or {}).items():
            args += ["-r", f"{source}:={target}"]
        self.module = module
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )

    @property
    def pid(self) -> int:
        """Return the process id."""
        return self.process.pid

    def alive(self) -> bool:
        """Return whether the process is still running."""
        return self.process.poll() is None

    def check_alive(self) -> None:
        """Raise RuntimeError with the log's tail when the process has exited."""
        if not self.alive():
            raise RuntimeError(
                f"{self.module} exited with status {self.process.returncode}; log {self.log_path}:\n{self.log_tail()}"
            )

    def log_tail(self, chars: int = 3000) -> str:
        """Return the end of the process's log."""
        if not self._log.closed:
            self._log.flush()
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        """Stop the process with SIGINT (a clean ROS shutdown), then SIGKILL after ``timeout``."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_text(v) for v in value) + "]"
    if isinstance(value, str) and value == "":
        return "''"
    return str(value)


def stamp_ns(stamp: Any) -> int:
    """Return a ``builtin_interfaces/Time`` as integer nanoseconds (the nodes' own conversion)."""
    from depth_estimator_ros.ros.codec import stamp_nanoseconds

    return stamp_nanoseconds(stamp)


class RosClient:
    """An rclpy context, one node and a single-threaded executor spinning in a thread.

    Single-threaded like the nodes (see ``runner.spin_nodes``): rclpy 7.1.6's
    ``MultiThreadedExecutor`` busy-loops and would take the CPU the measured nodes need.

    Args:
        name: node name.
    """

    def __init__(self, name: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, name=f"{name}-spin", daemon=True)
        self._thread.start()

    def publisher_qos(
        self, topic: str, timeout: float, *, depth: int = 10, processes: Sequence[NodeProcess] = ()
    ) -> Any:
        """Wait for a publisher of ``topic`` and return a subscription QoS matching its reliability.

        Args:
            topic: fully qualified or relative topic name.
            timeout: seconds to wait for the publisher (node start-up included).
            depth: keep-last depth of the subscription.
            processes: node processes that must stay alive meanwhile.

        Raises:
            RuntimeError: a process exited, or no publisher appeared within ``timeout``.
        """
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile

        infos: list[Any] = []

        def found() -> bool:
            for process in processes:
                process.check_alive()
            infos[:] = self.node.get_publishers_info_by_topic(topic)
            return bool(infos)

        if not wait_until(found, timeout, interval=0.1):
            raise RuntimeError(f"no publisher of {topic!r} appeared within {timeout:g} s")
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            reliability=infos[0].qos_profile.reliability,
            durability=DurabilityPolicy.VOLATILE,
        )

    def close(self) -> None:
        """Stop the executor, destroy the node and shut the context down."""
        self.executor.shutdown(timeout_sec=5.0)
        self._thread.join(timeout=5.0)
        self.node.destroy_node()
        if self.context.ok():
            self._rclpy.shutdown(context=self.context)

    def __enter__(self) -> "RosClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StampRecorder:
    """Record the arrival of messages that carry a header: ``(stamp_ns, receipt_ns)`` pairs.

    Args:
        keep: optional function of the message whose result is kept next to each arrival
            (e.g. a digest of the image data).
    """

    def __init__(self, keep: Callable[[Any], Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._keep = keep
        self.arrivals: list[tuple[int, int]] = []
        self.kept: list[Any] = []

    def __call__(self, msg: Any) -> None:
        """Subscription callback: note the wall-clock time of receipt first."""
        receipt = time.time_ns()
        kept = self._keep(msg) if self._keep is not None else None
        with self._lock:
            self.arrivals.append((stamp_ns(msg.header.stamp), receipt))
            if self._keep is not None:
                self.kept.append(kept)

    def count(self) -> int:
        """Return the number of messages received so far."""
        with self._lock:
            return len(self.arrivals)

    def snapshot(self) -> tuple[list[tuple[int, int]], list[Any]]:
        """Return copies of the arrivals and kept values."""
        with self._lock:
            return list(self.arrivals), list(self.kept)


class DiagnosticsRecorder:
    """Keep every ``/diagnostics`` status whose name starts with one of ``prefixes``.

    Each record is ``(receipt_s, status_name, {key: value})`` with values parsed to float
    where they are numbers.
    """

    def __init__(self, prefixes: Sequence[str]) -> None:
        self.prefixes = tuple(prefixes)
        self._lock = threading.Lock()
        self.records: list[tuple[float, str, dict[str, Any]]] = []

    def __call__(self, msg: Any) -> None:
        """Subscription callback for ``diagnostic_msgs/DiagnosticArray``."""
        now = time.time()
        with self._lock:
            for status in msg.status:
                if status.name.startswith(self.prefixes):
                    self.records.append((now, status.name, {kv.key: _number(kv.value) for kv in status.values}))

    def latest(self) -> dict[str, dict[str, Any]]:
        """Return the newest key/values of every status name seen."""
        with self._lock:
            return {name: dict(values) for _, name, values in self.records}

    def series(self, key: str) -> list[tuple[float, Any]]:
        """Return ``(receipt_s, value)`` of ``key`` over time, from whichever status carries it."""
        with self._lock:
            return [(t, values[key]) for t, _, values in self.records if key in values]


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


class PacedPublisher:
    """Publish at a fixed rate from a thread, stamping each message with the time of publishing.

    Args:
        rate_hz: messages per second.
        publish: ``publish(index, stamp)`` builds and publishes message ``index`` with
            header stamp ``stamp`` (a ``builtin_interfaces/Time``); called from the thread.
    """

    def __init__(self, rate_hz: float, publish: Callable[[int, Any], None]) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.period = 1.0 / rate_hz
        self._publish = publish
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.sent: list[int] = []  # stamps in ns, in publishing order
        self.late = 0  # ticks skipped because publishing fell behind by a whole period
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="paced-publisher", daemon=True)

    def start(self) -> "PacedPublisher":
        """Start publishing."""
        self._thread.start()
        return self

    def _run(self) -> None:
        from builtin_interfaces.msg import Time

        next_tick = time.monotonic()
        index = 0
        try:
            while not self._stop.is_set():
                now_ns = time.time_ns()
                self._publish(index, Time(sec=now_ns // 1_000_000_000, nanosec=now_ns % 1_000_000_000))
                with self._lock:
                    self.sent.append(now_ns)
                index += 1
                next_tick += self.period
                behind = time.monotonic() - next_tick
                if behind > self.period:
                    skipped = int(behind // self.period)
                    self.late += skipped
                    next_tick += skipped * self.period
                self._stop.wait(max(0.0, next_tick - time.monotonic()))
        except BaseException as exc:  # reported by stop(); a dead publisher must not pass silently
            self.error = exc

    def sent_stamps(self) -> list[int]:
        """Return a copy of the stamps (ns) sent so far."""
        with self._lock:
            return list(self.sent)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop publishing; re-raise the thread's error if publishing failed."""
        self._stop.set()
        self._thread.join(timeout=timeout)
        if self.error is not None:
            raise RuntimeError(f"publisher thread failed: {self.error!r}") from self.error
