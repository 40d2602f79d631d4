"""ROS 2 adapters: the only layer that imports rclpy and ROS messages.

Modules: ``codec`` (Image <-> numpy), ``qos`` (every topic's QoS profile),
``estimator_node`` (``depth_estimator``), ``trainer_node`` (``online_trainer``),
``live`` (both nodes in one process), ``bag_player`` (``play_bag``, pip-mode
rosbag2 playback). See docs/ARCHITECTURE.md for topics, types and parameters.
"""
