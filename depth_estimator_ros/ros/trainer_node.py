"""The ``online_trainer`` node: adapt the depth network to the current room from live RGB-D.

Subscribed topics
    ``image`` (sensor_msgs/Image): rgb8, bgr8, rgba8, bgra8 or mono8, any row
    padding, either byte-order flag; sensor-data QoS. ``image/compressed`` instead
    with ``rgb_transport: compressed`` (sensor_msgs/CompressedImage, JPEG or PNG as
    image_transport's ``compressed`` plugin publishes it; ``image`` as remapped, plus
    ``/compressed``).
    ``depth`` (sensor_msgs/Image): 16UC1 millimetres (0 and 65535 invalid) or
    32FC1 metres (NaN, inf, 0 and negative invalid), the same size as ``image``;
    sensor-data QoS. RGB and depth are paired by stamp, nearest within
    ``sync_tolerance`` seconds (the two cameras are not triggered together).
    ``camera_info`` (sensor_msgs/CameraInfo): intrinsics kept with the frames, checked on
    arrival as the estimator checks them; an implausible one is dropped and counted
    (``camera_info_invalid``), the last accepted one staying in force.

Published topics
    ``weights`` (std_msgs/UInt8MultiArray, reliable, transient-local, keep-last 1):
    after every accepted round and every reset, an ``adaptation.export_payload``
    blob; a late or restarted estimator receives the latest one at once.
    ``rooms`` (std_msgs/UInt8MultiArray, reliable, transient-local, keep-last 1, as
    ``weights``): the whole room memory (``RoomMemory.to_bytes``), for an estimator with
    ``room_recognition`` (no sensor depth of its own); sent from a background thread
    (:class:`~depth_estimator_ros.adaptation.room_broadcast.RoomBroadcast`) at most every
    :data:`ROOMS_PUBLISH_PERIOD_S` seconds after the memory changed (a round stored a room,
    a switch, a forget), and once at start when rooms were loaded.
    ``~/weights_version`` (std_msgs/UInt32): the version in force, on every update
    and with each diagnostics period.
    ``~/loss``, ``~/holdout_rmse`` (metres, after the last round), ``~/buffer_fill``
    (frames) (std_msgs/Float32), each diagnostics period, for rqt_plot.
    ``/diagnostics`` (diagnostic_msgs/DiagnosticArray): pair rate, drops by reason,
    and the engine's statistics (rounds, outcomes, loss, held-out RMSE, buffer fill,
    last update age), the room in force (``room``: its name, ``base``, or
    ``adapted, not remembered``), ``rooms``, ``rounds_switched``, ``rounds_unproven_dropped``, ``room_memory_dir``
    and ``room_memory_error`` (why the last save failed; the status is WARN then).

Services (request queue of 1000, ``qos.SERVICE_QOS``: a burst of calls is answered in
order, each one; rclpy's default queue of 10 lost the rest)
    ``~/reset`` (std_srvs/Trigger): back to the base weights (published as a new version).
    ``~/save`` (std_srvs/Trigger): write the weights in force to a checkpoint in
    ``checkpoint_dir``, atomically; answers ``success=false`` with the reason when
    the directory cannot be written (read-only, disk full, ...).
    ``~/rooms/list`` (std_srvs/Trigger): the room memory as one JSON object
    (``in_force``, ``folder``, ``capacity``, ``rooms``: one row per room, most recently
    used first).
    ``~/rooms/save`` (std_srvs/Trigger): write every room to ``room_memory_dir`` now;
    the message names the folder and the files.
    ``~/rooms/forget`` (std_srvs/Trigger): forget every room and delete their files.
    ``~/rooms/forget_active`` (std_srvs/Trigger): forget the room in force and delete
    its file (``success=false`` when no remembered room is in force).
    Forgetting keeps the weights in force (``~/reset`` drops them); the next accepted
    round stores them as a new room. Every ``~/rooms`` service answers, with
    ``success=false`` and the reason when the folder cannot be written.

Parameters
    Every row of :mod:`depth_estimator_ros.parameters` for this node (type, default,
    range, live or read-only, description; the README's node reference lists them):
    the model and input ones shared with the estimator, the node's own
    ``adaptation_enabled``, ``sync_tolerance``, ``sync_queue_size``, ``checkpoint_dir``,
    ``room_memory_dir``, ``room_save_period``, ``base_data``, and one per
    :class:`~depth_estimator_ros.adaptation.AdaptationConfig` field (the rows with a
    ``field``), live where the table says so. Every live change
    is validated as a whole configuration; a refusal names the reason and leaves
    everything unchanged.

Threads: callbacks run in the executor's one thread and never wait for training:
image and depth callbacks decode, pair and offer frames; training runs in the
engine's own worker thread; ``~/save`` writes the last accepted weights, which the
engine keeps ready, so a save does not wait for a round in progress. The room memory
is loaded in the constructor (refused files are logged as warnings, each with its
reason, and left on disk; the node runs on what loaded, the base at worst) and saved by
:class:`~depth_estimator_ros.adaptation.room_folder.RoomFolder`'s own thread at most
every ``room_save_period`` seconds after it changed, and at shutdown.
Compressed colour frames are paired as they arrive, by the stamp in their
uncompressed header, and only a completed pair is decoded, on a decode thread
(:class:`~depth_estimator_ros.ros.latest.LatestWorker`): a JPEG decode never holds up
the executor, unpaired frames are never decoded, and pairing stays exact. When
decoding falls behind, a pair replaced before the thread reached it is dropped and
counted (``pair_stale``). Raw frames need no decompression and are decoded in the
callback, as before.
"""

