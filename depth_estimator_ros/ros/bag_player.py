"""Publish a rosbag2 recording with its recorded timing (``play_bag``, for pip mode).

On a ROS distro use ``ros2 bag play``; pip mode has no ``ros2`` command, so this
small player does the same job with the ``rosbags`` reader of the data layer::

    play_bag BAG [--rate 2] [--loop] [--start-offset 5] [--topics /a /b]
             [--remap /camera/rgb/image_color:=/image] [--wait-for-subscribers 5]

Messages keep the recorded spacing of their bag timestamps (divided by ``--rate``).
Each raw CDR payload is deserialized into the rclpy message of its recorded type
(``rclpy.serialization.deserialize_message``), so a payload that does not match
the installed message definition is reported and skipped rather than sent.
Every topic is offered with :data:`~depth_estimator_ros.ros.qos.PLAYBACK_QOS`
(reliable, transient-local), which every subscriber matches whatever it requests.
Ctrl-C (SIGINT) or SIGTERM stops playback at once and exits with code 0.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
import rclpy
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.serialization import deserialize_message
from rclpy.signals import SignalHandlerOptions

from depth_estimator_ros.ros.large_messages import configure_large_messages
from depth_estimator_ros.ros.qos import PLAYBACK_QOS

__all__ = ["BagPlayer", "message_class", "parse_args", "main"]

NODE_NAME = "bag_player"


def message_class(msgtype: str) -> type:
    """Return the rclpy message class of a type name such as ``sensor_msgs/msg/Image``.

    Raises:
        ValueError: the name is not ``package/msg/Name`` or the type is not installed.
    """
    # rosbag2 stores every type as package/msg/Name; rosidl_runtime_py would also take the
    # ROS 1 style package/Name, so the form is checked first, the same with or without it.
    parts = msgtype.split("/")
    if len(parts) != 3 or parts[1] != "msg" or not all(parts):
        raise ValueError(f"message type {msgtype!r} is not of the form package/msg/Name")
    try:
        from rosidl_runtime_py.utilities import get_message
    except ImportError:  # pip mode: rosidl_runtime_py is not on PyPI
        get_message = None
    if get_message is not None:
        try:
            return get_message(msgtype)
        except (AttributeError, ModuleNotFoundError, ValueError) as exc:
            raise ValueError(f"message type {msgtype!r} is not installed: {exc}") from exc
    try:
        return getattr(importlib.import_module(f"{parts[0]}.msg"), parts[2])
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"message type {msgtype!r} is not installed: {exc}") from exc


class BagPlayer:
    """Publish raw bag messages from a node, one publisher per topic, with recorded timing."""

    def __init__(
        self,
        node: Node,
        *,
        rate: float = 1.0,
        wait_for_subscribers: float = 0.0,
        expected_subscribers: Mapping[str, int] | None = None,
    ) -> None:
        """Prepare playback on ``node``.

        Args:
            node: the node that owns the publishers (its remap rules apply to topic names).
            rate: playback speed factor, > 0 (2.0 = twice as fast).
            wait_for_subscribers: seconds to wait, when a topic first appears, for its
                subscribers to match before publishing on it (0 = do not wait).
            expected_subscribers: how many subscribers to wait for per topic (as
                recorded, before remapping); 1 for topics not listed. A topic read by
                several nodes (an estimator and a trainer) would otherwise start as soon
                as the first one matched, and the others would miss its first messages.

        Raises:
            ValueError: ``rate`` <= 0 or ``wait_for_subscribers`` < 0.
        """
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate}")
        if not wait_for_subscribers >= 0:
            raise ValueError(f"wait_for_subscribers must be >= 0 seconds, got {wait_for_subscribers}")
        self.node = node
        self.rate = rate
        self.wait_for_subscribers = wait_for_subscribers
        self.expected_subscribers = dict(expected_subscribers or {})
        self.stop_event = threading.Event()
        self.published = 0
        self.skipped = 0
        self._publishers: dict[str, tuple[Publisher, type]] = {}
        self._unplayable: set[str] = set()

    def _publisher(self, topic: str, msgtype: str) -> tuple[Publisher, type] | None:
        """Return the publisher of ``topic``, creating it (and waiting for subscribers) on first use."""
        if topic in self._publishers:
            return self._publishers[topic]
        if topic in self._unplayable:
            return None
        try:
            cls = message_class(msgtype)
        except ValueError as exc:
            self.node.get_logger().error(f"not playing {topic}: {exc}")
            self._unplayable.add(topic)
            return None
        publisher = self.node.create_publisher(cls, topic, PLAYBACK_QOS)
        self._publishers[topic] = (publisher, cls)
        expected = self.expected_subscribers.get(topic, 1)
        deadline = time.monotonic() + self.wait_for_subscribers
        while publisher.get_subscription_count() < expected and time.monotonic() < deadline:
            if self.stop_event.wait(0.01):
                break
        if self.wait_for_subscribers and publisher.get_subscription_count() < expected:
            self.node.get_logger().warning(
                f"{publisher.get_subscription_count()} of {expected} subscriber(s) on {publisher.topic_name} "
                f"after {self.wait_for_subscribers:.1f} s; playing anyway"
            )
        return self._publishers[topic]

    def play(self, messages: Iterable[tuple[str, str, int, bytes]], *, start_offset: float = 0.0) -> bool:
        """Publish one pass over ``messages`` with their recorded spacing.

        Args:
            messages: ``(topic, msgtype, timestamp_ns, raw_cdr)`` in timestamp order,
                as ``data.rosbag.iter_raw_messages`` yields them.
            start_offset: seconds after the first message at which playback starts.

        Returns:
            False if playback was stopped (``stop_event``), True when the pass finished.
        """
        first_ns: int | None = None
        anchor: tuple[float, int] | None = None  # (monotonic s, bag ns) that map onto each other
        for topic, msgtype, stamp_ns, raw in messages:
            if self.stop_event.is_set():
                return False
            if first_ns is None:
                first_ns = stamp_ns
            if stamp_ns - first_ns < start_offset * 1e9:
                continue
            known = topic in self._publishers
            entry = self._publisher(topic, msgtype)
            if entry is None:
                self.skipped += 1
                continue
            if anchor is None or not known:
                # Start the clock at the first message, and again after waiting for a new topic's subscribers.
                now = time.monotonic()
                if anchor is None or (now - anchor[0]) > (stamp_ns - anchor[1]) / 1e9 / self.rate:
                    anchor = (now, stamp_ns)
            due = anchor[0] + (stamp_ns - anchor[1]) / 1e9 / self.rate
            if self.stop_event.wait(max(0.0, due - time.monotonic())):
                return False
            publisher, cls = entry
            try:
                msg = deserialize_message(raw, cls)
            except Exception as exc:  # the C extension raises plain exceptions on malformed CDR
                self.node.get_logger().error(f"skipping a malformed {msgtype} message on {topic}: {exc}")
                self.skipped += 1
                continue
            publisher.publish(msg)
            self.published += 1
        return True


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line (ROS arguments after ``--ros-args`` are ignored here)."""
    parser = argparse.ArgumentParser(
        prog="play_bag", description="Publish a rosbag2 recording with its recorded timing (pip-mode ros2 bag play)."
    )
    parser.add_argument("bag", help="rosbag2 folder (sqlite3 or MCAP) or file")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor, > 0 (default 1.0)")
    parser.add_argument("--loop", action="store_true", help="play again from the start when the bag ends")
    parser.add_argument(
        "--start-offset", type=float, default=0.0, help="seconds into the bag to start from (default 0)"
    )
    parser.add_argument("--topics", nargs="+", metavar="TOPIC", help="play only these topics (default: all)")
    parser.add_argument(
        "--remap",
        action="append",
        default=[],
        metavar="FROM:=TO",
        help="publish topic FROM under the name TO (repeatable), like ros2 bag play --remap",
    )
    parser.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="when a topic first appears, wait up to this long for a subscriber before publishing (default 0)",
    )
    args = parser.parse_args(None if argv is None else list(argv))
    if not args.rate > 0:
        parser.error(f"--rate must be > 0, got {args.rate}")
    if args.start_offset < 0:
        parser.error(f"--start-offset must be >= 0 seconds, got {args.start_offset}")
    if args.wait_for_subscribers < 0:
        parser.error(f"--wait-for-subscribers must be >= 0 seconds, got {args.wait_for_subscribers}")
    for rule in args.remap:
        if rule.count(":=") != 1 or rule.startswith(":=") or rule.endswith(":="):
            parser.error(f"--remap expects FROM:=TO, got {rule!r}")
    return args


