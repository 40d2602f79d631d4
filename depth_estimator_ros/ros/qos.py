"""QoS profiles of every topic the package uses, in one place.

- :data:`SENSOR_QOS` for camera images and camera_info subscriptions: best effort,
  keep-last 1, volatile (``rclpy.qos.qos_profile_sensor_data`` with depth 1). A
  best-effort subscription matches both best-effort and reliable publishers, and
  a depth of 1 means a node always works on the newest frame and drops stale ones.
- :data:`WEIGHTS_QOS` for the trainer's ``weights``: reliable, transient-local,
  keep-last 1, so an estimator that starts (or restarts) late receives the latest
  weights at once; publisher and subscriber must both use it.
- :data:`WEIGHTS_LIVE_QOS`: the same but volatile, for the estimator's ``weights``
  subscription once it refused an oversized payload (``estimator_node``).
- :data:`IMAGE_PUBLISHER_QOS` for the estimator's image outputs (``depth/image``,
  ``depth/colored``, ``depth/filled/image``, ``depth/filled/mask``), their camera_info and
  ``depth/points``: what ``image_transport`` publishes camera images and their camera_info
  with, ``rmw_qos_profile_default`` (reliable, volatile, keep-last 10). Reliable because a
  reliable subscription (``depth_image_proc``'s, rclpy's and rclcpp's default) never
  matches a best-effort publisher, while a best-effort one (``SENSOR_QOS``, RViz set to
  best effort) matches a reliable publisher.
- :data:`DIAGNOSTICS_QOS` for ``/diagnostics`` and the trainer's numeric topics: rclpy's
  default (reliable, volatile, keep-last 10), kept apart from the images so either can
  change alone.
- :data:`SERVICE_QOS` for the trainer's ``~/save`` and ``~/reset`` servers: reliable,
  keep-last 1000. rclpy's default request queue keeps the last 10 requests, so of a
  burst that arrives while the single executor thread is busy only about 10 were
  answered and the rest never; every request in the queue is answered, in order.
- :data:`PLAYBACK_QOS` for the bag player: reliable and transient-local, the
  strongest offer, so every subscriber matches whatever it requests (best effort
  or reliable, volatile or transient-local); volatile subscribers never receive
  the kept history, transient-local ones (``weights``, ``/tf_static``) do, as
  they would from the original publisher.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from depth_estimator_ros import parameters

__all__ = [
    "IMAGE_RELIABILITY", "SENSOR_QOS", "IMAGE_PUBLISHER_QOS", "WEIGHTS_QOS", "WEIGHTS_LIVE_QOS", "DIAGNOSTICS_QOS",
    "SERVICE_QOS", "PLAYBACK_QOS", "image_qos",
]

#: Values of the nodes' ``image_reliability`` parameter.
IMAGE_RELIABILITY: tuple[str, ...] = parameters.IMAGE_RELIABILITY


def image_qos(reliability: str = "best_effort") -> QoSProfile:
    """Return the keep-last-1, volatile QoS of camera image subscriptions.

    ``best_effort`` matches every camera publisher; ``reliable`` matches only reliable
    ones. With Fast DDS's default 512 KiB shared-memory segment a best-effort reader
    loses most camera-sized images from another process and a reliable one few; with
    the package's profile (``ros.large_messages``) on the sending side best effort loses
    none (README, "Large images over Fast DDS"). Keep-last 1 keeps the newest-frame
    semantics either way.

    Raises:
        ValueError: ``reliability`` not in :data:`IMAGE_RELIABILITY`.
    """
    if reliability not in IMAGE_RELIABILITY:
        raise ValueError(f"image_reliability must be one of {', '.join(IMAGE_RELIABILITY)}, got {reliability!r}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


#: Camera images and camera_info: best effort, keep-last 1, volatile.
SENSOR_QOS = image_qos("best_effort")

#: Image outputs, their camera_info and depth/points: reliable, volatile, keep-last 10, as
#: image_transport publishes camera images: its ``CameraPublisher`` gives the image and its
#: camera_info the same profile, by default ``rmw_qos_profile_default``
#: (ros-perception/image_common, image_transport/src/camera_publisher.cpp). ROS 2 Jazzy's
#: depth_image_proc publishes its depth images with it too and subscribes to depth images
#: and camera_info reliable (depth_image_proc/src/register.cpp:
#: ``image_transport::create_camera_publisher(this, topic, rmw_qos_profile_default, ...)``,
#: ``rmw_qos_profile_default`` for ``depth/image_rect`` and ``depth/camera_info``) or with the
#: publisher's own reliability (``image_proc::getQosProfile``). A best-effort publisher
#: (``rclcpp::SensorDataQoS``) would not match those reliable subscriptions.
IMAGE_PUBLISHER_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

#: Weight payloads: reliable, transient-local, keep-last 1.
WEIGHTS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

#: The estimator's ``weights`` subscription after it refused an oversized payload: reliable,
#: volatile, keep-last 1 (matches the trainer's transient-local publisher; its history, which
#: may still be that payload, is not handed over again).
WEIGHTS_LIVE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

#: ``/diagnostics`` and the trainer's numeric topics: reliable, volatile, keep-last 10.
DIAGNOSTICS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

#: Service servers: reliable, volatile, keep-last 1000 requests (rclpy's default keeps 10).
SERVICE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1000,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

#: Bag playback: reliable, transient-local, keep-last 10 (compatible with every request).
PLAYBACK_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
