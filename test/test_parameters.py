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

from depth_estimator_ros import parameters, parameters_doc
from depth_estimator_ros.adaptation import LIVE_FIELDS, AdaptationConfig
from depth_estimator_ros.adaptation.config import config_fields
from depth_estimator_ros.parameters import BOTH, ESTIMATOR, PARAMETERS, TRAINER, node_defaults, node_parameters

ROOT = Path(__file__).resolve().parents[1]
LIVE_YAML = ROOT / "config" / "live.yaml"  # generated, like the tables of NODES.md
NODES = (ROOT / "docs" / "NODES.md").read_text(encoding="utf-8")  # the full node reference


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type (``1`` is not ``1.0`` to ROS, ``true`` is not ``1``)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# ----------------------------------------------------------------------------- the table itself
def test_the_table_is_plain_data_without_rclpy_or_torch():
    code = "import sys, depth_estimator_ros.parameters, depth_estimator_ros.parameters_doc; print(sorted({'rclpy', 'torch'} & set(sys.modules)))"
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


def test_removed_parameters_are_no_rows_and_name_their_node_and_what_replaced_them():
    assert not set(parameters.RETIRED) & {p.name for p in PARAMETERS}
    assert set(parameters.retired_parameters(TRAINER)) == {"base_guard", "base_guard_rounds"}
    assert parameters.retired_parameters(ESTIMATOR) == {}
    for reason in parameters.retired_parameters(TRAINER).values():
        assert "change_check_frames" in reason and "select_best" in reason
        assert all(name in {p.name for p in PARAMETERS} for name in re.findall(r"\b[a-z]+_[a-z_]+\b", reason)), reason
    with pytest.raises(ValueError, match="node must be one of"):
        parameters.retired_parameters("live")


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


# ----------------------------------------------- the generated files: current, and saying the table
def test_generated_files_are_current():
    """config/live.yaml and NODES.md's tables are what ``make params`` writes from the table now."""
    assert LIVE_YAML.read_text(encoding="utf-8") == parameters_doc.live_yaml(), (
        "config/live.yaml is not generated from the current parameters.py: run make params"
    )
    assert NODES == parameters_doc.nodes_md(NODES), (
        "docs/NODES.md's parameter tables are not generated from the current parameters.py: run make params"
    )


def test_make_params_writes_both_files_and_check_then_passes(tmp_path, monkeypatch, capsys):
    (tmp_path / "config").mkdir()
    (tmp_path / "docs").mkdir()
    live, nodes = tmp_path / "config" / "live.yaml", tmp_path / "docs" / "NODES.md"
    live.write_text("stale\n", encoding="utf-8")
    nodes.write_text(NODES.replace("| `arch` | string |", "| `arch` | int |", 1), encoding="utf-8")
    monkeypatch.setattr(parameters_doc, "ROOT", tmp_path)
    monkeypatch.setattr(parameters_doc, "LIVE_YAML", live)
    monkeypatch.setattr(parameters_doc, "NODES_MD", nodes)
    assert parameters_doc.main(["--check"]) == 1
    assert "run make params" in capsys.readouterr().out
    assert parameters_doc.main(["--write"]) == 0
    assert live.read_text(encoding="utf-8") == parameters_doc.live_yaml() and nodes.read_text(encoding="utf-8") == NODES
    assert parameters_doc.main(["--check"]) == 0


def test_generation_rewrites_only_between_the_markers_and_needs_them():
    stale = NODES.replace("| `arch` | string |", "| `arch` | int |", 1)
    assert stale != NODES and parameters_doc.nodes_md(stale) == NODES
    with pytest.raises(ValueError, match="parameters:online_trainer"):
        parameters_doc.nodes_md(NODES.replace("<!-- parameters:online_trainer -->", ""))


def test_yaml_values_read_back_as_themselves():
    for value, text in ((True, "true"), (0.001, "0.001"), (4194304, "4194304"), ([0, 0], "[0, 0]"),
                        ("", '""'), ("32FC1", "32FC1"), ("none", "none"), ("true", '"true"'), ("1.0", '"1.0"')):
        assert parameters_doc.yaml_value(value) == text
    with pytest.raises(ValueError, match="YAML reads"):
        parameters_doc.yaml_value(1e-6)  # '1e-06' is a string to YAML 1.1


