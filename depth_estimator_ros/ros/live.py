"""The ``live`` process: ``depth_estimator`` and ``online_trainer`` in one process.

Both nodes spin in one single-threaded executor (see ``runner.spin_nodes``). Accepted weights go from the
trainer's adaptation engine straight into the estimator's predictor
(``on_update_state``: a state dict copy, no serialisation, no topic round trip);
the trainer still publishes ``weights`` for estimators in other processes, and
the in-process estimator does not subscribe to it. Training runs in the engine's
worker thread and inference in the estimator's inference thread, so a round
never holds up a frame for longer than one weight copy.

Topics keep the nodes' relative names; unless the command line remaps them, the
inputs are remapped to a Kinect (openni/freenect) driver's topics,
:data:`KINECT_REMAPS` (the estimator's ``sensor_depth``, the input of ``depth/filled/image``,
goes to the trainer's sensor ``depth`` topic, also when only that one is remapped). Remap the
trainer's sensor ``depth`` with or without the node prefix (``-r online_trainer:depth:=/my/depth``
or ``-r depth:=/my/depth``): the estimator's output is ``depth/image``, which a ``depth`` rule
leaves alone (ROS 2 remaps whole names).
torch gets ``torch_threads`` intra-op threads (``0``: half the CPUs, so on a
2-core machine inference and training each get one core).

Usage::

    live --ros-args --params-file config/live.yaml -r image:=/my_camera/image_raw \\
        -r online_trainer:depth:=/my_camera/depth/image_raw -r camera_info:=/my_camera/camera_info
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from rclpy.node import Node

from depth_estimator_ros.adaptation import SHARED_PROCESS_SWITCH_INTERVAL_S
from depth_estimator_ros.parameters import KINECT_TOPICS
from depth_estimator_ros.ros.estimator_node import DepthEstimatorNode
from depth_estimator_ros.ros.runner import spin_nodes
from depth_estimator_ros.ros.trainer_node import OnlineTrainerNode

__all__ = ["KINECT_REMAPS", "build_live_nodes", "with_default_remaps", "main"]

#: Default remappings of the relative topics to a Kinect driver (openni/freenect style).
#: ``depth`` is the trainer's sensor input (the node prefix keeps the rule off any other
#: node's ``depth``); the estimator's ``sensor_depth`` (for ``depth/filled/image``) is the same
#: sensor depth.
KINECT_REMAPS: dict[str, str] = {
    "image": KINECT_TOPICS["image"],
    "online_trainer:depth": KINECT_TOPICS["depth"],
    "sensor_depth": KINECT_TOPICS["depth"],
    "camera_info": KINECT_TOPICS["camera_info"],
}

# Parameters that define the base model: both nodes must agree, since the trainer's
# weights are handed to the estimator's model tensor by tensor.
_MODEL_PARAMETERS = ("arch", "checkpoint", "input_size")


def build_live_nodes(**node_kwargs: Any) -> tuple[DepthEstimatorNode, OnlineTrainerNode]:
    """Create both nodes and connect the trainer's accepted weights to the estimator in-process.

    Also sets this process's GIL switch interval to
    :data:`~depth_estimator_ros.adaptation.SHARED_PROCESS_SWITCH_INTERVAL_S`.

    Args:
        node_kwargs: passed to both nodes (``context``, ``cli_args``, ``parameter_overrides``...).

    Returns:
        ``(estimator, trainer)``; the caller adds them to an executor and destroys them.

    Raises:
        ValueError: unusable parameters, or the two nodes configured with different
            base models (``arch``, ``checkpoint``, ``input_size``).
    """
    sys.setswitchinterval(SHARED_PROCESS_SWITCH_INTERVAL_S)
    estimator = DepthEstimatorNode(subscribe_weights=False, **node_kwargs)
    try:
        trainer = OnlineTrainerNode(**node_kwargs)
    except Exception:
        estimator.destroy_node()
        raise
    differing = [name for name in _MODEL_PARAMETERS if _value(estimator, name) != _value(trainer, name)]
    if differing:
        estimator.destroy_node()
        trainer.destroy_node()
        raise ValueError(f"depth_estimator and online_trainer must share the base model; they differ in {differing}")
    trainer.engine.on_update_state = estimator.apply_state
    return estimator, trainer


def _value(node: Node, name: str) -> Any:
    value = node.get_parameter(name).value
    return list(value) if name == "input_size" else value


def with_default_remaps(args: Sequence[str]) -> list[str]:
    """Return ``args`` plus a Kinect remapping for every topic the user did not remap.

    Args:
        args: the full command line (``sys.argv``).

    Returns:
        ``args`` with ``--ros-args -r <rule> ...`` appended for each rule of
        :data:`KINECT_REMAPS` whose topic no ``-r``/``--remap`` of ``args`` already
        remaps (with or without a node prefix). ``sensor_depth`` follows a remapped
        ``depth``: both are the one sensor depth.
    """
    items = list(args)
    remapped = dict(
        (rule.split(":=", 1)[0].rsplit(":", 1)[-1], rule.split(":=", 1)[1])
        for flag, rule in zip(items, items[1:])
        if flag in ("-r", "--remap") and ":=" in rule
    )
    defaults = dict(KINECT_REMAPS)
    if "depth" in remapped:
        defaults["sensor_depth"] = remapped["depth"]
    extra = [
        item
        for source, target in defaults.items()
        if source.rsplit(":", 1)[-1] not in remapped
        for item in ("-r", f"{source}:={target}")
    ]
    return items + (["--ros-args", *extra] if extra else [])


def main(args: list[str] | None = None) -> None:
    """Run both nodes in one process until Ctrl-C or SIGTERM."""
    spin_nodes(build_live_nodes, "live", with_default_remaps(sys.argv if args is None else args))
