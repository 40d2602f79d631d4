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
    ``camera_info`` (sensor_msgs/CameraInfo): intrinsics kept with the frames.

Published topics
    ``weights`` (std_msgs/UInt8MultiArray, reliable, transient-local, keep-last 1):
    after every accepted round and every reset, an ``adaptation.export_payload``
    blob; a late or restarted estimator receives the latest one at once.
    ``~/weights_version`` (std_msgs/UInt32): the version in force, on every update
    and with each diagnostics period.
    ``~/loss``, ``~/holdout_rmse`` (metres, after the last round), ``~/buffer_fill``
    (frames) (std_msgs/Float32), each diagnostics period, for rqt_plot.
    ``/diagnostics`` (diagnostic_msgs/DiagnosticArray): pair rate, drops by reason,
    and the engine's statistics (rounds, outcomes, loss, held-out RMSE, buffer fill,
    last update age).

Services
    ``~/reset`` (std_srvs/Trigger): back to the base weights (published as a new version).
    ``~/save`` (std_srvs/Trigger): write the weights in force to a checkpoint in
    ``checkpoint_dir``, atomically; answers ``success=false`` with the reason when
    the directory cannot be written (read-only, disk full, ...).

Parameters (defaults in ``config/live.yaml``)
    Shared with the estimator: ``arch``, ``checkpoint``, ``input_size``, ``device``,
    ``torch_threads``, ``image_reliability``, ``rgb_transport`` (read-only),
    ``max_pixels``, ``max_future_stamp``,
    ``time_reset_threshold``, ``log_throttle_sec`` (live), ``diagnostics_period``
    (read-only). Own: ``adaptation_enabled`` (bool, live), ``sync_tolerance`` (s,
    live), ``sync_queue_size`` (read-only), ``checkpoint_dir`` (live), and the
    :class:`~depth_estimator_ros.adaptation.AdaptationConfig` fields of the same
    names: live where :data:`~depth_estimator_ros.adaptation.LIVE_FIELDS` says so,
    read-only otherwise. Every live change is validated as a whole
    configuration; a refusal names the reason and leaves everything unchanged.

Threads: callbacks run in the executor's one thread and never wait for training:
image and depth callbacks decode, pair and offer frames; training runs in the
engine's own worker thread; ``~/save`` writes the last accepted weights, which the
engine keeps ready, so a save does not wait for a round in progress.
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

from depth_estimator_ros import models
from depth_estimator_ros.adaptation import (
    LIVE_FIELDS,
    SCOPES,
    AdaptationConfig,
    AdaptationEngine,
)
from depth_estimator_ros.data.frame import Frame
from depth_estimator_ros.learning.device import resolve_device
from depth_estimator_ros.ros import codec
from depth_estimator_ros.ros.diagnostics import (
    DropCounter,
    RateMeter,
    build_array,
    build_status,
)
from depth_estimator_ros.ros.latest import LatestWorker
from depth_estimator_ros.ros.pairing import Pair, StampGuard, StampPairer
from depth_estimator_ros.ros.params import (
    accept,
    declare_parameters,
    describe,
    load_model,
    refuse,
    spin_nodes,
)
from depth_estimator_ros.ros.qos import (
    DIAGNOSTICS_QOS,
    SENSOR_QOS,
    WEIGHTS_QOS,
    image_qos,
)

__all__ = ["OnlineTrainerNode", "parameter_descriptors", "DEFAULT_CHECKPOINT_DIR", "main"]

NODE_NAME = "online_trainer"

#: Where ``~/save`` writes when ``checkpoint_dir`` is empty.
DEFAULT_CHECKPOINT_DIR = Path("~/.ros/depth_estimator_ros/checkpoints")

# AdaptationConfig fields exposed as parameters of the same name ("enabled" is
# `adaptation_enabled`). Base-domain replay draws on the frames of `base_data`.
_ENGINE_FIELDS: tuple[str, ...] = (
    "buffer_capacity", "recent_fraction", "min_new_frames", "max_new_frames", "batch_size",
    "epochs_per_round", "lr", "weight_decay", "scope", "grad_clip", "holdout_frames",
    "accept_tolerance", "subsample", "duplicate_threshold", "min_valid_fraction", "replay_ratio",
    "anchor_weight", "base_replay_fraction", "train_size", "freeze_bn", "feature_cache",
)


