"""The parameter table: what it produces (descriptors, AdaptationConfig) and the documentation that repeats it."""

from __future__ import annotations

import dataclasses
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from depth_estimator_ros import parameters
from depth_estimator_ros.adaptation import LIVE_FIELDS, AdaptationConfig
from depth_estimator_ros.adaptation.config import config_fields
from depth_estimator_ros.parameters import BOTH, ESTIMATOR, PARAMETERS, TRAINER, node_defaults, node_parameters

ROOT = Path(__file__).resolve().parents[1]
LIVE_YAML = ROOT / "config" / "live.yaml"
NODES = (ROOT / "docs" / "NODES.md").read_text(encoding="utf-8")  # the full node reference


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type (``1`` is not ``1.0`` to ROS, ``true`` is not ``1``)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _yaml_line(spec: parameters.ParameterSpec) -> str:
    value = yaml.safe_dump(spec.default, default_flow_style=True).strip().removesuffix("...").strip()
    return f"{spec.name}: {value}  # {'live: ' if spec.live else ''}{spec.description}"


# ----------------------------------------------------------------------------- the table itself
def test_the_table_is_plain_data_without_rclpy_or_torch():
    code = "import sys, depth_estimator_ros.parameters; print(sorted({'rclpy', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_every_row_is_declared_by_a_node_and_fits_its_own_default():
    assert {p.name for p in PARAMETERS} == {p.name for node in BOTH for p in node_parameters(node)}
    for spec in PARAMETERS:
        assert spec.nodes and set(spec.nodes) <= set(BOTH), spec.name
        assert spec.description and spec.problem(spec.default) == "", spec.name
        assert not spec.choices or spec.default in spec.choices, spec.name
    with pytest.raises(ValueError, match="does not fit its own row"):
        parameters.ParameterSpec("x", "double", 1, BOTH, "an int default of a double parameter")


@pytest.mark.parametrize(
    "spec", [p for p in PARAMETERS if p.low is not None or p.high is not None], ids=lambda p: p.name
)
def test_range_ends_are_accepted_or_refused_as_the_row_says(spec):
    for end, is_open, direction in ((spec.low, spec.low_open, -math.inf), (spec.high, spec.high_open, math.inf)):
        if end is None:
            continue
        value = int(end) if spec.kind == "int" else float(end)
        outside = value + (1 if direction > 0 else -1) if spec.kind == "int" else math.nextafter(value, direction)
        assert (spec.problem(value) == "") is not is_open, (spec.name, value)
        problem = spec.problem(outside)
        assert spec.name in problem and spec.range_text in problem, (spec.name, outside, problem)


def test_choices_and_types_are_refused_with_the_allowed_values():
    assert parameters.parameter("scope").problem("encoder") == (
        "scope must be one of default, decoder, decoder+tail, all, got 'encoder'"
    )
    assert "must be a bool" in parameters.parameter("publish_points").problem(1)
    assert "must be an integer" in parameters.parameter("points_stride").problem(2.0)
    assert "[H, W]" in parameters.parameter("input_size").problem([1, 2, 3])
    assert parameters.first_problem({"not_ours": 1, "depth_encoding": "32FC1"}) == ""
    assert "depth_encoding must be one of" in parameters.first_problem({"depth_encoding": "mono16"})
    with pytest.raises(KeyError, match="no parameter 'nope'"):
        parameters.parameter("nope")


# ------------------------------------------------------------------- what the table produces
def test_adaptation_config_takes_its_fields_defaults_and_live_set_from_the_table():
    engine = parameters.engine_parameters()
    assert {p.field for p in engine} == {f.name for f in dataclasses.fields(AdaptationConfig)}
    assert AdaptationConfig.from_parameters(node_defaults(TRAINER)) == AdaptationConfig()
    assert LIVE_FIELDS == {p.field for p in engine if p.live}
    assert config_fields({"adaptation_enabled": False, "train_size": [0, 0], "arch": "fast"}) == {
        "enabled": False, "train_size": None
    }
    assert config_fields({"train_size": [96, 128]}) == {"train_size": (96, 128)}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("recent_fraction", 0.0, r"recent_fraction must be a finite number in \(0.0, 1.0\]"),
        ("base_replay_fraction", 1.0, r"base_replay_fraction must be a finite number in \[0.0, 1.0\)"),
        ("lr", 0.0, r"lr must be a finite number in \(0.0, inf\)"),
        ("batch_size", 0, r"batch_size must be an integer in \[1, 1024\]"),
        ("scope", "encoder", "scope must be one of"),
        ("freeze_bn", 1, "freeze_bn must be a bool"),
        ("enabled", "yes", "enabled must be a bool"),
    ],
)
def test_adaptation_config_refuses_what_the_table_refuses(field, value, message):
    with pytest.raises(ValueError, match=message):
        AdaptationConfig(**{field: value})


