"""Helpers for tests that use real rclpy: isolated contexts, deadlines, node processes.

Usage in a test module (``test/`` is on ``sys.path`` under pytest)::

    from ros_helpers import NodeProcess, MessageCollector, isolated_ros, wait_for

    def test_something():
        with isolated_ros() as ros:                      # own rclpy.Context + executor thread
            node = ros.create_node("probe")
            depth = MessageCollector(node, Image, "depth/image")
            with NodeProcess.python(CHILD_CODE) as child:  # a node in another process
                child.wait_for_output("READY", timeout=20.0)
                depth.wait_for_count(3, timeout=10.0)
                assert child.stop(timeout=2.0) == 0
        # here the executor thread is joined and the context shut down

Rules these helpers enforce: every wait has a deadline (``timeout`` is required),
no test touches the global rclpy context, and nothing outlives the ``with`` block
(executor threads are joined, child processes are stopped or killed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import rclpy
from rclpy.context import Context
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.signals import SignalHandlerOptions

from depth_estimator_ros.parameters import KINECT_TOPICS  # the driver topics live.launch.py defaults to

__all__ = [
    "BAG_START_TIME",
    "KINECT_TOPICS",
    "RosTestContext",
    "isolated_ros",
    "wait_for",
    "MessageCollector",
    "NodeProcess",
    "remote_parameter",
    "write_synthetic_bag",
]

T = TypeVar("T")

#: Where the package sources live, for child processes that must import them.
PROJECT_ROOT = Path(__file__).resolve().parents[1]


#: Stamp of the first colour frame in bags from :func:`write_synthetic_bag`, seconds.
BAG_START_TIME = 1_700_000_000.0


def wait_for(predicate: Callable[[], T], timeout: float, *, what: str = "condition", interval: float = 0.01) -> T:
    """Poll ``predicate`` until it returns a truthy value or the deadline passes.

    Args:
        predicate: called repeatedly; its first truthy result is returned.
        timeout: seconds until the deadline.
        what: description used in the failure message.
        interval: seconds between polls.

    Returns:
        The predicate's first truthy result.

    Raises:
        TimeoutError: the deadline passed; the message names ``what`` and the timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(interval)



def wait_until_settled(counts: Callable[[], tuple], done: Callable[[tuple], bool], timeout: float, *,
                       quiet: float = 1.0, what: str = "the counts to settle") -> tuple:
    """Poll ``counts`` until ``done`` holds and the counts have not changed for ``quiet`` seconds.

    For a stream that ends: a message may still be in flight after the last one was
    sent, so "enough arrived" alone can be read between one frame's arrival and its
    answer. Returns the settled counts.

    Raises:
        TimeoutError: not settled in time; the message names ``what`` and the last counts.
    """
    deadline = time.monotonic() + timeout
    last, since = counts(), time.monotonic()
    while True:
        time.sleep(0.02)
        now = counts()
        if now != last:
            last, since = now, time.monotonic()
        elif done(now) and time.monotonic() - since >= quiet:
            return now
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what} (last {last})")


