"""Benchmarks behind ``make bench``: measure and report, never pass or fail on a number.

One module per section, each with a ``run(...)`` that writes ``<section>.json`` and
``<section>.png`` into the output folder and returns the JSON-able result:

- :mod:`.model_speed` -- forward passes per second, latency, FLOPs and GFLOP/s of every
  architecture next to the machine's matrix-multiply peak;
- the node-level sections (pipeline, adaptation, memory) import rclpy and so live in
  :mod:`depth_estimator_ros.ros.bench`.

:mod:`.machine` describes the machine every result was taken on.
"""

SECTIONS: tuple[str, ...] = ("model", "pipeline", "adaptation", "memory")

__all__ = ["SECTIONS"]
