"""Smoke test of the ``bench`` command: it runs and writes well-formed results (no timing asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from depth_estimator_bench.cli import bench

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(300)
def test_quick_model_section_writes_json_png_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--out", str(tmp_path), "--quick", "--only", "model", "--archs", "fast", "--device", "cpu"]
    status = bench.main([*args, "--threads", "1", "--no-progress"])

    assert status == 0
    result = json.loads((tmp_path / "model.json").read_text())
    assert result["section"] == "model"
    machine_keys = {"cpu_model", "usable_cores", "memory_gib", "torch", "torchvision", "cuda", "gpu", "date"}
    assert machine_keys | {"torch_threads"} <= set(result["machine"])
    assert result["matmul_peak"]["cpu/fp32/1t"]["gflops"] > 0
    rows = {row["precision"]: row for row in result["models"]}
    assert set(rows) == {"fp32", "onnxruntime"}  # torch and onnxruntime side by side, same run
    onnx_row, row = rows["onnxruntime"], rows["fp32"]
    assert (row["arch"], row["device"], row["precision"], row["threads"]) == ("fast", "cpu", "fp32", 1)
    assert row["setup"] == "cpu/fp32/1t" and onnx_row["setup"] == "cpu/onnxruntime/1t"
    assert onnx_row["peak_setup"] == "cpu/fp32/1t" and onnx_row["forward"]["achieved_gflops"] > 0
    ratio = result["backend_ratios"]["fast 1t"]
    assert ratio["forward"] == pytest.approx(row["forward"]["median_ms"] / onnx_row["forward"]["median_ms"], rel=0.02)
    assert row["camera_size"] == [480, 640]
    assert row["gflops_per_frame"] > 0
    for mode in ("predictor", "forward"):
        stats = row[mode]
        assert stats["n"] >= 3
        assert 0 < stats["median_ms"] <= stats["p95_ms"] <= stats["max_ms"]
        assert stats["per_second"] > 0
    assert row["forward"]["achieved_gflops"] > 0
    assert 0 < row["forward"]["fraction_of_matmul_peak"]
    assert (tmp_path / "model.png").read_bytes()[:8] == PNG_MAGIC

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["quick"] is True
    assert summary["sections"]["model"]["files"]["png"] == str(tmp_path / "model.png")
    assert {r["section"] for r in summary["rows"]} == {"model"}
    table = (tmp_path / "summary.md").read_text()
    assert "| section | what | value | target |" in table
    assert "fast cpu/fp32/1t" in table
    assert "fast cpu/fp32/1t" in capsys.readouterr().out


@pytest.mark.timeout(300)
def test_model_section_measures_the_shipped_checkpoint_at_its_own_input_size(tmp_path: Path) -> None:
    from depth_estimator_ros.models import load_checkpoint

    status = bench.main(["--out", str(tmp_path), "--quick", "--only", "model", "--archs", "shipped", "--device",
                         "cpu", "--threads", "1", "--no-progress"])

    assert status == 0
    rows = json.loads((tmp_path / "model.json").read_text())["models"]
    shipped, meta = load_checkpoint("default")
    assert {r["arch"] for r in rows} == {"shipped"}
    assert {tuple(r["input_size"]) for r in rows} == {tuple(shipped.input_size)}
    assert {r["params_m"] for r in rows} == {round(sum(p.numel() for p in shipped.parameters()) / 1e6, 3)}


def test_unknown_section_is_refused_with_the_allowed_names(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--only", "model,speed"])
    assert "model, pipeline, adaptation, memory" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_quick_accuracy_section_trains_each_model_on_the_same_data_and_scores_it(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path), "--quick", "--only", "accuracy", "--archs", "fast,vgg16_coarse", "--device", "cpu"]
    assert bench.main([*args, "--no-progress"]) == 0

    result = json.loads((tmp_path / "accuracy.json").read_text())
    assert [run["arch"] for run in result["runs"]] == ["fast", "vgg16_coarse"]
    budget = result["settings"]["minutes_per_arch"] * 60
    for run in result["runs"]:
        assert run["train_seconds"] <= budget + 60  # the budget holds (plus the final validation)
        assert Path(run["checkpoint"]).is_file()
        assert run["test"]["rmse"] > 0 and 0 <= run["test"]["delta1"] <= 1
        assert run["trainable_parameters"] > 0
    baseline = result["mean_depth_baseline"]
    assert 0.5 <= baseline["depth_m"] <= 10.0 and baseline["test"]["rmse"] > 0
    # Each trainer's own mean (at its input size) is the same depth up to resizing.
    assert all(abs(run["train_mean_depth"] - baseline["depth_m"]) < 0.1 for run in result["runs"])
    assert (tmp_path / "accuracy.png").read_bytes()[:8] == PNG_MAGIC
    rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
    assert [r["section"] for r in rows] == ["accuracy", "accuracy"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_pipeline_section_streams_camera_frames_and_sensor_depth_through_the_estimator_process(
    tmp_path: Path,
) -> None:
    args = ["--out", str(tmp_path), "--quick", "--only", "pipeline", "--device", "cpu", "--no-progress",
            "--pipeline-rates", "30", "--pipeline-sensor"]
    assert bench.main(args) == 0

    result = json.loads((tmp_path / "pipeline.json").read_text())
    assert result["section"] == "pipeline" and result["settings"]["quick"] is True
    # torch and onnxruntime side by side, each in its own node process
    assert [(r["device"], r["backend"], r["rate_hz"]) for r in result["runs"]] == [
        ("cpu", "torch", 30.0), ("cpu", "onnxruntime", 30.0)
    ]
    assert [r["backend_in_use"] for r in result["runs"]] == ["torch", "onnxruntime"]
    for run in result["runs"]:
        assert run["stream"]["received"] > 0  # depth images came back over DDS from the node's own process
        # the sensor depth reached the node and was compared with its predictions (sensor_scale's default)
        sensor = run["sensor"]
        assert sensor["sensor_depth_in"] > 0 and sensor["sensor_scale_pairs"] > 0, sensor
        assert 0.5 <= sensor["sensor_scale"] <= 2.0
    assert result["settings"]["sensor_depth"].startswith("640x480 16UC1")
    [pair] = result["speedups"]
    assert pair["speedup"] == pytest.approx(pair["torch_ms"] / pair["onnxruntime_ms"], abs=0.01)
    assert (tmp_path / "pipeline.png").read_bytes()[:8] == PNG_MAGIC
    assert {r["section"] for r in json.loads((tmp_path / "summary.json").read_text())["rows"]} == {"pipeline"}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_pipeline_with_rooms_runs_the_shipped_model_plain_then_recognising_a_full_room_memory(
    tmp_path: Path,
) -> None:
    args = ["--out", str(tmp_path), "--quick", "--only", "pipeline", "--device", "cpu", "--no-progress",
            "--pipeline-rates", "30", "--pipeline-backends", "auto", "--pipeline-rooms"]
    assert bench.main(args) == 0

    result = json.loads((tmp_path / "pipeline.json").read_text())
    settings, memory = result["settings"], result["room_memory"]
    assert (settings["checkpoint"], settings["rooms"], settings["recognition_period"]) == ("default", 8, 10)
    assert len(memory["rooms"]) == 8 and memory["rooms"][0]["name"] == memory["camera_room"]
    assert all(room["keyframes"] > 0 and room["delta_tensors"] > 0 for room in memory["rooms"])
    # one node process plain, then one with room_recognition, on the same camera frames
    plain, recognising = result["runs"]
    assert [run["room_recognition"] for run in result["runs"]] == [False, True]
    for run in result["runs"]:
        assert (run["checkpoint"], run["backend"]) == ("default", "auto")
        assert run["backend_in_use"] in ("torch", "onnxruntime")
        assert run["stream"]["received"] > 0  # depth came back over DDS from the node's own process
        assert run["sensor"] is None  # no --pipeline-sensor
    assert plain["recognition"] is None and "room" not in plain["diagnostics"]
    # the node received the memory, described frames and switched to the camera's room (its own /diagnostics)
    status = recognising["diagnostics"]
    assert status["rooms_received"] == 1 and status["rooms_known"] == 8 and status["rooms_rejected"] == 0
    assert status["recognition_mean_s"] > 0 and status["room_recognitions"] >= 1
    assert status["room"] == memory["camera_room"] and status["room_similarity"] >= 0.85
    counters = recognising["recognition"]
    assert counters["descriptors"] > 0 and counters["switches"] == status["room_recognitions"]
    [pair] = result["recognition_pairs"]
    assert pair["plain"]["received_rate_hz"] == plain["stream"]["received_rate_hz"]
    assert pair["recognition"]["e2e_p95_ms"] == recognising["stream"]["latency"]["p95_ms"]
    assert pair["recognition"]["room_in_force"] == memory["camera_room"]
    rows = json.loads((tmp_path / "summary.json").read_text())["rows"]
    assert ["room recognition (8 rooms)" in row["what"] for row in rows] == [False, True]


def test_every_section_name_has_one_runner_in_the_registry() -> None:
    from depth_estimator_bench import SECTIONS

    assert set(bench.SECTION_RUNNERS) == set(SECTIONS) | set(bench.OPTIONAL_SECTIONS)
    with pytest.raises(SystemExit) as exit_info:  # an unknown section: argparse's message, exit 2
        bench.main(["--only", "nope", "--out", "/tmp/never"])
    assert exit_info.value.code == 2
