"""QoS profiles of the nodes: camera subscriptions keep only the newest frame."""

from __future__ import annotations

import pytest
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSCompatibility,
    QoSPresetProfiles,
    ReliabilityPolicy,
    qos_check_compatible,
    qos_profile_sensor_data,
)

from depth_estimator_ros.ros.qos import (
    DIAGNOSTICS_QOS,
    IMAGE_PUBLISHER_QOS,
    IMAGE_RELIABILITY,
    SENSOR_QOS,
    WEIGHTS_QOS,
    image_qos,
)

#: rmw_qos_profile_default: what image_transport's publishers and depth_image_proc's
#: reliable subscriptions (register.cpp) use.
RMW_DEFAULT = QoSPresetProfiles.DEFAULT.value


@pytest.mark.parametrize(
    ("name", "policy"), [("best_effort", ReliabilityPolicy.BEST_EFFORT), ("reliable", ReliabilityPolicy.RELIABLE)]
)
def test_image_qos_keeps_the_newest_frame_with_the_asked_reliability(name, policy):
    qos = image_qos(name)
    assert qos.reliability == policy
    assert (qos.history, qos.depth, qos.durability) == (HistoryPolicy.KEEP_LAST, 1, DurabilityPolicy.VOLATILE)


def test_image_qos_refuses_unknown_reliability_naming_the_allowed_values():
    with pytest.raises(ValueError, match="best_effort, reliable"):
        image_qos("sometimes")
    assert IMAGE_RELIABILITY == ("best_effort", "reliable")


def test_sensor_qos_is_best_effort_and_weights_are_latched():
    assert SENSOR_QOS.reliability == ReliabilityPolicy.BEST_EFFORT
    assert (WEIGHTS_QOS.reliability, WEIGHTS_QOS.durability) == (
        ReliabilityPolicy.RELIABLE,
        DurabilityPolicy.TRANSIENT_LOCAL,
    )


def test_image_outputs_are_published_as_image_transport_publishes():
    assert IMAGE_PUBLISHER_QOS == RMW_DEFAULT
    assert (IMAGE_PUBLISHER_QOS.reliability, IMAGE_PUBLISHER_QOS.durability, IMAGE_PUBLISHER_QOS.depth) == (
        ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE, 10)
    assert IMAGE_PUBLISHER_QOS is not DIAGNOSTICS_QOS  # /diagnostics keeps a profile of its own


@pytest.mark.parametrize(
    "subscription",
    [RMW_DEFAULT, qos_profile_sensor_data, SENSOR_QOS, image_qos("reliable")],
    ids=["reliable default (depth_image_proc)", "sensor data", "SENSOR_QOS", "reliable keep-last 1"],
)
def test_image_outputs_match_reliable_and_best_effort_subscriptions(subscription):
    compatibility, reason = qos_check_compatible(IMAGE_PUBLISHER_QOS, subscription)
    assert compatibility != QoSCompatibility.ERROR, reason


def test_a_best_effort_publisher_would_not_reach_a_reliable_subscription():
    """Why the outputs are not published with the sensor-data profile."""
    compatibility, reason = qos_check_compatible(qos_profile_sensor_data, RMW_DEFAULT)
    assert compatibility == QoSCompatibility.ERROR and "Best effort publisher" in reason