def parameter_descriptors() -> dict[str, ParameterDescriptor]:
    """Return the descriptors of every parameter the node declares (defaults come from live.yaml)."""

    def engine(description: str, **kwargs: Any) -> ParameterDescriptor:
        return describe(description, read_only=name not in LIVE_FIELDS, **kwargs)

    out = {
        "arch": describe("model architecture (models.ARCHITECTURES)", read_only=True),
        "checkpoint": describe("base model checkpoint (.safetensors); empty = untrained weights", read_only=True),
        "input_size": describe("[H, W] model input without a checkpoint; [0, 0] = default", read_only=True),
        "device": describe("training device: auto | cpu | cuda", read_only=True, constraints="auto, cpu or cuda"),
        "torch_threads": describe("torch intra-op threads; 0 = half the CPUs", low=0, high=256, integer=True,
                                  read_only=True),
        "image_reliability": describe(
            "QoS reliability of the camera subscriptions: best_effort (matches any camera) or reliable "
            "(reliable cameras only; far fewer lost large images)",
            read_only=True,
            constraints="best_effort or reliable",
        ),
        "rgb_transport": describe(
            "colour input: raw (sensor_msgs/Image on image) or compressed (sensor_msgs/CompressedImage, "
            "JPEG or PNG, on <image>/compressed as image_transport's compressed plugin publishes it)",
            read_only=True,
            constraints="raw or compressed",
        ),
        "max_pixels": describe("images with more pixels are refused before decoding", low=1, high=2**31 - 1,
                               integer=True),
        "max_future_stamp": describe("seconds a stamp may be ahead of the clock; 0 = no check", low=0.0, high=3600.0),
        "time_reset_threshold": describe("a stamp this many seconds back is a time reset", low=0.001, high=1e9),
        "log_throttle_sec": describe("seconds between log lines of one drop reason", low=0.0, high=3600.0),
        "diagnostics_period": describe("seconds between /diagnostics and numeric topics", low=0.05, high=60.0,
                                       read_only=True),
        "adaptation_enabled": describe("run training rounds (frames are still buffered when false)"),
        "sync_tolerance": describe("largest RGB/depth stamp difference of a pair, seconds", low=1e-6, high=1.0),
        "sync_queue_size": describe("unpaired messages kept per topic", low=1, high=1000, integer=True,
                                    read_only=True),
        "checkpoint_dir": describe(f"directory ~/save writes to; empty = {DEFAULT_CHECKPOINT_DIR}"),
        "base_data": describe("frame source of base-domain frames replayed to limit forgetting "
                              "(data.open_source spec); empty = none", read_only=True),
    }
    for name, description, kwargs in (
        ("buffer_capacity", "frames in the replay buffer", {"low": 2, "high": 100000, "integer": True}),
        ("recent_fraction", "share of the buffer kept as the most recent frames", {"low": 0.0, "high": 1.0}),
        ("min_new_frames", "new frames that trigger a round", {"low": 2, "high": 100000, "integer": True}),
        ("max_new_frames", "most new frames one round trains on", {"low": 2, "high": 100000, "integer": True}),
        ("batch_size", "frames per mini-batch", {"low": 1, "high": 1024, "integer": True}),
        ("epochs_per_round", "passes over a round's frames", {"low": 1, "high": 1000, "integer": True}),
        ("lr", "AdamW learning rate", {"low": 0.0, "high": 1.0}),
        ("weight_decay", "AdamW decoupled weight decay", {"low": 0.0, "high": 10.0}),
        ("scope", "trainable parameters: " + " | ".join(SCOPES), {"constraints": ", ".join(SCOPES)}),
        ("grad_clip", "max global gradient norm; 0 = no clipping", {"low": 0.0, "high": 1e6}),
        ("holdout_frames", "newest frames of a round kept out to judge it", {"low": 1, "high": 1000,
                                                                             "integer": True}),
        ("accept_tolerance", "accept a round with held-out RMSE <= (1 + this) x before", {"low": 0.0,
                                                                                          "high": 100.0}),
        ("subsample", "offer every Nth pair to the buffer", {"low": 1, "high": 1000, "integer": True}),
        ("duplicate_threshold", "mean RGB difference (0-255) of a still-camera duplicate; 0 = off",
         {"low": 0.0, "high": 255.0}),
        ("min_valid_fraction", "least share of valid depth pixels of a kept frame", {"low": 0.0, "high": 1.0}),
        ("replay_ratio", "replayed older frames per new training frame", {"low": 0.0, "high": 16.0}),
        ("anchor_weight", "L2-SP pull toward the base weights", {"low": 0.0, "high": 1e6}),
        ("base_replay_fraction", "share of each mini-batch drawn from base_data frames", {"low": 0.0, "high": 0.9}),
        ("train_size", "[H, W] frames are stored and trained at; [0, 0] = model input size", {}),
        ("freeze_bn", "keep BatchNorm statistics fixed during rounds", {}),
        ("feature_cache", "keep the frozen encoder's features of stored frames (decoder-only rounds skip it)", {}),
    ):
        out[name] = engine(description, **kwargs)
    return out


