"""Run the depth estimator and the online trainer on a live RGB-D camera (Kinect defaults).

    ros2 launch depth_estimator_ros live.launch.py                       # one `live` process
    ros2 launch depth_estimator_ros live.launch.py mode:=separate adapt:=false rviz:=true
    ros2 launch depth_estimator_ros live.launch.py rgb_transport:=compressed  # <image_topic>/compressed
    ros2 launch depth_estimator_ros live.launch.py image_topic:=/camera/color/image_raw \\
        depth_topic:=/camera/aligned_depth_to_color/image_raw camera_info_topic:=/camera/color/camera_info

Arguments (``ros2 launch depth_estimator_ros live.launch.py -s`` lists them):
image_topic, depth_topic, camera_info_topic (the camera driver's topics),
params_file (parameter defaults, config/live.yaml), device, checkpoint, rgb_transport
(``raw`` | ``compressed``: the colour stream as image_transport's ``compressed`` plugin
publishes it, on ``<image_topic>/compressed``; both nodes) and adapt
(override the params file only when given, and then win over it: they are passed
under each node's own name, ahead of which a params file's ``/**`` and node
sections both rank), rviz, mode (``single``: both nodes
in the ``live`` process, one model copy; ``separate``: ``depth_estimator`` and
``online_trainer`` processes talking over the ``weights`` topic), namespace.

Predicted depth is published on ``<namespace>/depth/image`` with ``depth/camera_info`` beside
it (and ``depth/colored``, ``depth/points``), the sensor depth with its holes filled by the
prediction on ``depth/filled/image`` (with ``depth/filled/camera_info`` and
``depth/filled/mask``; the estimator's ``sensor_depth`` is remapped to ``depth_topic``); the
RViz config shows the default (empty) namespace.
"""

import atexit
import contextlib
import os
import tempfile

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from depth_estimator_ros.parameters import KINECT_TOPICS

PACKAGE = "depth_estimator_ros"
# Files this launch file uses, relative to the package's share directory (and to the source tree).
PARAMS_FILE = ("config", "live.yaml")
RVIZ_CONFIG = ("config", "depth_estimator.rviz")

# Default topics of an openni/freenect Kinect driver (docs/ARCHITECTURE.md), defined once in the package.
DEFAULT_IMAGE_TOPIC = KINECT_TOPICS["image"]
DEFAULT_DEPTH_TOPIC = KINECT_TOPICS["depth"]
DEFAULT_CAMERA_INFO_TOPIC = KINECT_TOPICS["camera_info"]

MODES = ("single", "separate")


def _is_true(value: str, name: str) -> bool:
    """Parse a launch argument that must be ``true`` or ``false``."""
    if value.lower() not in ("true", "false"):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value.lower() == "true"


def _overrides(context: LaunchContext) -> dict:
    """Parameters given on the command line; empty arguments leave the params file's value."""
    params = {}
    for name in ("device", "checkpoint", "rgb_transport"):
        value = LaunchConfiguration(name).perform(context)
        if value:
            params[name] = value
    return params


def _node_key(namespace: str, node: str) -> str:
    """Return the fully qualified node name a parameter file section must carry to target ``node``."""
    namespace = namespace.strip("/")
    return f"/{namespace}/{node}" if namespace else f"/{node}"


def _override_file(namespace: str, per_node: dict) -> str:
    """Write ``{node: {name: value}}`` as a parameter file with one section per node; return its path.

    launch_ros writes a ``parameters=[{...}]`` dict under ``/**``, and rcl lets a node's
    own section of the params file (``online_trainer:`` in config/live.yaml) win over
    ``/**`` whatever the order, so a launch argument given that way has no effect.
    Under the node's fully qualified name, in a file after the params file, it wins.
    The file lives as long as the launch process (a respawned node reads it again) and is
    removed when that process exits.
    """
    content = {_node_key(namespace, node): {"ros__parameters": params} for node, params in per_node.items() if params}
    with tempfile.NamedTemporaryFile(
        "w", prefix="depth_estimator_ros_launch_", suffix=".yaml", delete=False
    ) as stream:
        yaml.safe_dump(content, stream, default_flow_style=False)
    atexit.register(_remove, stream.name)
    return stream.name


