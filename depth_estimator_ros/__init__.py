"""Monocular metric depth for ROS 2 that keeps adapting to the room it is in."""

__version__ = "0.1.0"