def _engine_value(name: str, value: Any) -> Any:
    """Convert a parameter value to the AdaptationConfig field value."""
    if name == "train_size":
        size = tuple(int(v) for v in value)
        return None if size == (0, 0) else size
    return value


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


def _stamp(msg: Image | CompressedImage) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


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
        values = declare_parameters(self, parameter_descriptors())
        self._rgb = codec.rgb_transport(values["rgb_transport"])  # ValueError names the allowed values
        config = AdaptationConfig(
            enabled=values["adaptation_enabled"],
            **{name: _engine_value(name, values[name]) for name in _ENGINE_FIELDS},
        )
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
        self._pair_rate = RateMeter()
        self._camera_info: CameraInfo | None = None
        self._save_lock = threading.Lock()

        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        self._weights_pub = self.create_publisher(UInt8MultiArray, "weights", WEIGHTS_QOS)
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
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(Trigger, "~/save", self._on_save)
        self.create_timer(values["diagnostics_period"], self._publish_status)
        self._engine.start()
        self.get_logger().info(
            f"adapting {self._arch} ({values['checkpoint'] or 'untrained weights'}) on "
            f"{resolve_device(values['device'])}, "
            f"adaptation {'on' if config.enabled else 'off'}, colour input {self._rgb.name} on {image_topic}"
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
        }

    def destroy_node(self) -> None:
        """Stop the decoding and training workers, then destroy the node."""
        if self._decoder is not None:
            self._decoder.close()
        self._engine.stop()
        super().destroy_node()

    # ------------------------------------------------------------------ inputs
    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

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
            rgb=rgb, depth=depth, stamp=_stamp(rgb_msg), intrinsics=codec.camera_info_intrinsics(self._camera_info),
            name=rgb_msg.header.frame_id,
        )

    def _drop(self, reason: str, detail: str) -> None:
        if self._drops.record(reason):
            self.get_logger().warn(
                f"dropped an input ({reason}): {detail}; further '{reason}' drops are logged "
                f"at most every {self._drops.throttle_sec:g} s and counted in /diagnostics"
            )

    # ----------------------------------------------------------------- outputs
    def _on_engine_update(self, version: int, payload: bytes) -> None:
        """Publish a new weights version (called from the engine's worker thread)."""
        data = array.array("B")
        data.frombytes(payload)  # the field setter's fast path; bytes would be checked item by item
        self._weights_pub.publish(UInt8MultiArray(data=data))
        self._version_pub.publish(UInt32(data=version))
        self.get_logger().info(f"published weights version {version} ({len(payload) / 1e6:.1f} MB)")

    def _publish_status(self) -> None:
        stats = self.stats()
        self._version_pub.publish(UInt32(data=stats["version"]))
        self._loss_pub.publish(Float32(data=float(stats["last_loss"])))
        self._rmse_pub.publish(Float32(data=float(stats["last_holdout_rmse_after"])))
        self._fill_pub.publish(Float32(data=float(stats["buffer_fill"])))
        drops = stats.pop("dropped")
        values = {**stats, **{f"dropped_{reason}": count for reason, count in sorted(drops.items())}}
        if stats["last_error"]:
            level, message = DiagnosticStatus.ERROR, f"training error: {stats['last_error']}"
        elif drops:
            level, message = DiagnosticStatus.WARN, f"{sum(drops.values())} inputs dropped"
        elif stats["pairs"] == 0:
            level, message = DiagnosticStatus.WARN, "no RGB/depth pairs received"
        else:
            state = "adapting" if stats["enabled"] else "adaptation off"
            level, message = DiagnosticStatus.OK, f"{state}, weights version {stats['version']}"
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
        except (OSError, ValueError, TypeError) as exc:
            response.success = False
            response.message = f"checkpoint not saved: {exc}"
            self.get_logger().error(response.message)
            return response
        response.success = True
        response.message = str(path)
        self.get_logger().info(f"saved checkpoint {path}")
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
        engine_changes = {n: _engine_value(n, v) for n, v in changes.items() if n in _ENGINE_FIELDS}
        try:
            self._engine.config.replace(**engine_changes)
        except ValueError as exc:
            return refuse(str(exc))
        directory = changes.get("checkpoint_dir")
        if directory:
            path = Path(directory).expanduser()
            if path.exists() and not path.is_dir():
                return refuse(f"checkpoint_dir {directory!r} exists and is not a directory")
        return accept()

    def _on_parameters_set(self, params: list[Parameter]) -> None:
        """Apply accepted live changes."""
        changes = {p.name: p.value for p in params}
        engine_changes = {n: _engine_value(n, v) for n, v in changes.items() if n in _ENGINE_FIELDS}
        if "adaptation_enabled" in changes:
            engine_changes["enabled"] = changes["adaptation_enabled"]
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
