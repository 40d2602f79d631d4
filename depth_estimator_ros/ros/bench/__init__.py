"""Node-level benchmarks of ``make bench``: clients of the nodes over real DDS.

- :mod:`.pipeline` -- 30 Hz camera frames through the estimator node over DDS;
- :mod:`.adaptation` -- prequential comparison with/without adaptation, estimator rate
  while training, and the cross-process weight hand-over latency;
- :mod:`.memory` -- RSS of the live pipeline over a long run while adapting;
- :mod:`.soak` -- the live pipeline under 60 Hz VGA RGB-D for minutes: latency, memory,
  buffer fill and weights versions over time (``bench --only soak``, not in the default set);
- :mod:`.roshelpers` -- node processes, a client node, paced publishing.

They live under ``ros/`` because they import rclpy; the ROS-free parts (machine
description, model speed) are in :mod:`depth_estimator_ros.benchmarks`.
"""