def _remove(path: str) -> None:
    """Delete a temporary parameter file; one already gone is fine."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _nodes(context: LaunchContext) -> list:
    """Create the node processes for the chosen mode."""
    mode = LaunchConfiguration("mode").perform(context)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    params_file = LaunchConfiguration("params_file").perform(context)
    namespace = LaunchConfiguration("namespace").perform(context)
    image = LaunchConfiguration("image_topic").perform(context)
    depth = LaunchConfiguration("depth_topic").perform(context)
    camera_info = LaunchConfiguration("camera_info_topic").perform(context)
    adapt = LaunchConfiguration("adapt").perform(context)
    overrides = _overrides(context)
    trainer_overrides, estimator_overrides = dict(overrides), dict(overrides)
    if adapt:  # both ways the stream adapts: the trainer's rounds and the estimator's sensor scale
        trainer_overrides["adaptation_enabled"] = estimator_overrides["sensor_scale"] = _is_true(adapt, "adapt")
    camera = [("image", image), ("camera_info", camera_info)]
    # the estimator's sensor input for depth/filled/image: the same sensor depth the trainer learns from
    sensor_depth = [("sensor_depth", depth)]

    def parameters(per_node: dict) -> list:
        if not any(per_node.values()):
            return [params_file]
        return [params_file, _override_file(namespace, per_node)]

    if mode == "single":
        # One process holds both nodes; `depth` is the trainer's sensor input only (the estimator
        # publishes depth/image, which a `depth` rule leaves alone), the node prefix says whose.
        return [
            Node(
                package=PACKAGE,
                executable="live",
                namespace=namespace,
                parameters=parameters({"depth_estimator": estimator_overrides, "online_trainer": trainer_overrides}),
                remappings=camera + sensor_depth + [("online_trainer:depth", depth)],
                output="screen",
                emulate_tty=True,
            )
        ]
    return [
        Node(
            package=PACKAGE,
            executable="depth_estimator",
            namespace=namespace,
            parameters=parameters({"depth_estimator": estimator_overrides}),
            remappings=camera + sensor_depth,
            output="screen",
            emulate_tty=True,
        ),
        Node(
            package=PACKAGE,
            executable="online_trainer",
            namespace=namespace,
            parameters=parameters({"online_trainer": trainer_overrides}),
            remappings=camera + [("depth", depth)],
            output="screen",
            emulate_tty=True,
        ),
    ]


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments, the node process(es) and optionally RViz."""
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription(
        [
            DeclareLaunchArgument("image_topic", default_value=DEFAULT_IMAGE_TOPIC, description="RGB image topic"),
            DeclareLaunchArgument(
                "depth_topic",
                default_value=DEFAULT_DEPTH_TOPIC,
                description="sensor depth topic (16UC1 mm or 32FC1 m, registered to the RGB camera) the trainer "
                "learns from and depth/filled/image is filled from",
            ),
            DeclareLaunchArgument(
                "camera_info_topic", default_value=DEFAULT_CAMERA_INFO_TOPIC, description="RGB camera_info topic"
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, *PARAMS_FILE),
                description="YAML parameter file of both nodes",
            ),
            DeclareLaunchArgument(
                "device", default_value="", description="auto | cpu | cuda; empty = the params file's value"
            ),
            DeclareLaunchArgument(
                "checkpoint", default_value="", description="model checkpoint (.safetensors); empty = params file"
            ),
            DeclareLaunchArgument(
                "rgb_transport",
                default_value="",
                description="raw | compressed (JPEG/PNG on <image_topic>/compressed); empty = the params file's value",
            ),
            DeclareLaunchArgument(
                "adapt",
                default_value="",
                description="true | false: sets the trainer's adaptation_enabled and the estimator's sensor_scale; "
                "empty = the params file's value",
            ),
            DeclareLaunchArgument("rviz", default_value="false", description="true | false: start RViz2"),
            DeclareLaunchArgument(
                "mode",
                default_value="single",
                choices=list(MODES),
                description="single: one `live` process; separate: depth_estimator + online_trainer processes",
            ),
            DeclareLaunchArgument("namespace", default_value="", description="namespace of the nodes"),
            OpaqueFunction(function=_nodes),
            Node(
                package="rviz2",
                executable="rviz2",
                arguments=["-d", os.path.join(share, *RVIZ_CONFIG)],
                condition=IfCondition(LaunchConfiguration("rviz")),
                output="screen",
            ),
        ]
    )
