"""Static checks of launch/*.launch.py, config/depth_estimator.rviz and their installation.

These run in pip mode (no ``launch`` package): the launch files are checked through
their syntax tree. Where ``launch`` and ``launch_ros`` import (a ROS distro), the
launch descriptions are also built and the node actions of both modes inspected.
"""

from __future__ import annotations

import ast
import importlib.util
import py_compile
import runpy
from pathlib import Path

import pytest
import setuptools
import yaml

from depth_estimator_ros import parameters

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "depth_estimator_ros"
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
RVIZ_FILE = ROOT / "config" / "depth_estimator.rviz"
ARCHITECTURE = (ROOT / "docs" / "ARCHITECTURE.md").read_text()

# Relative topic -> default (Kinect) topic, as docs/ARCHITECTURE.md states them.
KINECT_REMAPS = {
    "image": "/camera/rgb/image_color",
    "depth": "/camera/depth_registered/image_raw",
    "camera_info": "/camera/rgb/camera_info",
}
# What the depth_estimator node publishes (relative names; default namespace in RViz).
ESTIMATOR_OUTPUTS = ("depth/image", "depth/camera_info", "depth/colored", "depth/points",
                     "depth/filled/image")
# Message types of the topics RViz displays read, by display class and topic property.
RVIZ_TOPIC_TYPES = {
    ("rviz_default_plugins/Image", "Topic"): "sensor_msgs/msg/Image",
    ("rviz_default_plugins/Camera", "Topic"): "sensor_msgs/msg/Image",
    ("rviz_default_plugins/PointCloud2", "Topic"): "sensor_msgs/msg/PointCloud2",
    ("rviz_default_plugins/DepthCloud", "Depth Map Topic"): "sensor_msgs/msg/Image",
    ("rviz_default_plugins/DepthCloud", "CameraInfo Topic"): "sensor_msgs/msg/CameraInfo",
    ("rviz_default_plugins/DepthCloud", "Color Image Topic"): "sensor_msgs/msg/Image",
}


def _module_constants(tree: ast.Module) -> dict[str, object]:
    """Return the module-level ``NAME = <literal>`` assignments of a syntax tree."""
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return constants


