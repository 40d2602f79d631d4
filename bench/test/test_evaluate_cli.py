"""The ``evaluate`` command end to end: table, CSV, JSON, panels and the mean-depth baseline."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from depth_estimator_bench.cli.evaluate import main
from depth_estimator_ros.data import open_source
from depth_estimator_ros.learning import MetricAccumulator, valid_mask
from depth_estimator_ros.models import build_model, save_checkpoint

DATA = "synthetic:seed=7,frames=6,width=64,height=48,rooms=2"


@pytest.fixture()
def checkpoint(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "model.safetensors"
    save_checkpoint(path, build_model("fast", input_size=(32, 32)), provenance={"train_mean_depth": 2.0})
    return path


def test_evaluate_writes_everything_and_scores_the_mean_baseline(checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["--checkpoint", str(checkpoint), "--data", DATA, "--out", str(out), "--baseline", "mean",
               "--max-frames", "4", "--panels", "2", "--device", "cpu", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "mean depth 2.000 m" in printed and "rmse" in printed and "fast (model.safetensors)" in printed

    report = json.loads((out / "metrics.json").read_text())
    assert report["frames"] == 4 and report["arch"] == "fast"
    # The baseline, recomputed independently over the same evenly spaced frames 0, 2, 3, 5.
    source = open_source(DATA)
    expected = MetricAccumulator()
    for index in (0, 2, 3, 5):
        depth = source[index].depth
        expected.update(np.full_like(depth, 2.0), depth, valid_mask(depth, 0.1, 10.0))
    assert report["baseline_mean"]["rmse"] == pytest.approx(expected.result()["rmse"])
    assert report["baseline_mean"]["n_valid"] == expected.result()["n_valid"] == report["model"]["n_valid"]

    with (out / "per_frame.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["index"]) for r in rows] == [0, 2, 3, 5]
    assert {"rmse", "abs_rel", "delta1", "mean_rmse", "n_valid", "n_missing"} <= set(rows[0])
    panels = sorted(p.name for p in (out / "panels").iterdir())
    assert panels == ["frame_00000.png", "frame_00005.png"]
    assert (out / "panels" / panels[0]).read_bytes()[:4] == b"\x89PNG"


def test_mean_baseline_needs_a_recorded_or_given_mean(tmp_path, capsys):
    torch.manual_seed(0)
    bare = tmp_path / "bare.safetensors"
    save_checkpoint(bare, build_model("fast", input_size=(32, 32)))
    args = ["--checkpoint", str(bare), "--data", DATA, "--out", str(tmp_path / "e"), "--baseline", "mean",
            "--max-frames", "1", "--panels", "0", "--quiet"]
    assert main(args) == 2
    assert "--mean-depth" in capsys.readouterr().err
    assert main([*args, "--mean-depth", "3.0"]) == 0
    report = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert report["baseline_mean"]["mean_depth"] == 3.0
    assert not (tmp_path / "e" / "panels").exists()


def test_evaluate_refuses_a_non_checkpoint(tmp_path, capsys):
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"not a checkpoint")
    assert main(["--checkpoint", str(bogus), "--data", DATA, "--out", str(tmp_path / "e"), "--quiet"]) == 2
    assert "evaluate: error:" in capsys.readouterr().err


def test_structure_metrics_oracle_and_fill_evaluation(checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = main(["--checkpoint", str(checkpoint), "--data", DATA, "--out", str(out), "--max-frames", "2",
               "--panels", "0", "--oracle", "--fill-eval", "--device", "cpu", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "edge_f1" in printed and "si_log" in printed and "sensor via 32x32 (oracle)" in printed
    assert "inpaint_telea" in printed and "fill_depth" in printed
    report = json.loads((out / "metrics.json").read_text())
    for key in ("si_log", "boundary_f1", "boundary_precision", "boundary_recall"):
        assert 0.0 <= report["model"][key] and 0.0 <= report["oracle"][key]
    assert report["oracle"]["si_log"] < report["model"]["si_log"]  # the sensor itself, only blurred
    fill = report["fill_evaluation"]
    assert fill["frames"] == 2 and fill["hidden"] > 0 and fill["fill"]["coverage"] == 1.0
    with (out / "per_frame.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {"si_log", "boundary_f1", "oracle_boundary_f1"} <= set(rows[0])