def test_arch_description_names_every_registered_architecture():
    from depth_estimator_ros.models import ARCHITECTURES  # noqa: PLC0415 (torch only here)

    assert parameters.parameter("arch").description.endswith(": " + " | ".join(ARCHITECTURES))


def test_live_yaml_gives_every_parameter_its_table_default_in_the_right_section(tmp_path):
    text = parameters_doc.live_yaml()
    content = yaml.safe_load(text)
    sections = {"/**": BOTH, ESTIMATOR: (ESTIMATOR,), TRAINER: (TRAINER,)}
    assert list(content) == list(sections)
    for section, nodes in sections.items():
        values = content[section]["ros__parameters"]
        assert list(values) == [p.name for p in PARAMETERS if p.nodes == nodes], section
        for name, value in values.items():
            assert _same(value, parameters.parameter(name).default), f"{section} {name}: {value!r}"
    (tmp_path / "live.yaml").write_text(text, encoding="utf-8")
    for node in BOTH:
        assert _same(parameters.load_defaults(node, tmp_path / "live.yaml"), node_defaults(node))


def test_live_yaml_marks_exactly_the_live_parameters_live():
    marked = {}
    for line in parameters_doc.live_yaml().splitlines():
        match = re.match(r"^\s{4}(\w+):[^#]*(?:#\s*(.*))?$", line)
        if match:
            marked[match.group(1)] = (match.group(2) or "").startswith("live:")
    assert marked == {p.name: p.live for p in PARAMETERS}


# ------------------------------------------------------------- docs/NODES.md's tables say the table
def _readme_table(heading: str) -> tuple[str, list[list[str]]]:
    """Return the 'Parameters' line under ``### heading`` and the rows of the table after it."""
    section = parameters_doc.nodes_md(NODES).split(f"\n### {heading}\n", 1)[1].split("\n### ", 1)[0]
    intro, rest = section.split("\nParameters", 1)
    lead, table = rest.split("\n| name |", 1)
    rows = [line for line in table.split("\n\n", 1)[0].splitlines()[2:] if line.startswith("|")]
    return "Parameters" + lead, [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows]


def _readme_rows(heading: str) -> dict[str, tuple[str, Any, str]]:
    """Return ``{name: (type, default, live)}`` of a docs/NODES.md parameter table."""
    out = {}
    for name_cell, type_cell, default_cell, live_cell, *_ in _readme_table(heading)[1]:
        (name,) = re.findall(r"`([^`]+)`", name_cell)
        out[name] = (type_cell, yaml.safe_load(default_cell.strip("`")), live_cell)
    return out


def _readme_type(spec: parameters.ParameterSpec) -> str:
    return f"{spec.kind} ({spec.unit})" if spec.unit else spec.kind


@pytest.mark.parametrize(
    ("heading", "nodes"), [(ESTIMATOR, ((ESTIMATOR,), BOTH)), (TRAINER, ((TRAINER,),))], ids=[ESTIMATOR, TRAINER]
)
def test_node_reference_documents_every_parameter_with_its_default(heading, nodes):
    rows = _readme_rows(heading)
    expected = {p.name: p for p in PARAMETERS if p.nodes in nodes}
    assert list(rows) == list(expected), f"NODES.md '### {heading}'"
    for name, (kind, default, live) in rows.items():
        spec = expected[name]
        assert _same(default, spec.default), f"docs/NODES.md {name}: default {default!r} != table {spec.default!r}"
        assert kind == _readme_type(spec), f"docs/NODES.md {name}: type {kind!r} != table {_readme_type(spec)!r}"
        assert live == ("yes" if spec.live else "no"), f"docs/NODES.md {name}: live {live!r}, table live={spec.live}"


def test_node_reference_meaning_is_the_rows_doc_or_description():
    _, rows = _readme_table(TRAINER)
    meaning = {re.findall(r"`([^`]+)`", row[0])[0]: row[4] for row in rows}
    assert meaning["select_margin"] == parameters.parameter("select_margin").doc
    assert meaning["sync_queue_size"] == parameters.parameter("sync_queue_size").description


def test_node_reference_trainer_section_names_the_shared_parameters():
    lead, _ = _readme_table(TRAINER)
    assert lead.startswith("Parameters (besides the shared")
    assert re.findall(r"`([^`]+)`", lead) == [p.name for p in PARAMETERS if p.nodes == BOTH]