def _parse(path: Path) -> tuple[ast.Module, dict[str, object]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return tree, _module_constants(tree)


@pytest.fixture(scope="module")
def setup_kwargs() -> dict:
    """Run setup.py with ``setuptools.setup`` capturing its keyword arguments."""
    captured: dict = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
        patch.chdir(ROOT)  # data_files use globs relative to the project
        runpy.run_path(str(ROOT / "setup.py"))
    return captured


@pytest.fixture(scope="module")
def console_scripts(setup_kwargs) -> dict[str, str]:
    entries = setup_kwargs["entry_points"]["console_scripts"]
    return {name.strip(): target.strip() for name, target in (entry.split("=", 1) for entry in entries)}


@pytest.fixture(scope="module")
def installed_files(setup_kwargs) -> set[str]:
    """Paths, relative to the install prefix, that data_files installs."""
    return {f"{dest}/{Path(src).name}" for dest, sources in setup_kwargs["data_files"] for src in sources}


def test_there_are_live_and_playback_launch_files():
    assert [p.name for p in LAUNCH_FILES] == ["live.launch.py", "playback.launch.py"]


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_compiles_and_defines_entry_point(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)
    tree, _ = _parse(path)
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "generate_launch_description" in functions


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_executables_are_console_scripts(path, console_scripts):
    tree, constants = _parse(path)
    named = []
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        keywords = {k.arg: k.value for k in call.keywords}
        if "package" not in keywords:
            continue
        package = keywords["package"]
        package = constants.get(package.id) if isinstance(package, ast.Name) else ast.literal_eval(package)
        if package != PACKAGE:
            continue
        executable = ast.literal_eval(keywords["executable"])  # literal, so this check sees every one
        named.append(executable)
        assert executable in console_scripts, f"{path.name} runs {executable!r}, not a console script in setup.py"
        module = console_scripts[executable].split(":")[0]
        module_file = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        assert module_file.is_file(), f"console script {executable} points at missing {module_file}"
    if path.name == "live.launch.py":
        assert sorted(named) == ["depth_estimator", "live", "online_trainer"]


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_files_referenced_by_launch_files_exist_and_are_installed(path, installed_files):
    _, constants = _parse(path)
    referenced = [
        value
        for value in constants.values()
        if isinstance(value, tuple) and value and all(isinstance(v, str) for v in value) and "." in value[-1]
    ]
    assert referenced, f"{path.name} names no files"
    for parts in referenced:
        relative = "/".join(parts)  # relative to the share directory, which mirrors the source tree
        assert (ROOT / relative).is_file(), f"{path.name} references {relative}, missing in the project"
        assert f"share/{PACKAGE}/{relative}" in installed_files, f"setup.py data_files does not install {relative}"


def test_setup_installs_launch_config_and_package_marker(installed_files):
    share = f"share/{PACKAGE}"
    expected = {f"{share}/launch/{p.name}" for p in LAUNCH_FILES}
    expected |= {f"{share}/config/{RVIZ_FILE.name}", f"{share}/config/live.yaml", f"{share}/package.xml"}
    expected.add(f"share/ament_index/resource_index/packages/{PACKAGE}")
    assert expected <= installed_files


def test_live_launch_default_topics_are_the_documented_kinect_remaps():
    for relative, topic in KINECT_REMAPS.items():
        assert f"`{relative}` -> `{topic}`" in ARCHITECTURE
    # the launch file takes its defaults from the package's one definition of the Kinect topics
    assert parameters.KINECT_TOPICS == KINECT_REMAPS
    tree, _ = _parse(ROOT / "launch" / "live.launch.py")
    imported = {
        alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
        and node.module == "depth_estimator_ros.parameters" for alias in node.names
    }
    assert "KINECT_TOPICS" in imported
    defaults = {
        node.targets[0].id: ast.unparse(node.value) for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id.startswith("DEFAULT_")
    }
    assert defaults == {
        "DEFAULT_IMAGE_TOPIC": "KINECT_TOPICS['image']",
        "DEFAULT_DEPTH_TOPIC": "KINECT_TOPICS['depth']",
        "DEFAULT_CAMERA_INFO_TOPIC": "KINECT_TOPICS['camera_info']",
    }


def _rviz_displays(config: dict) -> list[dict]:
    displays, stack = [], list(config["Visualization Manager"]["Displays"])
    while stack:  # groups nest their displays
        display = stack.pop()
        stack.extend(display.get("Displays", []))
        displays.append(display)
    return displays


def _camera_info_topic(image_topic: str) -> str:
    """image_transport::getCameraInfoTopic: the ``camera_info`` sibling of an image topic (RViz's Camera display)."""
    return image_topic.rsplit("/", 1)[0] + "/camera_info"


def _rviz_topics(displays: list[dict]) -> dict[str, tuple[str, str]]:
    """Return ``{topic: (message type, display name)}`` of every topic the displays subscribe to."""
    topics = {}
    for display in displays:
        for (cls, key), msg_type in RVIZ_TOPIC_TYPES.items():
            if display["Class"] != cls or key not in display:
                continue
            value = display[key]["Value"] if isinstance(display[key], dict) else display[key]
            if value:
                topics[value] = (msg_type, display["Name"])
                if cls == "rviz_default_plugins/Camera":
                    topics[_camera_info_topic(value)] = ("sensor_msgs/msg/CameraInfo", display["Name"])
    return topics


def test_rviz_config_shows_every_documented_topic_and_nothing_else():
    config = yaml.safe_load(RVIZ_FILE.read_text())
    displays = _rviz_displays(config)
    for relative in ESTIMATOR_OUTPUTS:
        assert f"`{relative}`" in ARCHITECTURE, f"{relative} is not a documented estimator topic"
    topics = _rviz_topics(displays)
    expected = {KINECT_REMAPS["image"], KINECT_REMAPS["depth"]} | {"/" + t for t in ESTIMATOR_OUTPUTS}
    assert set(topics) == expected
    assert topics["/depth/points"][0] == "sensor_msgs/msg/PointCloud2"
    # depth/camera_info is used twice: beside the Camera display's image and by the depth cloud
    by_class = {d["Class"]: d for d in displays}
    assert _camera_info_topic(by_class["rviz_default_plugins/Camera"]["Topic"]["Value"]) == "/depth/camera_info"
    cloud = by_class["rviz_default_plugins/DepthCloud"]
    assert (cloud["Depth Map Topic"], cloud["CameraInfo Topic"]) == ("/depth/image", "/depth/camera_info")
    # the depth image's own sibling: releases that derive the info topic from the image find it too
    assert _camera_info_topic(cloud["Depth Map Topic"]) == cloud["CameraInfo Topic"]
    for display in displays:
        # Best effort matches both best-effort (camera drivers) and reliable publishers.
        if isinstance(display.get("Topic"), dict):
            assert display["Topic"]["Reliability Policy"] == "Best Effort", display["Name"]
        elif "Reliability Policy" in display:
            assert display["Reliability Policy"] == "Best effort", display["Name"]
    classes = {d["Class"] for d in displays}
    assert {"rviz_default_plugins/Grid", "rviz_default_plugins/TF"} <= classes
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "camera_rgb_optical_frame"
    panels = set(config["Window Geometry"]) - {"Displays", "Views", "Height", "Width", "X", "Y",
                                                 "Hide Left Dock", "Hide Right Dock"}
    assert panels <= {d["Name"] for d in displays}  # the panels' names are displays' (renamed together)


def test_rviz_topics_are_the_ones_the_running_estimator_publishes_with_their_types(checkpoint):
    """Every RViz topic that is not the camera driver's is a real publisher of depth_estimator, same type."""
    from rclpy.parameter import Parameter
    from ros_helpers import isolated_ros, wait_for

    from depth_estimator_ros.ros.estimator_node import DepthEstimatorNode

    wanted = {topic: msg_type for topic, (msg_type, _) in _rviz_topics(_rviz_displays(
        yaml.safe_load(RVIZ_FILE.read_text()))).items() if topic not in KINECT_REMAPS.values()}
    with isolated_ros() as ros:
        node = ros.add_node(DepthEstimatorNode(context=ros.context, parameter_overrides=[
            Parameter("checkpoint", value=str(checkpoint)), Parameter("device", value="cpu")]))

        def published():
            found = dict(node.get_publisher_names_and_types_by_node(node.get_name(), "/"))
            return found if all(topic in found for topic in wanted) else None

        found = wait_for(published, 10.0, what=f"depth_estimator publishers of {sorted(wanted)}")
    assert {topic: found[topic] for topic in wanted} == {topic: [msg_type] for topic, msg_type in wanted.items()}


def _launch_available() -> bool:
    try:
        from launch import LaunchDescription  # noqa: F401
        from launch_ros.actions import Node  # noqa: F401
    except ImportError:  # guard against a folder named `launch` on sys.path posing as the package
        return False
    return True


needs_launch = pytest.mark.skipif(
    not _launch_available(), reason="ROS 2 `launch`/`launch_ros` not installed (pip mode; they come with a ROS distro)"
)


def _installed() -> bool:
    """Whether the package is in the ament index (colcon-installed), as the launch files' share lookups need."""
    try:
        from ament_index_python.packages import get_package_share_directory

        get_package_share_directory(PACKAGE)
    except (ImportError, LookupError, OSError, ValueError):
        return False
    return True


needs_install = pytest.mark.skipif(
    not _installed(),
    reason=f"{PACKAGE} not in the ament index (AMENT_PREFIX_PATH): `make test` builds it with colcon where "
    "../shared/ros2_jazzy is present",
)


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.name.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_launch
@needs_install
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_description_builds(path):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument

    description = _load(path).generate_launch_description()
    assert isinstance(description, LaunchDescription)
    arguments = {e.name for e in description.entities if isinstance(e, DeclareLaunchArgument)}
    if path.name == "live.launch.py":
        expected = {"image_topic", "depth_topic", "camera_info_topic", "params_file", "device", "checkpoint"}
        assert expected | {"adapt", "rgb_transport", "rviz", "mode", "namespace"} <= arguments
    else:
        assert {"bag", "rate", "loop", "delay", "start_offset"} <= arguments


def _live_context(mode: str, checkpoint: str, rgb_transport: str = ""):
    """A LaunchContext holding live.launch.py's arguments (adapt:=false, device:=cpu, Kinect topics renamed)."""
    from launch import LaunchContext

    context = LaunchContext()
    context.launch_configurations.update(
        {
            "mode": mode,
            "params_file": str(ROOT / "config" / "live.yaml"),
            "namespace": "",
            "image_topic": "/cam/rgb",
            "depth_topic": "/cam/depth",
            "camera_info_topic": "/cam/info",
            "adapt": "false",
            "device": "cpu",
            "checkpoint": checkpoint,
            "rgb_transport": rgb_transport,
        }
    )
    return context


@needs_launch
@pytest.mark.parametrize(
    ("mode", "executables"), [("single", ["live"]), ("separate", ["depth_estimator", "online_trainer"])]
)
def test_live_launch_modes_create_the_right_processes(mode, executables):
    module = _load(ROOT / "launch" / "live.launch.py")
    context = _live_context(mode, "")
    nodes = module._nodes(context)
    assert [n.node_executable for n in nodes] == executables


@needs_launch
@pytest.mark.parametrize(("mode", "rgb_transport"), [("single", ""), ("separate", ""), ("single", "compressed"),
                                                     ("separate", "compressed")])
def test_launch_arguments_win_over_the_params_file(mode, rgb_transport, checkpoint):
    """adapt:=false (and device/checkpoint/rgb_transport) reach the real nodes although live.yaml has node sections."""
    from ros_helpers import isolated_ros, wait_for

    from depth_estimator_ros.ros.estimator_node import DepthEstimatorNode
    from depth_estimator_ros.ros.live import build_live_nodes
    from depth_estimator_ros.ros.trainer_node import OnlineTrainerNode

    module = _load(ROOT / "launch" / "live.launch.py")
    context = _live_context(mode, str(checkpoint), rgb_transport)
    build = {
        "live": lambda **kw: build_live_nodes(**kw),
        "depth_estimator": lambda **kw: (DepthEstimatorNode(**kw),),
        "online_trainer": lambda **kw: (OnlineTrainerNode(**kw),),
    }
    with isolated_ros() as ros:
        started = []
        for action in module._nodes(context):
            # The parameter files launch_ros passes to the process, in order (what `ros2 launch` runs).
            action._perform_substitutions(context)
            files = [path for path, is_file in action._Node__expanded_parameter_arguments if is_file]
            cli = ["--ros-args", *(item for path in files for item in ("--params-file", path))]
            cli += [item for rule in action._Node__expanded_remappings for item in ("-r", ":=".join(rule))]
            for node in build[action.node_executable](context=ros.context, cli_args=cli):
                started.append(ros.add_node(node))
        assert sorted(n.get_name() for n in started) == ["depth_estimator", "online_trainer"]
        for node in started:
            assert node.get_parameter("device").value == "cpu"
            assert node.get_parameter("checkpoint").value == str(checkpoint)
        (trainer,) = [n for n in started if isinstance(n, OnlineTrainerNode)]
        assert trainer.get_parameter("adaptation_enabled").value is False
        assert trainer.engine.enabled is False
        (estimator,) = [n for n in started if isinstance(n, DepthEstimatorNode)]
        assert estimator.get_parameter("sensor_scale").value is False  # adapt:=false: the model's own depth
        # rgb_transport:=compressed: both nodes on <image_topic>/compressed; empty: the params file's raw
        transport, topic = ("compressed", "/cam/rgb/compressed") if rgb_transport else ("raw", "/cam/rgb")
        message_type = "sensor_msgs/msg/CompressedImage" if rgb_transport else "sensor_msgs/msg/Image"
        for node in started:
            assert node.get_parameter("rgb_transport").value == transport
            wait_for(lambda: (topic, [message_type])
                     in node.get_subscriber_names_and_types_by_node(node.get_name(), "/"),
                     10.0, what=f"{node.get_name()} subscribed to {topic}")


@needs_launch
@pytest.mark.parametrize(("delay", "flag"), [("0", None), ("0.0", None), ("2.5", ["--delay", "2.5"])])
def test_playback_passes_delay_only_when_positive(delay, flag):
    """Jazzy's ``ros2 bag play`` accepts only --delay > 0: delay:=0 must leave the flag out."""
    from launch import LaunchContext

    module = _load(ROOT / "launch" / "playback.launch.py")
    context = LaunchContext()
    context.launch_configurations.update(
        {"bag": "/data/bag", "rate": "1.0", "loop": "false", "delay": delay, "start_offset": "0.0"}
    )
    (play,) = module._bag_play(context)
    cmd = ["".join(part.perform(context) for part in item) for item in play.cmd]
    assert cmd[:4] == ["ros2", "bag", "play", "/data/bag"]
    if flag is None:
        assert "--delay" not in cmd
    else:
        index = cmd.index("--delay")
        assert cmd[index : index + 2] == flag


def test_package_xml_is_well_formed_ament_python_without_pip_only_keys():
    """colcon-ros must parse it (a '--' in a comment makes it a plain Python package: no ament index)."""
    import xml.etree.ElementTree as ET

    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.findtext("name") == PACKAGE
    assert root.find("export").findtext("build_type") == "ament_python"
    declared = {e.text for e in root if e.tag.endswith("depend")}
    # no rosdep key on Jazzy: `rosdep install` fails on any unresolvable key (README, distro section)
    assert not declared & {"python3-safetensors", "python3-onnxruntime", "python3-onnx", "python3-rosbags"}
