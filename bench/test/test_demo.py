"""``make demo`` for a few seconds: a tiny bag through two real ``live`` processes, and ``--retrain``.

The demo's statistics are the prequential evaluator's (pooled over pixels per window and
per half), so they are checked against :func:`learning.metrics.pool_frame_metrics` here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from depth_estimator_ros import models
from depth_estimator_bench import demo
from depth_estimator_bench.cli import demo as demo_cli
from depth_estimator_ros.learning.metrics import pool_frame_metrics

pytestmark = pytest.mark.slow

STREAM = "synthetic:seed=5,frames=16,width=64,height=48,rooms=1"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_demo_plays_a_short_bag_through_live_with_and_without_adaptation(tmp_path: Path, checkpoint: Path) -> None:
    out = tmp_path / "demo"
    # 16 frames at 8 Hz: two seconds of stream per run.
    status = demo_cli.main(["--out", str(out), "--data", STREAM, "--checkpoint", str(checkpoint), "--every", "1",
                            "--sensor-rate", "8", "--size", "64", "48", "--window", "0.5", "--no-progress"])
    assert status == 0
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.png").read_bytes()[:8] == PNG_MAGIC
    assert report["checkpoint"] == str(checkpoint) and report["rate_hz"] == 8.0 and report["image_size"] == [64, 48]
    assert set(report["runs"]) == {"adapted", "frozen"}
    for run in report["runs"].values():
        assert run["frames_played"] == 16
        assert 0 < run["depth_images_scored"] <= 16
        assert run["rmse"] > 0 and 0 <= run["delta1"] <= 1
        windows = run["windows"]
        assert [w["t0"] for w in windows] == [0.0, 0.5, 1.0, 1.5] and windows[-1]["t1"] == 2.0
        assert sum(w["frames"] for w in windows) == run["depth_images_scored"]
        assert sum(w["n_valid"] for w in windows) > 0
    assert report["runs"]["frozen"]["weights_versions"] == 0


def test_summary_and_windows_pool_pixels_as_the_prequential_evaluator_does() -> None:
    run = demo.DemoRun(adapt=True, frames_played=4, duration_s=2.0)
    run.stamps = [0.0, 0.5, 1.0, 1.5]
    run.metrics = [
        {"rmse": 1.0, "abs_rel": 0.1, "delta1": 1.0, "n_valid": 100},
        {"rmse": 3.0, "abs_rel": 0.3, "delta1": 0.0, "n_valid": 300},
        {"rmse": 2.0, "abs_rel": 0.2, "delta1": 0.5, "n_valid": 10},
        {"rmse": 4.0, "abs_rel": 0.4, "delta1": 0.0, "n_valid": 30},
    ]
    summary = run.summary()
    assert summary["rmse"] == pytest.approx(pool_frame_metrics(run.metrics)["rmse"])
    assert summary["rmse"] != pytest.approx(2.5)  # not the mean of the per-frame RMSEs
    assert summary["second_half_rmse"] == pytest.approx(math.sqrt((4 * 10 + 16 * 30) / 40))
    windows = run.window_metrics(1.0)
    assert [w["frames"] for w in windows] == [2, 2]
    assert windows[0]["rmse"] == pytest.approx(math.sqrt((1 * 100 + 9 * 300) / 400))


def test_retrain_pretrains_a_base_checkpoint_with_the_trainer_library(tmp_path: Path) -> None:
    path = tmp_path / "pretrained" / "fast_synthetic.safetensors"
    data = "synthetic:seed=0,frames=12,width=64,height=48,rooms=3"
    assert demo.ensure_base_checkpoint(path, minutes=0.05, data=data, progress=False) == path
    model, meta = models.load_checkpoint(path)
    assert model.arch == "fast" and tuple(model.input_size) == (72, 96)
    assert meta["provenance"]["data"] == [data] and meta["provenance"]["epoch"] >= 0
    assert (tmp_path / "pretrained" / "fast_synthetic_training" / "train_log.json").is_file()
    stamp = path.stat().st_mtime_ns
    assert demo.ensure_base_checkpoint(path, minutes=0.05, data=data, progress=False) == path  # reused
    assert path.stat().st_mtime_ns == stamp