from __future__ import annotations

import array
import threading
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float32, UInt8MultiArray, UInt32
from std_srvs.srv import Trigger

from depth_estimator_ros import models, parameters
from depth_estimator_ros.adaptation import AdaptationConfig, AdaptationEngine
from depth_estimator_ros.adaptation.config import config_fields
from depth_estimator_ros.adaptation.room_broadcast import RoomBroadcast
from depth_estimator_ros.adaptation.room_folder import RoomFolder
from depth_estimator_ros.data.frame import Frame, Intrinsics
from depth_estimator_ros.learning.device import resolve_device
from depth_estimator_ros.ros import codec
from depth_estimator_ros.ros.diagnostics import (
    DropCounter,
    RateMeter,
    build_array,
    build_status,
    split_drops,
)
from depth_estimator_ros.ros.latest import LatestWorker
from depth_estimator_ros.ros.pairing import Pair, StampGuard, StampPairer
from depth_estimator_ros.ros.params import (
    accept,
    check_changes,
    declare_parameters,
    node_descriptors,
    refuse,
)
from depth_estimator_ros.ros.qos import (
    DIAGNOSTICS_QOS,
    SENSOR_QOS,
    SERVICE_QOS,
    WEIGHTS_QOS,
    image_qos,
)
from depth_estimator_ros.ros.runner import load_model, spin_nodes

__all__ = ["OnlineTrainerNode", "parameter_descriptors", "checkpoint_dir_problem", "DEFAULT_CHECKPOINT_DIR", "main"]

NODE_NAME = parameters.TRAINER

#: Least seconds between two room memories published on ``rooms``.
ROOMS_PUBLISH_PERIOD_S = 5.0

#: Where ``~/save`` writes when ``checkpoint_dir`` is empty.
DEFAULT_CHECKPOINT_DIR = parameters.DEFAULT_CHECKPOINT_DIR


def parameter_descriptors() -> dict[str, ParameterDescriptor]:
    """Return the descriptors of every parameter the node declares (rows of ``depth_estimator_ros.parameters``)."""
    return node_descriptors(NODE_NAME)


def load_base_frames(spec: str) -> list[Frame]:
    """Return the frames of ``spec`` (a ``data.open_source`` spec), or none for ``""``.

    Raises:
        ValueError: the source cannot be opened or read (the message names it).
    """
    if not spec:
        return []
    from depth_estimator_ros.data import open_source

    try:
        return [frame for frame in open_source(spec) if frame.depth is not None]
    except (OSError, ValueError) as exc:
        raise ValueError(f"base_data {spec!r}: {exc}") from exc


