"""Offline trainer on a tiny synthetic set: outputs, accumulation, early stopping, time budget."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from depth_estimator_ros.data import Frame, open_source
from depth_estimator_ros.learning import trainer
from depth_estimator_ros.learning.trainer import TrainConfig, TrainingRecorder, fit, prepare_frames
from depth_estimator_ros.models import build_model, load_checkpoint

SIZE = (32, 32)


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    source = open_source("synthetic:seed=0,frames=14,width=64,height=48,rooms=2")
    return [source[i] for i in range(len(source))]


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("fast", input_size=SIZE)


def _config(**kwargs) -> TrainConfig:
    return TrainConfig(**{"device": "cpu", "progress": False, "micro_batch": 2, **kwargs})


def test_fit_learns_and_writes_checkpoint_logs_and_plot(frames, tmp_path):
    model = _model()
    from depth_estimator_bench.plots import plot_training  # the harness draws; the runtime calls it back

    result = fit(model, frames[:10], frames[10:], tmp_path, _config(epochs=2, accumulation=2),
                 provenance={"data": "tiny"}, plot=plot_training)
    # 10 frames in micro-batches of 2 -> 5 passes -> steps of 2 + 2 + 1 passes per epoch.
    assert result.steps == 6 and result.epochs_run == 2 and result.stopped == "epochs"
    assert [row["epoch"] for row in result.history] == [0, 1, 2]
    assert result.best_metrics["rmse"] < result.history[0]["val_rmse"]  # training helped
    assert result.best_epoch >= 1
    depths = np.concatenate([f.depth[np.isfinite(f.depth)] for f in prepare_frames(frames[:10], SIZE, progress=False)])
    assert result.train_mean_depth == pytest.approx(float(depths[(depths >= 0.1) & (depths <= 10)].mean()), rel=1e-5)

    loaded, meta = load_checkpoint(result.checkpoint)
    assert meta["provenance"]["data"] == "tiny"
    assert meta["provenance"]["epoch"] == result.best_epoch
    assert meta["provenance"]["train_mean_depth"] == pytest.approx(result.train_mean_depth)
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name].cpu()), name  # model holds the best weights

    with (tmp_path / "train_log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert float(rows[2]["val_rmse"]) == pytest.approx(result.history[2]["val_rmse"])
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["stopped"] == "epochs" and log["config"]["accumulation"] == 2 and log["n_train"] == 10
    assert len(log["step_losses"]) == 10 and all(math.isfinite(v) for v in log["step_losses"])
    assert (tmp_path / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_early_stopping_keeps_the_best_epoch(frames, tmp_path):
    model = _model(1)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    # A learning rate this large only makes the model worse than where it started.
    result = fit(model, frames[:6], frames[10:], tmp_path, _config(epochs=10, patience=2, lr=50.0, augment=False))
    assert result.stopped == "early_stopping"
    assert result.epochs_run == 2 and result.best_epoch == 0
    loaded, meta = load_checkpoint(result.checkpoint)
    assert meta["provenance"]["epoch"] == 0
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, initial[name]), name


def test_time_budget_stops_inside_the_budget(frames, tmp_path):
    budget_s = 4.0
    result = fit(_model(), frames[:10], frames[10:], tmp_path,
                 _config(epochs=1000, patience=1000, minutes=budget_s / 60.0))
    assert result.stopped == "time_budget"
    assert result.seconds < budget_s + 10.0  # generous: the machine is shared
    assert result.checkpoint.is_file()
    assert json.loads((tmp_path / "train_log.json").read_text())["stopped"] == "time_budget"


def test_lone_trailing_frame_joins_the_previous_micro_batch(frames, tmp_path):
    # 5 frames in micro-batches of 4 would leave one frame alone, which batch norm
    # cannot train on at this input size (1x1 coarsest features).
    result = fit(_model(), frames[:5], frames[10:11], tmp_path, _config(epochs=1, micro_batch=4))
    assert result.steps == 1 and result.history[-1]["images"] == 5


def test_rejects_bad_input(frames, tmp_path):
    with pytest.raises(ValueError, match="validation frames"):
        fit(_model(), frames[:2], [], tmp_path, _config())
    no_depth = Frame(rgb=frames[0].rgb, depth=None, stamp=0.0, name="rgb-only")
    with pytest.raises(ValueError, match="rgb-only"):
        fit(_model(), [no_depth], frames[:1], tmp_path, _config())
    empty = Frame(rgb=frames[0].rgb, depth=np.full_like(frames[0].depth, np.nan), stamp=0.0)
    with pytest.raises(ValueError, match="no valid depth"):
        fit(_model(), frames[:2], [empty], tmp_path, _config())
    with pytest.raises(ValueError, match="CUDA"):
        fit(_model(), frames[:2], frames[2:3], tmp_path, _config(amp=True))
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="minutes"):
        TrainConfig(minutes=0)


def test_step_budget_stops_mid_epoch_and_records_the_partial_epoch(frames, tmp_path):
    # 10 frames in micro-batches of 2: 5 steps per epoch; 7 steps end inside epoch 2.
    result = fit(_model(), frames[:10], frames[10:], tmp_path,
                 _config(epochs=5, max_steps=7, cosine=True, encoder_lr_scale=0.5))
    assert result.stopped == "steps" and result.steps == 7 and result.epochs_run == 2
    assert [(row["epoch"], row["partial"], row["images"]) for row in result.history] == [
        (0, False, 0), (1, False, 10), (2, True, 4)]
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["stopped"] == "steps" and log["steps"] == 7 and log["epochs_run"] == 2
    assert len(log["step_losses"]) == 7


def test_a_non_finite_loss_drops_its_step_and_is_counted(frames, tmp_path, monkeypatch):
    calls = []

    def loss_with_a_nan(*args, **kwargs):
        loss = trainer_model_loss(*args, **kwargs)
        calls.append(1)
        return loss * float("nan") if len(calls) == 2 else loss

    trainer_model_loss = trainer.model_loss
    monkeypatch.setattr(trainer, "model_loss", loss_with_a_nan)
    model = _model()
    result = fit(model, frames[:10], frames[10:], tmp_path, _config(epochs=1))
    assert result.steps == 4  # 5 micro-batches, one step dropped
    log = json.loads((tmp_path / "train_log.json").read_text())
    assert log["skipped_steps"] == 1 and len(log["step_losses"]) == 4
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())


def test_recorder_keeps_the_best_weights_and_counts_epochs_without_improvement(tmp_path):
    model = _model()
    log = {"train_mean_depth": 2.0, "n_train": 3, "n_val": 1, "config": {}}
    recorder = TrainingRecorder(tmp_path, model, log, {"data": "none"}, "title")
    metrics = {"rmse": 1.0, "mae": 0.8, "abs_rel": 0.3, "delta1": 0.5}
    common = {"partial": False, "images": 4, "losses": [0.5], "skipped_steps": 0, "stopped": "epochs"}
    assert recorder.record(0, metrics, **{**common, "images": 0, "losses": []}, steps=0)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    first_write = recorder.checkpoint.stat().st_mtime_ns
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert not recorder.record(1, {**metrics, "rmse": 1.5}, **common, steps=2)
    assert recorder.stale == 1 and recorder.best_epoch == 0
    assert recorder.checkpoint.stat().st_mtime_ns == first_write  # a worse epoch writes no checkpoint
    recorder.finish(stopped="early_stopping", epochs_run=1, skipped_steps=0)
    recorder.restore_best()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, best[name]), name
    saved = json.loads((tmp_path / "train_log.json").read_text())
    assert saved["stopped"] == "early_stopping" and saved["best_epoch"] == 0
    assert [row["improved"] for row in saved["epochs"]] == [True, False]
    with (tmp_path / "train_log.csv").open() as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["0", "1"]
    assert load_checkpoint(recorder.checkpoint)[1]["provenance"]["data"] == "none"

