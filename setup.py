"""ament_python package for colcon on a ROS 2 distro; also `pip install -e .` in pip mode."""

from glob import glob

from setuptools import find_packages, setup

package_name = "depth_estimator_ros"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={
        "depth_estimator_ros": ["weights/*.safetensors", "weights/*.json"],  # the shipped base model
        "depth_estimator_ros.ros": ["fastdds_large_messages.xml", "fastdds_lossy_link.xml"],
    },
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.rviz")),
        ("share/" + package_name + "/weights",
         glob("depth_estimator_ros/weights/*.safetensors") + glob("depth_estimator_ros/weights/*.json")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="depth_estimator_ros maintainers",
    maintainer_email="maintainers@depth-estimator-ros.invalid",
    description="Monocular metric depth for ROS 2 with online adaptation to the current room.",
    license="Apache-2.0",
    # `colcon test` picks pytest from the "test" extra; `tests_require` is gone from
    # setuptools >= 72, and with only that colcon falls back to unittest and runs 0 tests.
    extras_require={"test": ["pytest", "hypothesis"]},
    entry_points={
        "console_scripts": [
            # ROS nodes
            "depth_estimator = depth_estimator_ros.ros.estimator_node:main",
            "online_trainer = depth_estimator_ros.ros.trainer_node:main",
            "live = depth_estimator_ros.ros.live:main",
            "play_bag = depth_estimator_ros.ros.bag_player:main",
            # offline tools
            "make_bag = depth_estimator_ros.cli.make_bag:main",
            "export_onnx = depth_estimator_ros.cli.export_onnx:main",
        ],
    },
)