def checkpoint_dir_problem(directory: str) -> str:
    """Return why ``directory`` cannot be ``checkpoint_dir``, or ``""`` (empty = the default).

    Asking the file system can itself fail (a name over 255 bytes, a NUL byte, a path
    through a file or a directory without permission): that is a refusal with the
    reason too, so a set-parameters request is always answered.
    """
    if not directory:
        return ""
    try:
        path = Path(directory).expanduser()
        if path.exists() and not path.is_dir():
            return f"checkpoint_dir {directory!r} exists and is not a directory"
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: "~user" that cannot be expanded
        return f"checkpoint_dir {directory!r} cannot be used: {exc}"
    return ""


def _stamp(msg: Image | CompressedImage) -> float:
    return codec.stamp_seconds(msg.header.stamp)


class OnlineTrainerNode(Node):
    """Pair live RGB and depth, feed the adaptation engine, publish accepted weights.

    See the module docstring for topics, services, parameters and threading.

    Args:
        kwargs: passed to ``rclpy.node.Node`` (``context``, ``cli_args``,
            ``parameter_overrides``, ...).

    Raises:
        ValueError: unusable start-up parameters (architecture, checkpoint, device,
            an inconsistent adaptation configuration); the message says which.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        values = declare_parameters(self, NODE_NAME)
        self._rgb = codec.rgb_transport(values["rgb_transport"])  # ValueError names the allowed values
        config = AdaptationConfig.from_parameters(values)
        model, metadata = load_model(values["arch"], values["checkpoint"], values["input_size"])
        self._base_provenance = metadata
        # The engine trains its own copy; checkpoint saves rebuild a scratch model from this.
        self._arch, self._model_config = model.arch, dict(model.config)
        self._engine = AdaptationEngine(
            model,
            config,
            base_frames=load_base_frames(values["base_data"]),
            device=resolve_device(values["device"]),
            on_update=self._on_engine_update,
        )
        self._checkpoint_dir = values["checkpoint_dir"]
        self._max_pixels = values["max_pixels"]
        self._pairer: StampPairer[Image | CompressedImage] = StampPairer(
            values["sync_tolerance"], values["sync_queue_size"]
        )
        self._stamp_guards = {
            topic: StampGuard(max_future=values["max_future_stamp"], reset_after=values["time_reset_threshold"])
            for topic in ("image", "depth")
        }
        self._drops = DropCounter(values["log_throttle_sec"])
        self._time_resets = 0
        self._switches_logged = 0
        self._pair_rate = RateMeter()
        # the last accepted camera_info's intrinsics; None = the canonical camera
        self._intrinsics: Intrinsics | None = None
        self._save_lock = threading.Lock()
        self._room_folder = self._open_room_memory(values["room_memory_dir"], values["room_save_period"])

        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        self._weights_pub = self.create_publisher(UInt8MultiArray, "weights", WEIGHTS_QOS)
        self._rooms_pub = self.create_publisher(UInt8MultiArray, "rooms", WEIGHTS_QOS)
        self._rooms_broadcast = RoomBroadcast(self._engine.memory, self._publish_rooms,
                                              period_s=ROOMS_PUBLISH_PERIOD_S, on_error=self._on_rooms_publish_error)
        self._version_pub = self.create_publisher(UInt32, "~/weights_version", DIAGNOSTICS_QOS)
        self._loss_pub = self.create_publisher(Float32, "~/loss", DIAGNOSTICS_QOS)
        self._rmse_pub = self.create_publisher(Float32, "~/holdout_rmse", DIAGNOSTICS_QOS)
        self._fill_pub = self.create_publisher(Float32, "~/buffer_fill", DIAGNOSTICS_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)

        image_qos_profile = image_qos(values["image_reliability"])
        # Raw pairs are decoded in the callback; compressed ones on this thread (module docstring).
        self._decoder: LatestWorker[Pair] | None = None
        if self._rgb.topic_suffix:
            self._decoder = LatestWorker(self._offer_pair, on_error=self._on_decode_error, name="pair decoding")
        # image_transport's convention: the compressed stream is the remapped colour topic + "/compressed"
        image_topic = self.resolve_topic_name("image") + self._rgb.topic_suffix if self._rgb.topic_suffix else "image"
        self.create_subscription(self._rgb.msg_type, image_topic, self._on_image, image_qos_profile)
        self.create_subscription(Image, "depth", self._on_depth, image_qos_profile)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, SENSOR_QOS)
        # every service keeps a deep request queue: a burst of calls is answered in order (qos.SERVICE_QOS)
        for name, callback in (
            ("~/reset", self._on_reset), ("~/save", self._on_save), ("~/rooms/list", self._on_rooms_list),
            ("~/rooms/save", self._on_rooms_save), ("~/rooms/forget", self._on_rooms_forget),
            ("~/rooms/forget_active", self._on_rooms_forget_active),
        ):
            self.create_service(Trigger, name, callback, qos_profile=SERVICE_QOS)
        self.create_timer(values["diagnostics_period"], self._publish_status)
        self._engine.start()
        self._rooms_broadcast.start()
        if self._room_folder is not None:
            self._room_folder.start()
        self.get_logger().info(
            f"adapting {self._arch} ({values['checkpoint'] or 'untrained weights'}) on "
            f"{resolve_device(values['device'])}, "
            f"adaptation {'on' if config.enabled else 'off'}, colour input {self._rgb.name} on {image_topic}, "
            f"weights published as trainer run {self._engine.run_id}"
        )
        if not values["checkpoint"] and config.scope in ("decoder", "decoder+tail"):
            self.get_logger().warn(
                f"no checkpoint: scope '{config.scope}' keeps the untrained encoder as it is; "
                "set scope to 'all' for a cold start"
            )

    @property
    def engine(self) -> AdaptationEngine:
        """The adaptation engine (``live`` connects it to the estimator in-process)."""
        return self._engine

    def stats(self) -> dict[str, Any]:
        """Return the node's counters and the engine's statistics."""
        rgb_pending, depth_pending = self._pairer.pending()
        return {
            "pairs": self._pairer.paired,
            "pair_rate_hz": self._pair_rate.rate(),
            "unpaired_discarded": self._pairer.discarded,
            "unpaired_pending": rgb_pending + depth_pending,
            "dropped": self._drops.counts(),
            "time_resets": self._time_resets,
            **self._engine.stats(),
            "room": self.room_in_force(),
            "room_memory_dir": "none" if self._room_folder is None else str(self._room_folder.folder),
            "room_memory_error": "" if self._room_folder is None else self._room_folder.last_error,
            "rooms_published": self._rooms_broadcast.sent,
        }

    def room_in_force(self) -> str:
        """Return the remembered room in force, ``base``, or ``adapted, not remembered``."""
        room = self._engine.room
        if room is not None:
            return room
        return "adapted, not remembered" if self._engine.adapted else "base"

    def destroy_node(self) -> None:
        """Stop the decoding and training workers, save the room memory, then destroy the node."""
        if self._decoder is not None:
            self._decoder.close()
        self._engine.stop()
        self._rooms_broadcast.close()
        if self._room_folder is not None:
            try:
                written = self._room_folder.close()
            except OSError:
                self.get_logger().error(f"{self._room_folder.last_error}; the rooms learnt since the last save are lost")
            else:
                if written:
                    self.get_logger().info(f"room memory: {len(written)} rooms saved to {self._room_folder.folder}")
            self._room_folder = None
        super().destroy_node()

    def _open_room_memory(self, value: str, period_s: float) -> RoomFolder | None:
        """Load the room memory from ``room_memory_dir``; None when persistence is off.

        Raises:
            ValueError: the path exists and is not a directory.
        """
        folder = parameters.room_memory_folder(value)
        if folder is None:
            self.get_logger().info(f"room memory: not persisted (room_memory_dir: {parameters.ROOM_MEMORY_OFF})")
            return None
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"room_memory_dir {str(folder)!r} exists and is not a directory")
        store = RoomFolder(self._engine.memory, folder, period_s=period_s, on_error=self._on_room_save_error)
        try:
            loaded, problems = store.load()
        except OSError as exc:
            loaded, problems = [], [f"{folder}: cannot be read ({exc})"]
        for problem in problems:
            self.get_logger().warning(f"room memory: {problem}; the file is left as it is, the node goes on without it")
        self.get_logger().info(
            f"room memory: {len(loaded)} rooms loaded from {folder}" + (f" ({', '.join(loaded)})" if loaded else "")
        )
        return store

    def _on_room_save_error(self, reason: str) -> None:
        """Log a failed background save (from the saver thread; it retries every period)."""
        self.get_logger().error(f"{reason}; retrying", throttle_duration_sec=60.0)

    # ------------------------------------------------------------------ inputs
    def _on_camera_info(self, msg: CameraInfo) -> None:
        """Keep a checked calibration for the next frames; refuse an implausible one (estimator's rule)."""
        try:
            self._intrinsics = codec.camera_info_intrinsics(msg)
        except ValueError as exc:
            self._drop("camera_info_invalid", f"{exc}; the previous calibration stays in force")

    def _on_image(self, msg: Image | CompressedImage) -> None:
        if self._check_stamp("image", msg):
            self._process(self._pairer.add_rgb(_stamp(msg), msg))

    def _on_depth(self, msg: Image) -> None:
        if self._check_stamp("depth", msg):
            self._process(self._pairer.add_depth(_stamp(msg), msg))

    def _check_stamp(self, topic: str, msg: Image | CompressedImage) -> bool:
        guard = self._stamp_guards[topic]
        resets = guard.resets
        reason = guard.check(_stamp(msg), self.get_clock().now().nanoseconds * 1e-9)
        if reason is not None:
            self._drop(f"{topic}_{reason}", f"stamp {_stamp(msg):.6f}")
        elif guard.resets != resets:
            # This topic's unpaired messages belong to the old timeline and must not pair
            # with the new one's (a restarted simulation reuses stamps for other images);
            # the other topic's are discarded when its own guard sees the reset.
            self._pairer.clear("rgb" if topic == "image" else "depth")
            self._time_resets += 1
            self.get_logger().info(
                f"time reset on {topic}: stamp {_stamp(msg):.6f} starts a new timeline (looped bag, restarted "
                f"simulation); its unpaired messages discarded; {self._time_resets} so far, in /diagnostics",
                throttle_duration_sec=self._drops.throttle_sec,
            )
        return reason is None

    def _process(self, pair: Pair[Image | CompressedImage] | None) -> None:
        if pair is None:
            return
        self._pair_rate.tick()
        if self._decoder is None:
            self._offer_pair(pair)
        elif self._decoder.offer(pair):
            self._drop("pair_stale", "decoding fell behind the pairs; the newest pair replaced one not yet decoded")

    def _offer_pair(self, pair: Pair[Image | CompressedImage]) -> None:
        frame = self._decode(pair.rgb, pair.depth)
        if frame is not None:
            self._engine.offer(frame)

    def _on_decode_error(self, exc: BaseException) -> None:
        detail = "".join(traceback.format_exception(exc)).rstrip()
        self._drop("internal_error", f"unexpected error decoding a pair, the next one goes on:\n{detail}")

    def _decode(self, rgb_msg: Image | CompressedImage, depth_msg: Image) -> Frame | None:
        """Decode a pair into a Frame, or count and log why it is dropped."""
        try:
            rgb = self._rgb.decode(rgb_msg, max_pixels=self._max_pixels)
        except codec.ImageDecodeError as exc:
            self._drop(f"image_{exc.reason}", str(exc))
            return None
        try:
            depth = codec.image_to_depth(depth_msg, max_pixels=self._max_pixels)
        except codec.ImageDecodeError as exc:
            self._drop(f"depth_{exc.reason}", str(exc))
            return None
        if depth.shape != rgb.shape[:2]:
            self._drop("size_mismatch", f"RGB {rgb.shape[1]}x{rgb.shape[0]}, depth {depth.shape[1]}x{depth.shape[0]}")
            return None
        if not np.isfinite(depth).any():
            self._drop("depth_all_invalid", f"depth stamped {_stamp(depth_msg):.6f} has no valid pixel")
            return None
        return Frame(
            rgb=rgb, depth=depth, stamp=_stamp(rgb_msg), intrinsics=self._intrinsics,
            name=rgb_msg.header.frame_id,
        )

    def _drop(self, reason: str, detail: str) -> None:
        self._drops.report(self.get_logger(), reason, detail, "an input")

    # ----------------------------------------------------------------- outputs
    def _on_engine_update(self, version: int, payload: bytes) -> None:
        """Publish a new weights version (called from the engine's worker thread)."""
        data = array.array("B")
        data.frombytes(payload)  # the field setter's fast path; bytes would be checked item by item
        self._weights_pub.publish(UInt8MultiArray(data=data))
        self._version_pub.publish(UInt32(data=version))
        self.get_logger().info(f"published weights version {version} ({len(payload) / 1e6:.1f} MB)")
        switches = self._engine.stats()["rounds_switched"]
        if switches > self._switches_logged:
            self._switches_logged = switches
            self.get_logger().info(
                f"switched to {self.room_in_force()}: better than the weights in force on the newest frames "
                f"(change check or a round's selection); version {version} holds it in full"
            )

    def _publish_rooms(self, blob: bytes) -> None:
        """Publish the room memory on ``rooms`` (from the broadcast thread)."""
        data = array.array("B")
        data.frombytes(blob)  # the field setter's fast path, as for weights
        self._rooms_pub.publish(UInt8MultiArray(data=data))
        self.get_logger().info(f"published the room memory ({len(self._engine.memory)} rooms, {len(blob) / 1e6:.2f} MB)")

    def _on_rooms_publish_error(self, exc: BaseException) -> None:
        """Log a failed ``rooms`` publication (broadcast thread; it retries next period)."""
        if self.context.ok():
            self.get_logger().error(f"room memory not published: {type(exc).__name__}: {exc}; retrying",
                                    throttle_duration_sec=60.0)

    def _publish_status(self) -> None:
        stats = self.stats()
        self._version_pub.publish(UInt32(data=stats["version"]))
        self._loss_pub.publish(Float32(data=float(stats["last_loss"])))
        self._rmse_pub.publish(Float32(data=float(stats["last_holdout_rmse_after"])))
        self._fill_pub.publish(Float32(data=float(stats["buffer_fill"])))
        stats = self.stats()
        values, drops = split_drops(stats)
        if stats["last_error"]:
            level, message = DiagnosticStatus.ERROR, f"training error: {stats['last_error']}"
        elif stats["room_memory_error"]:
            level, message = DiagnosticStatus.WARN, stats["room_memory_error"]
        elif drops:
            level, message = DiagnosticStatus.WARN, f"{sum(drops.values())} inputs dropped"
        elif stats["pairs"] == 0:
            level, message = DiagnosticStatus.WARN, "no RGB/depth pairs received"
        else:
            state = "adapting" if stats["enabled"] else "adaptation off"
            level, message = DiagnosticStatus.OK, f"{state}, weights version {stats['version']}, room {stats['room']}"
        status = build_status(f"{self.get_name()}: online adaptation", self.get_fully_qualified_name(), level,
                              message, values)
        self._diag_pub.publish(build_array(self.get_clock().now().to_msg(), [status]))

    # ---------------------------------------------------------------- services
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        version = self._engine.reset()
        response.success = True
        response.message = f"base weights restored as version {version}"
        self.get_logger().info(response.message)
        return response

    def _on_save(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            path = self.save_checkpoint()
        except (OSError, ValueError, TypeError, RuntimeError) as exc:  # RuntimeError: "~user" not expandable
            response.success = False
            response.message = f"checkpoint not saved: {exc}"
            self.get_logger().error(response.message)
            return response
        response.success = True
        response.message = str(path)
        self.get_logger().info(f"saved checkpoint {path}")
        return response

    def _on_rooms_list(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        folder = None if self._room_folder is None else str(self._room_folder.folder)
        response.success = True
        response.message = self._engine.memory.describe(in_force=self.room_in_force(), folder=folder)
        return response

    def _on_rooms_save(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self._room_folder is None:
            response.success = False
            response.message = f"room memory not persisted (room_memory_dir: {parameters.ROOM_MEMORY_OFF})"
            return response
        try:
            written = self._room_folder.save()
        except (OSError, ValueError) as exc:
            response.success = False
            response.message = self._room_folder.last_error or f"room memory not saved: {exc}"
            self.get_logger().error(response.message)
            return response
        response.success = True
        response.message = (
            f"{len(written)} rooms saved to {self._room_folder.folder}: {', '.join(p.name for p in written) or '-'}"
        )
        self.get_logger().info(response.message)
        return response

    def _on_rooms_forget(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        return self._forget(None, response)

    def _on_rooms_forget_active(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        room = self._engine.room
        if room is None:
            response.success = False
            response.message = f"no remembered room in force (room: {self.room_in_force()}); nothing forgotten"
            return response
        return self._forget(room, response)

    def _forget(self, room: str | None, response: Trigger.Response) -> Trigger.Response:
        """Forget ``room`` (every room when None), delete the files, answer what happened."""
        names = self._engine.forget(room)
        response.success = True
        response.message = f"forgot {len(names)} rooms ({', '.join(names) or '-'})"
        if self._room_folder is not None:
            try:
                self._room_folder.save(changed_only=True)  # deletes the forgotten rooms' files
            except (OSError, ValueError) as exc:
                response.success = False
                response.message += f"; their files not deleted: {exc}"
            else:
                response.message += f"; their files deleted from {self._room_folder.folder}"
        response.message += "; the weights in force stay until the next selection (~/reset returns to the base)"
        (self.get_logger().info if response.success else self.get_logger().error)(response.message)
        return response

    def save_checkpoint(self) -> Path:
        """Write the weights in force to a new checkpoint in ``checkpoint_dir``, atomically.

        Returns:
            The checkpoint's path, ``<arch>_v<version>_<UTC time>.safetensors``.

        Raises:
            OSError: the directory cannot be created or written (the reason says why).
            models.CheckpointError: the weights hold NaN/inf.
        """
        version, state = self._engine.state_dict()
        directory = Path(self._checkpoint_dir or DEFAULT_CHECKPOINT_DIR).expanduser()
        when = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        path = directory / f"{self._arch}_v{version}_{when}.safetensors"
        provenance = {
            "source": "online_trainer",
            "weights_version": version,
            "base": self._base_provenance.get("provenance", {}),
            "adaptation": self._engine.config.to_dict(),
        }
        with self._save_lock:  # a scratch model for the file: the engine trains its own copy
            directory.mkdir(parents=True, exist_ok=True)
            model = models.build_model(self._arch, **self._model_config)
            with torch.no_grad():
                model.load_state_dict(state)
            models.save_checkpoint(path, model, provenance=provenance)
        return path

    # -------------------------------------------------------------- parameters
    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate live changes as a whole configuration (rclpy checks types, ranges, read-only)."""
        changes = {p.name: p.value for p in params}
        problem = check_changes(params)
        if problem:
            return refuse(problem)
        try:
            self._engine.config.replace(**config_fields(changes))
        except ValueError as exc:
            return refuse(str(exc))
        problem = checkpoint_dir_problem(changes.get("checkpoint_dir", ""))
        return refuse(problem) if problem else accept()

    def _on_parameters_set(self, params: list[Parameter]) -> None:
        """Apply accepted live changes."""
        changes = {p.name: p.value for p in params}
        engine_changes = config_fields(changes)
        if "adaptation_enabled" in changes:
            self.get_logger().info(f"adaptation {'enabled' if changes['adaptation_enabled'] else 'disabled'}")
        if engine_changes:
            self._engine.configure(**engine_changes)
        self._checkpoint_dir = changes.get("checkpoint_dir", self._checkpoint_dir)
        self._max_pixels = changes.get("max_pixels", self._max_pixels)
        if "sync_tolerance" in changes:
            self._pairer.tolerance = changes["sync_tolerance"]
        for guard in self._stamp_guards.values():
            guard.max_future = changes.get("max_future_stamp", guard.max_future)
            guard.reset_after = changes.get("time_reset_threshold", guard.reset_after)
        if "log_throttle_sec" in changes:
            self._drops.throttle_sec = changes["log_throttle_sec"]


def main(args: list[str] | None = None) -> None:
    """Run the ``online_trainer`` node until Ctrl-C or SIGTERM."""
    spin_nodes(lambda: [OnlineTrainerNode()], NODE_NAME, args)
