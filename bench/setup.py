"""The measurement harness of depth_estimator_ros: benchmarks, prequential and tour evaluation, demo.

A package of its own beside the runtime package: it imports ``depth_estimator_ros`` and
measures it from outside; the runtime never imports it (nor matplotlib). ``make``
installs it into the project's environment (``pip install -e bench``). Not a ROS package
(``COLCON_IGNORE``): a distro build installs the runtime only.
"""

from setuptools import find_packages, setup

setup(
    name="depth_estimator_bench",
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    install_requires=["depth_estimator_ros", "matplotlib"],
    description="Benchmarks, prequential/tour evaluation and the demo of depth_estimator_ros.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "train = depth_estimator_bench.cli.train:main",
            "evaluate = depth_estimator_bench.cli.evaluate:main",
            "adapt_eval = depth_estimator_bench.cli.adapt_eval:main",
            "tour_eval = depth_estimator_bench.cli.tour_eval:main",
            "bench = depth_estimator_bench.cli.bench:main",
            "demo = depth_estimator_bench.cli.demo:main",
        ],
    },
)
