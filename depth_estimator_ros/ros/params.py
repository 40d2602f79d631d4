"""Declare the node parameters of the table in ``depth_estimator_ros/parameters.py``; check changes to them.

The table is the single source of every parameter's type, default, range, choices,
read-only flag and description; this module only turns its rows into ROS
``ParameterDescriptor`` s, declares them (values given at start-up, ``--params-file`` and
``-p``, override the defaults as usual) and refuses a value the table does not allow.
``config/live.yaml`` repeats the defaults for people to copy and edit; ``make params``
generates it from the table. Running the nodes (the base model, signals, spinning) is
``ros/runner.py``'s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter

from depth_estimator_ros.parameters import ParameterSpec, first_problem, node_parameters, retired_parameters

__all__ = [
    "descriptor",
    "node_descriptors",
    "declare_parameters",
    "check_changes",
    "refuse",
    "accept",
]


def descriptor(spec: ParameterSpec) -> ParameterDescriptor:
    """Return the ROS descriptor of a table row: description, range, choices, read-only.

    A range end the row excludes (``low_open``/``high_open``) cannot be said in a ROS range,
    which is closed: the descriptor gets the closed range, its additional constraints the
    exact one, and :func:`check_changes` refuses the end itself.
    """
    result = ParameterDescriptor(
        description=spec.description, read_only=not spec.live, additional_constraints=spec.constraints
    )
    if spec.kind == "int" and (spec.low is not None or spec.high is not None):
        result.integer_range = [
            IntegerRange(
                from_value=int(-(2**63) if spec.low is None else spec.low),
                to_value=int(2**63 - 1 if spec.high is None else spec.high),
                step=0,
            )
        ]
    elif spec.kind == "double" and (spec.low is not None or spec.high is not None):
        result.floating_point_range = [
            FloatingPointRange(
                from_value=float(-math.inf if spec.low is None else spec.low),
                to_value=float(math.inf if spec.high is None else spec.high),
                step=0.0,
            )
        ]
    return result


def node_descriptors(node_name: str) -> dict[str, ParameterDescriptor]:
    """Return ``{name: descriptor}`` of every parameter ``node_name`` declares (the table's rows)."""
    return {spec.name: descriptor(spec) for spec in node_parameters(node_name)}


def declare_parameters(node: Node, node_name: str) -> dict[str, Any]:
    """Declare every parameter of ``node_name`` in the table, with its default and descriptor.

    A value given for a parameter that was removed (:data:`~depth_estimator_ros.parameters.RETIRED`,
    e.g. an old parameters file) is logged as a warning naming what replaced it, and ignored.

    Args:
        node: the node declaring them.
        node_name: its row set in the table (``parameters.ESTIMATOR`` / ``TRAINER``): the
            node's own name, which a ``__node:=`` remap may change.

    Returns:
        ``{name: value}`` of the declared parameters as now in force.

    Raises:
        ValueError: a value given at start-up that the table does not allow (wrong
            choice, an excluded range end), naming the parameter and the allowed values.
    """
    specs = node_parameters(node_name)
    declared = node.declare_parameters(
        "", [(spec.name, _copy(spec.default), descriptor(spec)) for spec in specs]
    )
    values = {p.name: p.value for p in declared}
    _warn_retired(node, node_name)
    problem = first_problem(values)
    if problem:
        raise ValueError(problem)
    return values


def _warn_retired(node: Node, node_name: str) -> None:
    """Log a warning for each removed parameter the start-up values still set (ROS ignores them)."""
    # rclpy keeps the start-up values (params files, -p, parameter_overrides) here and has no
    # public accessor; an undeclared one is otherwise dropped without a word.
    given = getattr(node, "_parameter_overrides", {})
    for name, reason in retired_parameters(node_name).items():
        if name in given:
            node.get_logger().warning(f"parameter {name} is set but no longer exists and is ignored ({reason}); "
                                      "remove it from the parameters file")


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def check_changes(params: Iterable[Parameter]) -> str:
    """Return why a set of parameter changes does not fit the table, or ``""``.

    rclpy checks types, closed ranges and read-only; this adds choices and excluded range
    ends, for a set-parameters callback to refuse with the reason.
    """
    return first_problem({p.name: p.value for p in params})


def refuse(reason: str) -> SetParametersResult:
    """Return a refusal of a parameter change, with the reason shown to the caller."""
    return SetParametersResult(successful=False, reason=reason)


def accept() -> SetParametersResult:
    """Return an acceptance of a parameter change."""
    return SetParametersResult(successful=True)