def _passes(bag: str, topics: list[str] | None, loop: bool) -> Iterator[Generator[tuple[str, str, int, bytes]]]:
    """Yield one message iterator per pass over the bag (forever with ``loop``)."""
    from depth_estimator_ros.data.rosbag import iter_raw_messages  # needs rosbags (pip mode)

    while True:
        yield iter_raw_messages(bag, topics=topics)
        if not loop:
            return


def _split_ros_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split a command line into the player's arguments and the ROS arguments.

    ROS arguments are those between ``--ros-args`` and ``--`` (or the end). Values
    such as ``--remap a:=b`` must stay with the player, which is why this does not
    use ``rclpy.utilities.remove_ros_args`` (it also strips bare ``a:=b`` tokens).
    """
    own: list[str] = []
    ros: list[str] = []
    inside = False
    for token in argv:
        if token == "--ros-args":
            inside = True
        elif inside and token == "--":
            inside = False
        elif inside:
            ros.append(token)
        else:
            own.append(token)
    return own, ros


def main(argv: Sequence[str] | None = None) -> int:
    """Run the player; return the process exit code (0 also after Ctrl-C)."""
    own, ros = _split_ros_args(sys.argv[1:] if argv is None else argv)
    args = parse_args(own)
    for rule in args.remap:
        ros += ["-r", rule]

    configure_large_messages()  # a player republishes camera-sized images
    context = rclpy.Context()
    rclpy.init(args=["play_bag", "--ros-args", *ros], context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = Node(NODE_NAME, context=context)
    player = BagPlayer(node, rate=args.rate, wait_for_subscribers=args.wait_for_subscribers)
    previous = {sig: signal.signal(sig, lambda *_: player.stop_event.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        for messages in _passes(args.bag, args.topics, args.loop):
            try:
                finished = player.play(messages, start_offset=args.start_offset)
            finally:
                messages.close()  # release the bag reader now, also when stopped mid-pass
            if not finished:
                break
        node.get_logger().info(f"published {player.published} messages, skipped {player.skipped}")
    except (OSError, ValueError) as exc:  # missing or unreadable bag (data.DataError is a ValueError)
        node.get_logger().error(f"cannot play {args.bag}: {exc}")
        code = 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        node.destroy_node()
        context.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
