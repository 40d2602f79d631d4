"""Play a rosbag2 recording into the live pipeline (``ros2 bag play``).

    ros2 launch depth_estimator_ros playback.launch.py bag:=/path/to/bag
    ros2 launch depth_estimator_ros playback.launch.py bag:=/path/to/bag rate:=0.5 loop:=true rviz:=true

Every argument of live.launch.py applies as well (topics, mode, adapt, rviz, ...);
the bag's topics must match them (the make-bag tool writes the Kinect defaults).
``delay`` gives the nodes time to load their model before the first frame.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

PACKAGE = "depth_estimator_ros"
# The live pipeline's launch file, relative to the package's share directory (and to the source tree).
LIVE_LAUNCH = ("launch", "live.launch.py")


def _checked_number(context: LaunchContext, name: str, *, allow_zero: bool) -> str:
    """Return launch argument ``name`` after checking it is a (non-negative / positive) number."""
    text = LaunchConfiguration(name).perform(context)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return text


def _bag_play(context: LaunchContext) -> list:
    """Build the ``ros2 bag play`` command from the arguments."""
    bag = LaunchConfiguration("bag").perform(context)
    if not bag:
        raise ValueError("bag:=<path to a rosbag2 folder or file> is required")
    loop = LaunchConfiguration("loop").perform(context).lower()
    if loop not in ("true", "false"):
        raise ValueError(f"loop must be true or false, got {loop!r}")
    cmd = [
        "ros2",
        "bag",
        "play",
        bag,
        "--rate",
        _checked_number(context, "rate", allow_zero=False),
        "--start-offset",
        _checked_number(context, "start_offset", allow_zero=True),
    ]
    delay = _checked_number(context, "delay", allow_zero=True)
    if float(delay) > 0:  # Jazzy's `ros2 bag play` refuses --delay 0: no delay means no flag
        cmd += ["--delay", delay]
    if loop == "true":
        cmd.append("--loop")
    return [ExecuteProcess(cmd=cmd, name="bag_play", output="screen")]


def generate_launch_description() -> LaunchDescription:
    """Declare the playback arguments, include the live pipeline and play the bag."""
    live = os.path.join(get_package_share_directory(PACKAGE), *LIVE_LAUNCH)
    return LaunchDescription(
        [
            DeclareLaunchArgument("bag", description="rosbag2 folder or file to play"),
            DeclareLaunchArgument("rate", default_value="1.0", description="playback rate factor (> 0)"),
            DeclareLaunchArgument("loop", default_value="false", description="true | false: play in a loop"),
            DeclareLaunchArgument(
                "delay", default_value="3.0", description="seconds to wait before playing, for the nodes to start; 0 = none"
            ),
            DeclareLaunchArgument(
                "start_offset", default_value="0.0", description="seconds into the bag to start from"
            ),
            IncludeLaunchDescription(PythonLaunchDescriptionSource(live)),
            OpaqueFunction(function=_bag_play),
        ]
    )