def test_descriptors_carry_the_rows_range_choices_and_read_only_flag():
    from depth_estimator_ros.ros.params import descriptor  # noqa: PLC0415 (rclpy only here)

    for spec in PARAMETERS:
        d = descriptor(spec)
        assert d.description == spec.description and d.read_only is (not spec.live), spec.name
        assert d.additional_constraints == spec.constraints, spec.name
        if spec.kind == "int" and spec.low is not None:
            assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (spec.low, spec.high), spec.name
        elif spec.kind == "double" and spec.low is not None:
            high = math.inf if spec.high is None else spec.high
            assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == (spec.low, high)
        else:
            assert not d.integer_range and not d.floating_point_range, spec.name
    assert descriptor(parameters.parameter("recent_fraction")).additional_constraints == "in (0.0, 1.0]"
    assert descriptor(parameters.parameter("scope")).additional_constraints == "one of default, decoder, decoder+tail, all"


# -------------------------------------------------------------------- config/live.yaml agrees
def test_live_yaml_gives_every_parameter_its_table_default_in_the_right_section():
    content = yaml.safe_load(LIVE_YAML.read_text(encoding="utf-8"))
    sections = {"/**": BOTH, ESTIMATOR: (ESTIMATOR,), TRAINER: (TRAINER,)}
    assert set(content) == set(sections)
    for section, nodes in sections.items():
        values = content[section]["ros__parameters"]
        expected = {p.name: p for p in PARAMETERS if p.nodes == nodes}
        missing = [_yaml_line(expected[name]) for name in expected if name not in values]
        assert not missing, f"config/live.yaml section {section!r} lacks:\n    " + "\n    ".join(missing)
        assert set(values) == set(expected), f"{section}: not in the table for these nodes: {set(values) - set(expected)}"
        for name, value in values.items():
            assert _same(value, expected[name].default), f"{section} {name}: {value!r} != table {expected[name].default!r}"
    for node in BOTH:
        assert _same(parameters.load_defaults(node, LIVE_YAML), node_defaults(node))


def test_live_yaml_marks_exactly_the_live_parameters_live():
    marked = {}
    for line in LIVE_YAML.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s{4}(\w+):[^#]*(?:#\s*(.*))?$", line)
        if match:
            marked[match.group(1)] = (match.group(2) or "").startswith("live:")
    assert marked == {p.name: p.live for p in PARAMETERS}


# ------------------------------------------------------------- docs/NODES.md agrees
def _readme_table(heading: str) -> tuple[str, list[list[str]]]:
    """Return the 'Parameters' line under ``### heading`` and the rows of the table after it."""
    section = NODES.split(f"\n### {heading}\n", 1)[1].split("\n### ", 1)[0]
    intro, rest = section.split("\nParameters", 1)
    lead, table = rest.split("\n| name |", 1)
    rows = [line for line in table.split("\n\n", 1)[0].splitlines()[2:] if line.startswith("|")]
    return "Parameters" + lead, [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def _readme_rows(heading: str) -> dict[str, tuple[str, Any, str]]:
    """Return ``{name: (type, default, live)}`` of a docs/NODES.md parameter table."""
    out = {}
    for name_cell, type_cell, default_cell, live_cell, *_ in _readme_table(heading)[1]:
        names = re.findall(r"`([^`]+)`", name_cell)
        if len(names) == 1:
            defaults = [default_cell]
        else:
            defaults = [d.strip() for d in default_cell.split(" / " if " / " in default_cell else ",")]
        assert len(defaults) == len(names), name_cell
        for name, default in zip(names, defaults, strict=True):
            out[name] = (type_cell, yaml.safe_load(default.strip("`")), live_cell)
    return out


def _readme_type(spec: parameters.ParameterSpec) -> str:
    return f"{spec.kind} ({spec.unit})" if spec.unit else spec.kind


@pytest.mark.parametrize(
    ("heading", "nodes"), [(ESTIMATOR, ((ESTIMATOR,), BOTH)), (TRAINER, ((TRAINER,),))], ids=[ESTIMATOR, TRAINER]
)
def test_node_reference_documents_every_parameter_with_its_default(heading, nodes):
    rows = _readme_rows(heading)
    expected = {p.name: p for p in PARAMETERS if p.nodes in nodes}
    missing = sorted(set(expected) - set(rows))
    assert not missing, f"docs/NODES.md '### {heading}' parameter table lacks {missing}"
    assert set(rows) == set(expected), f"NODES.md '### {heading}': rows not of this node: {set(rows) - set(expected)}"
    for name, (kind, default, live) in rows.items():
        spec = expected[name]
        assert _same(default, spec.default), f"docs/NODES.md {name}: default {default!r} != table {spec.default!r}"
        assert kind == _readme_type(spec), f"docs/NODES.md {name}: type {kind!r} != table {_readme_type(spec)!r}"
        assert live == ("yes" if spec.live else "no"), f"docs/NODES.md {name}: live {live!r}, table live={spec.live}"


def test_node_reference_trainer_section_names_the_shared_parameters():
    lead, _ = _readme_table(TRAINER)
    assert lead.startswith("Parameters (besides the shared")
    assert re.findall(r"`([^`]+)`", lead) == [p.name for p in PARAMETERS if p.nodes == BOTH]
