"""The ``depth_estimator`` node: metric depth from every RGB frame, with live weight updates.

Subscribed topics
    ``image`` (sensor_msgs/Image): rgb8, bgr8, rgba8, bgra8 or mono8 (16-bit
    colour too), any row padding, either byte-order flag. Sensor-data QoS,
    keep-last 1: the node always works on the newest frame; a frame replaced
    before inference reached it is dropped and counted (``dropped_stale``).
    ``image/compressed`` instead with ``rgb_transport: compressed``
    (sensor_msgs/CompressedImage, JPEG or PNG as image_transport's ``compressed``
    plugin publishes it; the topic is ``image`` as remapped, plus ``/compressed``),
    decoded in the inference thread like a raw image.
    ``camera_info`` (sensor_msgs/CameraInfo): intrinsics for the metric scale and
    ``depth/points``, checked on arrival (``codec.camera_info_intrinsics``: finite,
    horizontal field of view 10-170 degrees, ``fy / fx`` 0.5-2, principal point inside
    the image, sides 16-65536 px); an implausible one is dropped and counted
    (``camera_info_invalid``), the last accepted one staying in force. ``K[0] == 0``
    (uncalibrated) means the canonical camera.
    ``weights`` (std_msgs/UInt8MultiArray, reliable, transient-local): weight
    payloads of the online trainer (``adaptation.export_payload``), applied
    between two frames; a late or restarted estimator gets the latest at once.
    A payload is refused, counted (``weights_rejected``, and by reason
    ``weights_rejected_<too_large|invalid|stale>``) and logged at most once per
    ``log_throttle_sec`` per reason, the weights in force staying, when it is larger
    than ``max_payload_bytes`` (checked before anything is copied or parsed), not a
    well-formed payload for this model, or not newer than the version in force of
    the same trainer run (a new run's version 1 is accepted). After refusing a
    payload of 1 MiB or more the node collects garbage and trims the heap
    (``large_messages.release_memory``) once the message is freed. The DDS reader
    keeps a buffer as large as the largest message it received until it is
    destroyed, so after refusing a payload over ``max_payload_bytes`` or of 32 MiB
    or more the subscription is re-created, *volatile* (the publisher's
    transient-local history would hand the same payload back): a payload published
    in the moment it takes is missed until the next version.

    ``rooms`` (std_msgs/UInt8MultiArray, reliable, transient-local, only with
    ``room_recognition``): the trainer's whole room memory (``RoomMemory.to_bytes``),
    replacing the one received before. A blob larger than ``max_payload_bytes``, not a
    memory of this model (corrupt, another format or architecture) is refused, counted
    (``rooms_rejected_<too_large|invalid>``) and logged throttled; rooms with bad tensors
    are left out with a warning.

    ``sensor_depth`` (sensor_msgs/Image, with ``publish_filled`` or ``sensor_scale``): the
    sensor's depth *registered* to the colour camera (same field of view), 16UC1 mm or
    32FC1 m; the newest :data:`SENSOR_DEPTH_HISTORY` are kept and decoded only when a frame
    pairs with one (within ``filled_sync_tolerance``). Same QoS as ``image``.

Published topics (the images, their camera_info and ``depth/points`` reliable, volatile,
keep-last 10: ``qos.IMAGE_PUBLISHER_QOS``, as image_transport publishes; reliable and
best-effort subscriptions both match it)
    ``depth/image`` (sensor_msgs/Image): 32FC1 metres with NaN invalid, or 16UC1
    millimetres with 0 invalid (``depth_encoding``); with ``sensor_scale``, while sensor
    depth arrives, multiplied by the sensor's depth ratio of the last predicted frames
    (:class:`~depth_estimator_ros.adaptation.sensor_scale.SensorScale`: each frame, after
    it is published, is compared with its sensor depth for the frames after it); the input's size and header
    (stamp and frame_id). Named so that ``depth/camera_info`` is its image_transport
    sibling (``image_transport::getCameraInfoTopic``): RViz's DepthCloud and
    depth_image_proc find the camera_info without a remap. (Until issue 25 it was ``depth``.)
    ``depth/camera_info`` (sensor_msgs/CameraInfo): with every ``depth/image``, same header;
    ``camera_info``'s intrinsics scaled to the depth image's size, or the canonical
    camera's the depth is scaled for until one arrives (``codec.depth_camera_info``).
    ``depth/colored`` (sensor_msgs/Image): rgb8 colour map of ``depth/image`` (turbo,
    ``colormap_min_depth`` .. ``colormap_max_depth``, black = invalid); computed
    only while someone subscribes.
    ``depth/points`` (sensor_msgs/PointCloud2): x, y, z float32 in the image's
    optical frame, from the predicted depth and ``camera_info``; an *organized*
    cloud of ``ceil(H / points_stride)`` x ``ceil(W / points_stride)`` points with
    NaN points where depth is invalid (``is_dense`` false), published when
    ``publish_points`` is true and camera_info has been received.
    ``depth/filled/image`` (sensor_msgs/Image, with ``publish_filled``): 32FC1 metres, NaN
    invalid, at the sensor depth's size with the colour image's header: the sensor
    depth stamped nearest the frame (within ``filled_sync_tolerance``) where it
    measured, bit for bit, and the prediction, resized to it and scaled to the
    sensor around each hole, in its holes (``learning.fill_depth``). A frame without
    such a sensor depth gets none (``filled_unpaired``).
    ``depth/filled/camera_info`` (sensor_msgs/CameraInfo): with every filled frame, same
    header, ``camera_info``'s intrinsics scaled to the *sensor depth's* size (which may
    differ from ``depth/image``'s): the image_transport sibling of both filled images.
    ``depth/filled/mask`` (sensor_msgs/Image, mono8, same header and size): 255
    measured, 128 filled from the prediction, 0 neither. The three are computed only
    while someone subscribes to one of the images, in the inference thread after
    ``depth/image`` is published (``fill_mean_s`` in ``/diagnostics``). (Until issue 25 the
    images were ``depth/filled`` and ``depth/filled_mask``, without a camera_info.)
    ``/diagnostics`` (diagnostic_msgs/DiagnosticArray), every
    ``diagnostics_period`` s: input and output rates, latency (stamp to publish,
    and inference alone), where a frame's time goes (``stage_*_mean_s``: stamp
    to the image callback, wait for the inference thread, decode, predict,
    encode + publish), frames in / processed / dropped by reason, weights
    version and rejected payloads, the sensor depth counters (``sensor_depth_in``,
    ``sensor_scale``: the factor on the last frame, ``sensor_scale_pairs``, ``frames_filled``,
    ``filled_unpaired``: frames that wanted a sensor depth and had none near in time,
    ``fill_mean_s`` / ``fill_max_s``, ``scale_mean_s``: pairing, decoding and comparing a
    sensor depth for the scale, in the inference thread after publishing); with ``room_recognition``: ``room`` (the recognised
    room in force, ``base``, or ``trainer weights`` after a payload), ``room_similarity``,
    ``room_recognitions`` (swaps made), ``recognition_held``, ``rooms_received``,
    ``rooms_rejected*``, ``recognition_mean_s`` (one descriptor).

Room recognition (``room_recognition``; for an estimator without a trainer with sensor
depth): every ``recognition_period`` frames the inference thread, after publishing the
frame's depth, describes the frame with a base copy of the encoder and recognises the
room from the last 5 descriptors (:class:`~depth_estimator_ros.adaptation.recognition.RoomRecognizer`);
when the room (or the base, when no room is confident) differs from what is in force its
weights are loaded over the base with :meth:`DepthEstimatorNode.apply_state`, the one
weight path, between two frames. For ``recognition_hold`` seconds after a ``weights``
payload recognition changes nothing.

Parameters
    Every row of :mod:`depth_estimator_ros.parameters` for this node (type, default,
    range, live or read-only, description; the README's node reference lists them):
    the model and input ones shared with the trainer, and ``backend``,
    ``trt_cache_dir``, ``depth_encoding``, ``publish_points``, ``points_stride``,
    ``colormap_min_depth`` / ``colormap_max_depth``, ``max_payload_bytes``, ``publish_filled`` (read-only: it
    decides the ``sensor_depth`` subscription, as ``sensor_scale`` at start-up), ``filled_sync_tolerance``, ``sensor_scale``, ``room_recognition``
    (read-only: it decides the ``rooms`` subscription), ``recognition_period``, ``recognition_hold``.
    ``torch_threads`` is applied by :func:`main`.

Threads: the image callback only hands the newest message to the inference
thread (:class:`~depth_estimator_ros.ros.latest.LatestWorker`, outside the rclpy
executor), which decodes, predicts and publishes; a frame replaced before the
thread reached it is a ``stale`` drop. Weight payloads are validated in the
executor's thread and their tensors swapped in over the base under the
predictor's lock (only the tensors that change), so inference never waits for a
payload to decode. An unexpected error in
the inference thread is logged and counted (``dropped_internal_error``) and the
next frame is processed as usual.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header, UInt8MultiArray

from depth_estimator_ros import models, parameters
from depth_estimator_ros.adaptation.payload import PayloadError, RunOrder, check_payload, read_payload
from depth_estimator_ros.adaptation.recognition import BASE_STATE, RoomRecognizer
from depth_estimator_ros.adaptation.rooms import RoomMemoryError
from depth_estimator_ros.adaptation.sensor_scale import SensorScale
from depth_estimator_ros.learning.device import resolve_device
from depth_estimator_ros.learning.predictor import Predictor
from depth_estimator_ros.ros import codec, filled
from depth_estimator_ros.ros.diagnostics import (
    DropCounter,
    LatencyMeter,
    RateMeter,
    build_array,
    build_status,
    split_drops,
)
from depth_estimator_ros.ros.large_messages import release_memory
from depth_estimator_ros.ros.latest import LatestWorker
from depth_estimator_ros.ros.pairing import StampGuard, StampHistory
from depth_estimator_ros.ros.params import (
    accept,
    check_changes,
    declare_parameters,
    node_descriptors,
    refuse,
)
from depth_estimator_ros.ros.qos import (
    DIAGNOSTICS_QOS,
    IMAGE_PUBLISHER_QOS,
    SENSOR_QOS,
    WEIGHTS_LIVE_QOS,
    WEIGHTS_QOS,
    image_qos,
)
from depth_estimator_ros.ros.runner import load_model, spin_nodes, torch_thread_count

__all__ = ["DepthEstimatorNode", "colorize_depth", "depth_to_points", "parameter_descriptors", "main"]

NODE_NAME = parameters.ESTIMATOR

#: Refused weight payloads at least this large are followed by :func:`release_memory`.
RELEASE_AFTER_BYTES = 1024 * 1024
#: ... and at least this large (or over ``max_payload_bytes``) by a new ``weights`` subscription.
RESUBSCRIBE_AFTER_BYTES = 32 * 1024 * 1024


def parameter_descriptors() -> dict[str, ParameterDescriptor]:
    """Return the descriptors of every parameter the node declares (rows of ``depth_estimator_ros.parameters``)."""
    return node_descriptors(NODE_NAME)


def full_payload_limit(model: torch.nn.Module) -> int:
    """Return the ``max_payload_bytes`` that 0 stands for: 1.1 x a full payload of ``model`` + 1 MiB.

    A full payload (every tensor, what ``~/reset`` publishes) is the state dict's bytes
    plus a header of well under 1 MiB.
    """
    tensor_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return int(1.1 * tensor_bytes) + 1024 * 1024


def _colormap_problem(low: float, high: float) -> str:
    """Return why a colour-map range is unusable, or ``""``."""
    if high > low:
        return ""
    return f"colormap_max_depth ({high}) must be greater than colormap_min_depth ({low})"


def colorize_depth(depth: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """Map depth to a turbo colour image.

    Args:
        depth: ``(H, W)`` float32 metres, NaN invalid.
        min_depth: metres shown with the first colour.
        max_depth: metres shown with the last colour (``> min_depth``).

    Returns:
        ``(H, W, 3)`` uint8 RGB; invalid pixels are black.
    """
    scale = 255.0 / (max_depth - min_depth)
    with np.errstate(invalid="ignore"):
        levels = np.clip((depth - min_depth) * scale, 0.0, 255.0)
    invalid = np.isnan(levels)
    levels[invalid] = 0.0
    colored = cv2.applyColorMap(levels.astype(np.uint8), cv2.COLORMAP_TURBO)
    rgb = cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)
    rgb[invalid] = 0
    return rgb


def depth_to_points(depth: np.ndarray, info: CameraInfo, header: Header, stride: int) -> PointCloud2:
    """Back-project a depth image into an organized point cloud.

    Args:
        depth: ``(H, W)`` float32 metres, NaN invalid.
        info: intrinsics; ``K`` is rescaled when ``info`` is for another image size.
        header: stamp and frame_id of the cloud (the image's optical frame).
        stride: keep every ``stride``-th pixel in each direction.

    Returns:
        ``PointCloud2`` of ``ceil(H / stride)`` rows by ``ceil(W / stride)`` columns,
        fields x, y, z float32 metres; invalid pixels are NaN points.
    """
    height, width = depth.shape
    sx = width / info.width if info.width else 1.0
    sy = height / info.height if info.height else 1.0
    fx, fy = info.k[0] * sx, info.k[4] * sy
    cx, cy = (info.k[2] + 0.5) * sx - 0.5, (info.k[5] + 0.5) * sy - 0.5
    z = depth[::stride, ::stride]
    v, u = np.mgrid[0:height:stride, 0:width:stride].astype(np.float32)
    xyz = np.empty(z.shape + (3,), dtype=np.float32)
    xyz[..., 0] = (u - cx) * z / fx
    xyz[..., 1] = (v - cy) * z / fy
    xyz[..., 2] = z
    cloud = PointCloud2(header=header, height=z.shape[0], width=z.shape[1], is_bigendian=False, is_dense=False)
    cloud.fields = [
        PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, name in enumerate("xyz")
    ]
    cloud.point_step = 12
    cloud.row_step = 12 * z.shape[1]
    cloud.data = xyz.tobytes()
    return cloud


#: Stages of a frame timed for ``/diagnostics`` (``stage_<name>_mean_s``). ``receive``:
#: header stamp to the image callback (camera and node clocks must agree); ``queue``:
#: callback to the inference thread taking the frame; ``decode``: message to RGB array;
#: ``prepare`` / ``forward`` / ``finish``: the Predictor call (resize and upload, the
#: model itself, download + upsampling + range mask; together ``processing_mean_s``);
#: ``publish``: encode and publish the outputs.
STAGES: tuple[str, ...] = ("receive", "queue", "decode", "prepare", "forward", "finish", "publish")


#: ``room`` in ``/diagnostics`` while the weights of a ``weights`` payload are in force.
TRAINER_WEIGHTS = "trainer weights"

#: Sensor depth images kept for ``depth/filled/image`` (the newest; ~0.27 s at 30 Hz, several inference latencies).
SENSOR_DEPTH_HISTORY = 8


class DepthEstimatorNode(Node):
    """Predict metric depth from every RGB frame and publish it like a depth camera.

    See the module docstring for topics, parameters and threading.

    Args:
        subscribe_weights: subscribe to the ``weights`` topic. The ``live`` process
            passes ``False`` and hands weights in-process with :meth:`apply_state`.
        kwargs: passed to ``rclpy.node.Node`` (``context``, ``cli_args``,
            ``parameter_overrides``, ...).

    Raises:
        ValueError: a parameter that cannot be used (unknown architecture, missing
            checkpoint, unavailable device); the message says which.
    """

    def __init__(self, *, subscribe_weights: bool = True, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        values = declare_parameters(self, NODE_NAME)  # ValueError names a value the table does not allow
        problem = _colormap_problem(values["colormap_min_depth"], values["colormap_max_depth"])
        if problem:
            raise ValueError(problem)
        self._rgb = codec.rgb_transport(values["rgb_transport"])  # ValueError names the allowed values
        model, _ = load_model(values["arch"], values["checkpoint"], values["input_size"])
        model.eval()
        checkpoint = str(models.resolve_checkpoint(values["checkpoint"])) if values["checkpoint"] else None
        # The predictor takes the node's one copy of the model; every update reaches it
        # through Predictor.load_over_base (apply_state), which keeps the base values of
        # only the tensors updates replace.
        self._predictor = Predictor(
            model, device=resolve_device(values["device"]), backend=values["backend"], checkpoint=checkpoint,
            threads=torch_thread_count(values["torch_threads"]), trt_cache_dir=values["trt_cache_dir"] or None,
            take_model=True,
        )
        model = self._predictor.model
        self._auto_payload_limit = full_payload_limit(model)
        self._max_payload_bytes = values["max_payload_bytes"] or self._auto_payload_limit
        self._weight_drops = DropCounter(values["log_throttle_sec"])
        self._run_order = RunOrder()
        self._release_timer = None
        self._resubscribe = False

        self._image_qos = image_qos(values["image_reliability"])  # ValueError names the allowed values
        self._max_pixels = values["max_pixels"]
        self._publish_points = values["publish_points"]
        self._depth_encoding = values["depth_encoding"]
        self._points_stride = values["points_stride"]
        self._colormap = (values["colormap_min_depth"], values["colormap_max_depth"])
        self._guard = StampGuard(max_future=values["max_future_stamp"], reset_after=values["time_reset_threshold"])
        self._drops = DropCounter(values["log_throttle_sec"])
        self._rate_in = RateMeter()
        self._rate_out = RateMeter()
        self._latency = LatencyMeter()
        self._processing = LatencyMeter()
        self._stages = {stage: LatencyMeter() for stage in STAGES}
        self._frames_in = 0
        self._frames_processed = 0
        self._frames_colored = 0
        self._camera_info: CameraInfo | None = None
        # normalised focal length from camera_info; None = the canonical camera (models.CANONICAL_FOCAL)
        self._focal: float | None = None

        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._on_parameters_set)
        self._depth_pub = self.create_publisher(Image, "depth/image", IMAGE_PUBLISHER_QOS)
        self._depth_info_pub = self.create_publisher(CameraInfo, "depth/camera_info", IMAGE_PUBLISHER_QOS)
        self._colored_pub = self.create_publisher(Image, "depth/colored", IMAGE_PUBLISHER_QOS)
        self._points_pub = self.create_publisher(PointCloud2, "depth/points", IMAGE_PUBLISHER_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)

        self._init_filled(values)
        self._init_recognition(values, model)

        self._inference = LatestWorker(self._infer, on_error=self._on_inference_error, name="depth inference")
        # image_transport's convention: the compressed stream is the remapped colour topic + "/compressed"
        image_topic = self.resolve_topic_name("image") + self._rgb.topic_suffix if self._rgb.topic_suffix else "image"
        self.create_subscription(self._rgb.msg_type, image_topic, self._on_image, self._image_qos)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, SENSOR_QOS)
        self._weights_sub = None
        if subscribe_weights:
            self._weights_sub = self.create_subscription(UInt8MultiArray, "weights", self._on_weights, WEIGHTS_QOS)
        self.create_timer(values["diagnostics_period"], self._publish_diagnostics)
        self.get_logger().info(
            f"{model.arch} model, input {model.input_size[1]}x{model.input_size[0]}, "
            f"{values['checkpoint'] or 'untrained weights (no checkpoint given)'}, "
            f"device {self._predictor.device}, backend {self._predictor.backend} ({self._predictor.backend_note}), "
            f"colour input {self._rgb.name} on {image_topic}"
        )
        if not values["checkpoint"]:
            self.get_logger().warn("no checkpoint given: predictions come from untrained weights")

    @property
    def weights_version(self) -> int:
        """Version of the weights in force (0 = the base weights)."""
        return self._predictor.version

    @property
    def model(self) -> torch.nn.Module:
        """The model inference runs (read-only use; swap weights with :meth:`apply_state`)."""
        return self._predictor.model

    def stats(self) -> dict[str, object]:
        """Return the counters reported on ``/diagnostics``."""
        mean_latency, max_latency = self._latency.summary()
        mean_processing, max_processing = self._processing.summary()
        return {
            "frames_in": self._frames_in,
            "frames_processed": self._frames_processed,
            "frames_colored": self._frames_colored,
            "dropped": self._drops.counts(),
            "input_rate_hz": self._rate_in.rate(),
            "output_rate_hz": self._rate_out.rate(),
            "latency_mean_s": mean_latency,
            "latency_max_s": max_latency,
            "processing_mean_s": mean_processing,
            "processing_max_s": max_processing,
            **{f"stage_{stage}_mean_s": meter.summary()[0] for stage, meter in self._stages.items()},
            "backend": self._predictor.backend,
            "weights_version": self._predictor.version,
            "weights_rejected": self._weight_drops.total(),
            **{f"weights_rejected_{reason}": count for reason, count in sorted(self._weight_drops.counts().items())},
            "camera": "canonical (no camera_info)" if self._focal is None else "camera_info",
            "camera_scale": 1.0 if self._focal is None else self._focal / models.CANONICAL_FOCAL,
            "time_resets": self._guard.resets,
            **self._filled_stats(),
            **self._recognition_stats(),
        }

    def apply_state(self, version: int, state: Mapping[str, torch.Tensor]) -> None:
        """Swap in new weights between two frames: the one path of every update.

        A ``weights`` payload, the in-process trainer's state and a recognised room all
        come here (:meth:`Predictor.load_over_base`: only the tensors that change are copied).

        Args:
            version: the weights version.
            state: ``state_dict``-like tensors that differ from the base, a partial or
                full set; tensors not in ``state`` return to the base weights.

        Raises:
            ValueError: unknown tensor names or wrong shapes; nothing changes then.
        """
        self._predictor.load_over_base(state, version=version)

    def _on_weights(self, msg: UInt8MultiArray) -> None:
        size = len(msg.data)
        if size > self._max_payload_bytes:  # before a single byte is copied or parsed
            self._refuse_weights("too_large", f"{size} bytes, more than max_payload_bytes = "
                                              f"{self._max_payload_bytes}", size)
            return
        try:
            metadata, tensors = read_payload(memoryview(msg.data))
            stale = self._run_order.problem(metadata)
            if stale:
                self._refuse_weights("stale", stale, size)
                return
            version = check_payload(self._predictor.model, metadata, tensors)
        except PayloadError as exc:
            self._refuse_weights("invalid", str(exc), size)
            return
        self._run_order.accepted(metadata)
        with self._swap_lock:  # a trainer with sensor depth judges better: recognition holds off
            self.apply_state(version, tensors)  # payloads are deltas against the base
            self._weights_at = time.monotonic()
            self._room_in_force, self._room_state = TRAINER_WEIGHTS, None
        self.get_logger().info(f"weights version {version} in force")

    def _refuse_weights(self, reason: str, detail: str, size: int) -> None:
        """Count and (throttled per reason) log a refused payload; release its memory once it is freed."""
        self._weight_drops.report(self.get_logger(), reason, f"{detail}; weights version "
                                  f"{self._predictor.version} stays in force", "a weights payload")
        self._resubscribe = self._resubscribe or reason == "too_large" or size >= RESUBSCRIBE_AFTER_BYTES
        if size >= RELEASE_AFTER_BYTES and self._release_timer is None:
            # the message is freed when this callback returns; release after that, once
            self._release_timer = self.create_timer(0.05, self._release_payload_memory)

    def _release_payload_memory(self) -> None:
        if self._release_timer is not None:
            self.destroy_timer(self._release_timer)
            self._release_timer = None
        if self._resubscribe and self._weights_sub is not None:
            # only destroying the DDS reader frees its buffer of the oversized message
            self.destroy_subscription(self._weights_sub)
            self._weights_sub = self.create_subscription(UInt8MultiArray, "weights", self._on_weights,
                                                         WEIGHTS_LIVE_QOS)
        self._resubscribe = False
        release_memory()

    def _init_recognition(self, values: Mapping[str, Any], model: models.DepthModel) -> None:
        """Create the room recognizer and the ``rooms`` subscription when ``room_recognition`` is set."""
        self._swap_lock = threading.Lock()  # the weights callback and recognition decide one at a time
        self._weights_at: float | None = None
        self._room_in_force = "base"
        self._room_state = BASE_STATE  # what recognition loaded last (None: a payload's weights)
        self._recognition_period = values["recognition_period"]
        self._recognition_hold = values["recognition_hold"]
        self._frames_since_descriptor = 0
        self._room_drops = DropCounter(values["log_throttle_sec"])
        self._rooms_received = self._room_recognitions = self._recognition_held = 0
        self._room_similarity = math.nan
        self._recognition_time = LatencyMeter()
        self._recognizer: RoomRecognizer | None = None
        if values["room_recognition"]:
            self._recognizer = RoomRecognizer(model, device=self._predictor.device)
            self.create_subscription(UInt8MultiArray, "rooms", self._on_rooms, WEIGHTS_QOS)

    def _recognition_stats(self) -> dict[str, object]:
        """Return the room recognition's counters (none without ``room_recognition``)."""
        if self._recognizer is None:
            return {}
        return {
            "room": self._room_in_force, "room_similarity": self._room_similarity,
            "room_recognitions": self._room_recognitions, "recognition_held": self._recognition_held,
            "rooms_known": len(self._recognizer.memory), "rooms_received": self._rooms_received,
            "rooms_rejected": self._room_drops.total(),
            **{f"rooms_rejected_{reason}": count for reason, count in sorted(self._room_drops.counts().items())},
            "recognition_mean_s": self._recognition_time.summary()[0],
        }

    def _on_rooms(self, msg: UInt8MultiArray) -> None:
        """Replace the received room memory with a ``rooms`` blob; refuse a bad one (counted, throttled)."""
        assert self._recognizer is not None, "the rooms subscription exists only with a recognizer"
        size = len(msg.data)
        if size > self._max_payload_bytes:  # before a single byte is copied or parsed
            self._room_drops.report(self.get_logger(), "too_large", f"{size} bytes, more than max_payload_bytes = "
                                    f"{self._max_payload_bytes}; the rooms received before stay", "a room memory")
            return
        try:
            names, problems = self._recognizer.memory.load_bytes(msg.data)
        except RoomMemoryError as exc:
            self._room_drops.report(self.get_logger(), "invalid", f"{exc}; the rooms received before stay",
                                    "a room memory")
            return
        self._rooms_received += 1
        for problem in problems:
            self.get_logger().warning(problem, throttle_duration_sec=self._room_drops.throttle_sec)
        self.get_logger().info(f"room memory received: {len(names)} rooms ({', '.join(names) or '-'})")

    def _recognise(self, rgb: np.ndarray) -> None:
        """Every ``recognition_period`` frames: recognise the room and put its weights in force (inference thread)."""
        if self._recognizer is None:
            return
        self._frames_since_descriptor += 1
        if self._frames_since_descriptor < self._recognition_period:
            return
        self._frames_since_descriptor = 0
        started = time.monotonic()
        name, similarity = self._recognizer.observe(rgb)
        self._recognition_time.add(time.monotonic() - started)
        self._room_similarity = similarity
        state = self._recognizer.state_for(name)
        if math.isnan(similarity) or state is None:  # no rooms yet, or the room went with a new memory
            return
        with self._swap_lock:
            if self._weights_at is not None and time.monotonic() - self._weights_at < self._recognition_hold:
                self._recognition_held += 1
                return
            if state is self._room_state:
                return
            self.apply_state(self._predictor.version, state)
            self._room_in_force, self._room_state = name or "base", state
            self._room_recognitions += 1
        self.get_logger().info(f"room recognised by appearance: {name or 'none confident, the base'} "
                               f"(similarity {similarity:.3f}) in force")

    def _on_camera_info(self, msg: CameraInfo) -> None:
        """Take a checked calibration (``codec.camera_info_intrinsics``); refuse an implausible one.

        A refused camera_info is counted (``dropped_camera_info_invalid``) and logged
        throttled; the last accepted one (or the canonical camera) stays in force.
        """
        try:
            intrinsics = codec.camera_info_intrinsics(msg)
        except ValueError as exc:
            self._drops.report(self.get_logger(), "camera_info_invalid",
                               f"{exc}; the previous calibration stays in force", "a camera_info")
            return
        self._camera_info = msg
        focal = None if intrinsics is None else intrinsics.normalized_focal
        if focal != self._focal:
            self.get_logger().info(
                "camera_info: predicting for " + ("the canonical camera (camera_info has no focal length)"
                                                  if focal is None else
                                                  f"fx {intrinsics.fx:.1f}, fy {intrinsics.fy:.1f} px at "
                                                  f"{intrinsics.width}x{intrinsics.height} (depth x "
                                                  f"{focal / models.CANONICAL_FOCAL:.3f} of the canonical camera)"))
        self._focal = focal

    def _on_image(self, msg: Image | CompressedImage) -> None:
        arrived = time.monotonic()
        self._frames_in += 1
        self._rate_in.tick()
        stamp = codec.stamp_seconds(msg.header.stamp)
        now = self.get_clock().now().nanoseconds * 1e-9
        resets = self._guard.resets
        reason = self._guard.check(stamp, now)
        if reason is not None:
            self._drop(reason, f"stamp {stamp:.6f}")
            return
        if self._guard.resets != resets:
            self.get_logger().info(
                f"time reset: stamp {stamp:.6f} starts a new timeline (looped bag, restarted simulation); "
                f"{self._guard.resets} so far, in /diagnostics",
                throttle_duration_sec=self._drops.throttle_sec,
            )
        self._stages["receive"].add(now - stamp)
        if self._inference.offer((msg, arrived)):
            self._drops.record("stale")

    def destroy_node(self) -> None:
        """Stop the inference thread (after the frame in progress), then destroy the node."""
        self._inference.close()
        super().destroy_node()

    def _on_inference_error(self, exc: BaseException) -> None:
        detail = "".join(traceback.format_exception(exc)).rstrip()
        self._drop("internal_error", f"unexpected error in the inference thread, next frame goes on:\n{detail}")

    def _infer(self, item: tuple[Image | CompressedImage, float]) -> None:
        msg, arrived = item
        taken = time.monotonic()
        self._stages["queue"].add(taken - arrived)
        try:
            rgb = self._rgb.decode(msg, max_pixels=self._max_pixels)
        except codec.ImageDecodeError as exc:
            self._drop(exc.reason, str(exc))
            return
        started = time.monotonic()
        self._stages["decode"].add(started - taken)
        timings: dict[str, float] = {}
        try:
            depth, _ = self._predictor.predict_versioned(rgb, focal=self._focal, timings=timings)
        except (RuntimeError, ValueError) as exc:  # e.g. out of GPU memory: skip the frame, keep running
            self._drop("inference_error", str(exc))
            return
        own, stamp, scale = depth, codec.stamp_seconds(msg.header.stamp), self._scale
        if self._sensor_scale_on:
            self._scale_gain = factor = scale.gain(stamp)
            depth = scale.rescale(own, factor)
        predicted = time.monotonic()
        self._processing.add(predicted - started)
        for stage, seconds in timings.items():
            self._stages[stage].add(seconds)
        # The executables end this thread before the context (runner.spin_nodes); a host
        # process that shuts rclpy down first must not get a "context is invalid" error.
        if not self.context.ok():
            return
        try:
            self._publish(msg.header, depth)
        except _rclpy.RCLError:
            if self.context.ok():
                raise
            return
        self._stages["publish"].add(time.monotonic() - predicted)
        fill = self._filled_wanted()
        pairing = time.monotonic()
        sensor = self._paired_sensor(msg.header, own.shape) if fill or self._sensor_scale_on else None
        if sensor is not None:
            if self._sensor_scale_on:
                scale.observe(own, sensor, stamp)
                self._scale_time.add(time.monotonic() - pairing)
            if fill:
                self._publish_filled(msg.header, depth, sensor)
        self._recognise(rgb)

    def _publish(self, header: Header, depth: np.ndarray) -> None:
        self._depth_pub.publish(codec.depth_to_image(depth, header, self._depth_encoding))
        self._depth_info_pub.publish(codec.depth_camera_info(
            header, depth.shape[1], depth.shape[0], self._camera_info, canonical_focal=models.CANONICAL_FOCAL))
        if self._colored_pub.get_subscription_count() > 0:
            self._colored_pub.publish(codec.rgb_to_image(colorize_depth(depth, *self._colormap), header))
            self._frames_colored += 1
        info = self._camera_info
        if self._publish_points and info is not None and info.k[0] > 0 and info.k[4] > 0:
            self._points_pub.publish(depth_to_points(depth, info, header, self._points_stride))
        self._frames_processed += 1
        self._rate_out.tick()
        self._latency.add((self.get_clock().now().nanoseconds - codec.stamp_nanoseconds(header.stamp)) * 1e-9)

    def _init_filled(self, values: Mapping[str, Any]) -> None:
        """Create ``sensor_depth`` and the ``depth/filled/`` outputs when ``publish_filled`` is set."""
        self._filled_tolerance = values["filled_sync_tolerance"]
        self._sensor_depths: StampHistory[Image] = StampHistory(SENSOR_DEPTH_HISTORY)
        self._fill_time = LatencyMeter()
        self._scale_time = LatencyMeter()
        self._sensor_depth_in = self._frames_filled = self._filled_unpaired = 0
        self._filled_pub = self._filled_info_pub = self._filled_mask_pub = None
        self._sensor_scale_on = values["sensor_scale"]
        self._scale = SensorScale(self._predictor.min_depth, self._predictor.max_depth)
        self._scale_gain = 1.0
        if values["publish_filled"] or values["sensor_scale"]:
            self.create_subscription(Image, "sensor_depth", self._on_sensor_depth, self._image_qos)
        if values["publish_filled"]:
            # one camera namespace: the image, its camera_info (at the sensor's size) and the mask beside them
            self._filled_pub = self.create_publisher(Image, "depth/filled/image", IMAGE_PUBLISHER_QOS)
            self._filled_info_pub = self.create_publisher(CameraInfo, "depth/filled/camera_info", IMAGE_PUBLISHER_QOS)
            self._filled_mask_pub = self.create_publisher(Image, "depth/filled/mask", IMAGE_PUBLISHER_QOS)

    def _filled_stats(self) -> dict[str, object]:
        """Return the sensor depth counters: received, the scale and its time, frames filled / unpaired, fill time."""
        mean_fill, max_fill = self._fill_time.summary()
        return {"sensor_depth_in": self._sensor_depth_in, "sensor_scale": self._scale_gain,
                "sensor_scale_pairs": self._scale.pairs, "scale_mean_s": self._scale_time.summary()[0],
                "frames_filled": self._frames_filled, "filled_unpaired": self._filled_unpaired,
                "fill_mean_s": mean_fill, "fill_max_s": max_fill}

    def _on_sensor_depth(self, msg: Image) -> None:
        # Kept undecoded: only a sensor depth a frame is filled from costs a decode.
        self._sensor_depth_in += 1
        self._sensor_depths.add(codec.stamp_seconds(msg.header.stamp), msg)

    def _filled_wanted(self) -> bool:
        """Whether someone subscribes to ``depth/filled/image`` or its mask."""
        return self._filled_pub is not None and (
            self._filled_pub.get_subscription_count() > 0 or self._filled_mask_pub.get_subscription_count() > 0)

    def _paired_sensor(self, header: Header, shape: tuple[int, ...]) -> np.ndarray | None:
        """The sensor depth stamped nearest the frame (within ``filled_sync_tolerance``), decoded, in metres.

        None, counted, when there is none (``filled_unpaired``) or it cannot be used (a drop
        by reason: undecodable, or another aspect ratio than the prediction's ``shape``).
        """
        nearest = self._sensor_depths.nearest(codec.stamp_seconds(header.stamp), self._filled_tolerance)
        if nearest is None:
            self._filled_unpaired += 1
            return None
        try:
            sensor = codec.image_to_depth(nearest[1], max_pixels=self._max_pixels)
        except codec.ImageDecodeError as exc:
            self._drops.report(self.get_logger(), f"sensor_depth_{exc.reason}", str(exc), "a sensor depth image")
            return None
        problem = filled.aspect_problem(sensor.shape, shape)
        if problem:
            self._drops.report(self.get_logger(), "sensor_depth_aspect_mismatch", problem, "a sensor depth image")
            return None
        return sensor

    def _publish_filled(self, header: Header, depth: np.ndarray, sensor: np.ndarray) -> None:
        """Publish the filled depth, its camera_info and its mask for one predicted frame (:meth:`_filled_wanted`).

        Runs in the inference thread.

        Args:
            header: the colour image's header.
            depth: ``(H, W)`` float32 predicted metres (as published), NaN invalid.
            sensor: its sensor depth (:meth:`_paired_sensor`).
        """
        want_filled = self._filled_pub.get_subscription_count() > 0
        want_mask = self._filled_mask_pub.get_subscription_count() > 0
        started = time.monotonic()
        values, mask = filled.fill_outputs(sensor, depth)
        try:
            if want_filled:
                self._filled_pub.publish(codec.depth_to_image(values, header, "32FC1"))
            if want_mask:
                self._filled_mask_pub.publish(codec.mono8_to_image(mask, header))
            self._filled_info_pub.publish(codec.depth_camera_info(
                header, values.shape[1], values.shape[0], self._camera_info, canonical_focal=models.CANONICAL_FOCAL))
        except _rclpy.RCLError:  # the context went down meanwhile (see _infer)
            if self.context.ok():
                raise
            return
        self._frames_filled += 1
        self._fill_time.add(time.monotonic() - started)

    def _drop(self, reason: str, detail: str) -> None:
        self._drops.report(self.get_logger(), reason, detail, "an image")

    def _publish_diagnostics(self) -> None:
        stats = self.stats()
        values, drops = split_drops(stats)
        bad = sum(count for reason, count in drops.items() if reason != "stale")
        if stats["frames_in"] == 0:
            level, message = DiagnosticStatus.WARN, "no images received"
        elif bad:
            level, message = DiagnosticStatus.WARN, f"{bad} bad inputs dropped"
        else:
            level, message = DiagnosticStatus.OK, f"{stats['output_rate_hz']:.1f} Hz"
        name = f"{self.get_name()}: depth estimation"
        status = build_status(name, self.get_fully_qualified_name(), level, message, values)
        self._diag_pub.publish(build_array(self.get_clock().now().to_msg(), [status]))

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate live changes (rclpy checks types, closed ranges and read-only; the table the choices)."""
        changes = {p.name: p.value for p in params}
        problem = check_changes(params) or _colormap_problem(
            changes.get("colormap_min_depth", self._colormap[0]), changes.get("colormap_max_depth", self._colormap[1])
        )
        return refuse(problem) if problem else accept()

    def _on_parameters_set(self, params: list[Parameter]) -> None:
        """Apply accepted live changes."""
        changes = {p.name: p.value for p in params}
        self._colormap = (
            changes.get("colormap_min_depth", self._colormap[0]),
            changes.get("colormap_max_depth", self._colormap[1]),
        )
        self._max_pixels = changes.get("max_pixels", self._max_pixels)
        if "max_payload_bytes" in changes:
            self._max_payload_bytes = changes["max_payload_bytes"] or self._auto_payload_limit
        self._publish_points = changes.get("publish_points", self._publish_points)
        self._depth_encoding = changes.get("depth_encoding", self._depth_encoding)
        self._points_stride = changes.get("points_stride", self._points_stride)
        if "max_future_stamp" in changes:
            self._guard.max_future = changes["max_future_stamp"]
        if "time_reset_threshold" in changes:
            self._guard.reset_after = changes["time_reset_threshold"]
        if "log_throttle_sec" in changes:
            self._drops.throttle_sec = self._weight_drops.throttle_sec = changes["log_throttle_sec"]
            self._room_drops.throttle_sec = changes["log_throttle_sec"]
        self._recognition_period = changes.get("recognition_period", self._recognition_period)
        self._recognition_hold = changes.get("recognition_hold", self._recognition_hold)
        self._filled_tolerance = changes.get("filled_sync_tolerance", self._filled_tolerance)
        if "sensor_scale" in changes:
            # a new one, not a reset: the inference thread may be using the old one at this moment
            self._scale = SensorScale(self._predictor.min_depth, self._predictor.max_depth)
            self._sensor_scale_on = changes["sensor_scale"]
            self._scale_gain = 1.0


def main(args: list[str] | None = None) -> None:
    """Run the ``depth_estimator`` node until Ctrl-C or SIGTERM."""
    spin_nodes(lambda: [DepthEstimatorNode()], NODE_NAME, args)