class RosTestContext:
    """An isolated ``rclpy.Context`` with one executor spinning in a background thread.

    Nodes created with :meth:`create_node` (or added with :meth:`add_node`) are
    spun by that thread. :meth:`shutdown` stops the executor, joins the thread,
    destroys the nodes and shuts the context down; it is idempotent.
    """

    def __init__(self, *, private: bool = False) -> None:
        """Create the context and start spinning (single-threaded, as the nodes' executables do).

        Args:
            private: a graph of its own: automatic discovery off, so the nodes of this
                context talk to each other (one DDS participant) and to nothing else,
                whatever else runs in the domain (other tests' processes, other test runs
                on the machine that drew the same ``ROS_DOMAIN_ID``).
        """
        self.context = Context()
        # rcl reads the discovery range when the context is initialised; nodes created in
        # it later keep that setting.
        saved = os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE")
        if private:
            os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "OFF"
        try:
            # No signal handlers: Ctrl-C must keep reaching pytest, not rclpy.
            rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        finally:
            if saved is None:
                os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
            else:
                os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = saved
        self.executor: Executor = SingleThreadedExecutor(context=self.context)
        self._nodes: list[Node] = []
        self._thread = threading.Thread(target=self._spin, name="ros-test-executor", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except rclpy.executors.ExternalShutdownException:
            pass

    def create_node(self, name: str, **kwargs: Any) -> Node:
        """Create a plain node in this context and spin it; kwargs go to ``rclpy.node.Node``."""
        return self.add_node(Node(name, context=self.context, **kwargs))

    def add_node(self, node: Node) -> Node:
        """Spin ``node`` (created with ``context=self.context``) and destroy it at shutdown."""
        self._nodes.append(node)
        self.executor.add_node(node)
        return node

    def remove_node(self, node: Node) -> None:
        """Stop spinning ``node`` and destroy it now (e.g. to restart a node mid-test)."""
        self.executor.remove_node(node)
        self._nodes.remove(node)
        node.destroy_node()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the executor, join its thread within ``timeout`` s, destroy nodes, shut down.

        Raises:
            TimeoutError: the executor thread did not finish in time.
        """
        if not self.context.ok() and not self._thread.is_alive():
            return
        self.executor.shutdown(timeout_sec=timeout)
        self._thread.join(timeout)
        for node in self._nodes:
            node.destroy_node()
        self._nodes.clear()
        self.context.try_shutdown()
        if self._thread.is_alive():
            raise TimeoutError(f"executor thread still running {timeout:.1f} s after shutdown")


@contextmanager
def isolated_ros(*, check_threads: bool = True, private: bool = False) -> Iterator[RosTestContext]:
    """Yield a :class:`RosTestContext`; shut it down on exit and check no thread leaked.

    Args:
        check_threads: after shutdown, require ``threading.enumerate()`` to be back to
            what it was on entry (within 2 s, for threads that are finishing).
        private: no discovery (see :class:`RosTestContext`): for tests whose nodes all
            live in this context and must hear nothing else.
    """
    baseline = set(threading.enumerate())
    ros = RosTestContext(private=private)
    try:
        yield ros
    finally:
        ros.shutdown()
    if check_threads:
        wait_for(
            lambda: not [t for t in threading.enumerate() if t not in baseline and t.is_alive()],
            2.0,
            what=f"threads to end: {[t.name for t in threading.enumerate() if t not in baseline]}",
        )


class MessageCollector:
    """Subscribe to a topic and keep every message received, with its arrival time.

    ``messages`` and ``arrivals`` (``time.monotonic()`` seconds) grow from the
    executor thread; read them after a ``wait_for_count``.
    """

    def __init__(self, node: Node, msg_type: type, topic: str, qos: QoSProfile | int = 10) -> None:
        """Create the subscription on ``node``.

        Args:
            node: a node spun by a :class:`RosTestContext`.
            msg_type: message class, e.g. ``sensor_msgs.msg.Image``.
            topic: topic name (resolved in ``node``'s namespace).
            qos: profile or history depth.
        """
        self.messages: list[Any] = []
        self.arrivals: list[float] = []
        self._lock = threading.Lock()
        self.subscription = node.create_subscription(msg_type, topic, self._on_message, qos)

    def _on_message(self, msg: Any) -> None:
        with self._lock:
            self.messages.append(msg)
            self.arrivals.append(time.monotonic())

    def __len__(self) -> int:
        with self._lock:
            return len(self.messages)

    def wait_for_count(self, count: int, timeout: float) -> list[Any]:
        """Wait until at least ``count`` messages arrived; return a copy of the list."""
        wait_for(
            lambda: len(self) >= count,
            timeout,
            what=f"{count} messages on {self.subscription.topic_name} (got {len(self)})",
        )
        with self._lock:
            return list(self.messages)


def remote_parameter(node: Node, target: str, name: str, timeout: float) -> Any:
    """Return the value of parameter ``name`` of node ``target``, asked over its service (``ros2 param get``).

    Args:
        node: a node spun by a :class:`RosTestContext`.
        target: the other node's fully qualified name, e.g. ``"/online_trainer"``.
        name: the parameter.
        timeout: seconds for the service to appear and for the answer.

    Raises:
        TimeoutError: no service or no answer in time.
    """
    from rcl_interfaces.srv import GetParameters
    from rclpy.parameter import parameter_value_to_python

    client = node.create_client(GetParameters, f"{target}/get_parameters")
    try:
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"{target}/get_parameters not available after {timeout:.1f} s")
        future = client.call_async(GetParameters.Request(names=[name]))
        wait_for(future.done, timeout, what=f"{target}/get_parameters to answer")
        return parameter_value_to_python(future.result().values[0])
    finally:
        node.destroy_client(client)


class NodeProcess:
    """A ROS node (or any command) in a child process, stdout/stderr captured to files.

    Output goes to files, not pipes, so a chatty child can never block on a full
    pipe. Use as a context manager: on exit a child still running is killed.
    The child inherits the environment (``ROS_DOMAIN_ID`` from conftest) with
    ``PYTHONUNBUFFERED=1`` so its prints are visible at once.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        process_group: bool = False,
    ) -> None:
        """Start ``argv``.

        Args:
            argv: the command line.
            env: variables added to (overriding) the inherited environment.
            cwd: working directory (default: the project root).
            process_group: start the child in a process group of its own (as a terminal
                starts a command), for :meth:`signal_group`.
        """
        self.argv = list(argv)
        self._process_group = process_group
        self._dir = tempfile.TemporaryDirectory(prefix="ros_node_")
        self.stdout_path = Path(self._dir.name) / "stdout.txt"
        self.stderr_path = Path(self._dir.name) / "stderr.txt"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.popen = subprocess.Popen(
                self.argv, stdout=out, stderr=err, env=full_env, cwd=cwd if cwd is not None else PROJECT_ROOT,
                start_new_session=process_group,
            )

    @classmethod
    def python(cls, code: str, *args: str, **kwargs: Any) -> NodeProcess:
        """Run ``python -c code args...`` with this interpreter."""
        return cls([sys.executable, "-u", "-c", code, *args], **kwargs)

    @classmethod
    def module(cls, module: str, *args: str, **kwargs: Any) -> NodeProcess:
        """Run ``python -m module args...`` with this interpreter."""
        return cls([sys.executable, "-u", "-m", module, *args], **kwargs)

    @property
    def stdout(self) -> str:
        """Everything the child wrote to stdout so far."""
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        """Everything the child wrote to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def _check_running(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise RuntimeError(f"{self.argv[:4]} exited early with code {code}; stderr:\n{self.stderr[-4000:]}")

    def wait_for_output(self, text: str, timeout: float) -> str:
        """Wait until ``text`` appears in the child's stdout; return the stdout.

        Raises:
            TimeoutError: not seen in time (the message includes stderr's tail).
            RuntimeError: the child exited first.
        """

        def seen() -> str | None:
            out = self.stdout
            if text in out:
                return out
            self._check_running()
            return None

        try:
            return wait_for(seen, timeout, what=f"{text!r} on the child's stdout", interval=0.02)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; stdout:\n{self.stdout[-2000:]}\nstderr:\n{self.stderr[-2000:]}") from None

    def stop(self, timeout: float = 2.0, sig: int = signal.SIGINT) -> int:
        """Send ``sig`` (SIGINT, like Ctrl-C) and wait for the exit code.

        Args:
            timeout: seconds the child has to exit.
            sig: the signal to send.

        Returns:
            The exit code.

        Raises:
            TimeoutError: still running after ``timeout`` (it is then killed).
        """
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TimeoutError(
                f"{self.argv[:4]} did not exit within {timeout:.1f} s of signal {sig}; stderr:\n{self.stderr[-2000:]}"
            ) from None

    def signal_group(self, sig: int = signal.SIGINT) -> bool:
        """Send ``sig`` to the child's whole process group, as a terminal's Ctrl-C does.

        Returns:
            False when the group no longer exists (every process in it has ended).
        """
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def kill(self) -> None:
        """Kill the child if it still runs (with its process group, when it has one) and reap it."""
        if self._process_group:
            self.signal_group(signal.SIGKILL)  # what it started (ros2 launch's nodes) goes too
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(5.0)

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()
        self._dir.cleanup()


def write_synthetic_bag(
    path: str | os.PathLike[str],
    *,
    frames: int = 6,
    width: int = 64,
    height: int = 48,
    rate_hz: float = 10.0,
    seed: int = 0,
    **kwargs: Any,
) -> Path:
    """Write a small rosbag2 of a synthetic room on :data:`KINECT_TOPICS`.

    Per frame: rgb8 image, 16UC1 depth (stamped 7 ms later) and camera_info; colour
    stamps are ``BAG_START_TIME + i / rate_hz``.

    Args:
        path: bag folder to create (must not exist).
        frames: number of frames.
        width: image width, pixels.
        height: image height, pixels.
        rate_hz: frame rate of the recording.
        seed: synthetic room seed.
        **kwargs: further ``data.write_bag`` arguments (``storage``, ``depth_encoding``, ...).

    Returns:
        ``path``.
    """
    from depth_estimator_ros.data import SyntheticRooms, write_bag

    source = SyntheticRooms(seed=seed, frames=frames, width=width, height=height)
    write_bag(
        path,
        source,
        rgb_topic=KINECT_TOPICS["image"],
        depth_topic=KINECT_TOPICS["depth"],
        info_topic=KINECT_TOPICS["camera_info"],
        rate_hz=rate_hz,
        start_time=BAG_START_TIME,
        **kwargs,
    )
    return Path(path)


#: Trainer parameters for small, fast rounds that accept every finite result: node tests
#: are about the node, not about what a round learns.
FAST_ROUNDS: dict[str, object] = {
    "min_new_frames": 3, "max_new_frames": 4, "holdout_frames": 1, "batch_size": 2, "epochs_per_round": 1,
    "buffer_capacity": 16, "accept_tolerance": 100.0, "duplicate_threshold": 0.0, "train_size": [32, 32],
}


def stamped_header(stamp: float, frame_id: str = "camera_rgb_optical_frame"):
    """Return a std_msgs/Header stamped ``stamp`` seconds."""
    from std_msgs.msg import Header

    header = Header(frame_id=frame_id)
    header.stamp.sec = int(stamp)
    header.stamp.nanosec = int(round((stamp - int(stamp)) * 1e9))
    return header
