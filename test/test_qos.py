"""QoS profiles of the nodes: camera subscriptions keep only the newest frame."""

from __future__ import annotations

import pytest
from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy

from depth_estimator_ros.ros.qos import IMAGE_RELIABILITY, SENSOR_QOS, WEIGHTS_QOS, image_qos


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
