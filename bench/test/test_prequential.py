"""Tests of the prequential evaluator: real-time playback, test-then-train, pooling, outputs."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from depth_estimator_ros.adaptation import AdaptationConfig, AdaptationEngine
from depth_estimator_ros.adaptation.sensor_scale import SensorScale
from depth_estimator_bench.prequential import (
    Budget,
    evaluate_frames,
    load_frames,
    plot_result,
    run_prequential,
    stream,
    stream_budgeted,
    write_result,
)
from depth_estimator_ros.data.synthetic import SyntheticRooms
from depth_estimator_ros.learning.predictor import Predictor
from depth_estimator_ros.learning.transforms import frame_focal
from depth_estimator_ros.models import build_model

SIZE = (48, 64)


@pytest.fixture(scope="module")
def frames():
    return load_frames(SyntheticRooms(seed=7, frames=45, width=64, height=48))


def small_model():
    torch.manual_seed(0)
    return build_model("fast", input_size=SIZE).eval()


def small_config(**changes) -> AdaptationConfig:
    base = dict(buffer_capacity=32, min_new_frames=6, max_new_frames=12, batch_size=4, epochs_per_round=1,
                duplicate_threshold=0.0)
    base.update(changes)
    return AdaptationConfig(**base)


def test_frozen_stream_takes_newest_frames_in_real_time(frames) -> None:
    run = stream(Predictor(small_model()), frames, rate_hz=30.0)
    rows = run["per_frame"]
    indices = [r["index"] for r in rows]
    assert indices == sorted(set(indices)) and indices[-1] == len(frames) - 1
    assert run["frames_streamed"] == 45 and run["frames_scored"] == len(rows) >= 2
    # Frame i is never predicted before it is available, and the stream lasts its duration.
    assert all(r["latency_s"] >= 0 for r in rows)
    assert run["wall_s"] >= (len(frames) - 1) / 30.0
    assert {r["version"] for r in rows} == {0} and run["engine"] is None
    assert all(r["n_valid"] > 0 and math.isfinite(r["rmse"]) for r in rows)


def test_adapting_stream_swaps_weights_between_frames(frames) -> None:
    model = small_model()
    predictor = Predictor(model)
    engine = AdaptationEngine(model, small_config())
    run = stream(predictor, frames, rate_hz=20.0, engine=engine)
    assert not engine.running
    stats = run["engine"]
    assert stats["frames_offered"] == len(frames) and stats["rounds_run"] >= 1
    versions = [r["version"] for r in run["per_frame"]]
    assert versions == sorted(versions)
    assert predictor.version == engine.version == stats["rounds_accepted"] + stats["rounds_switched"]
    assert [v["version"] for v in run["versions"]] == sorted({*versions})


def test_run_prequential_writes_json_and_plot(frames, tmp_path) -> None:
    forget = load_frames(SyntheticRooms(seed=1, frames=3, width=64, height=48))
    result = run_prequential(
        small_model(), frames[:30], config=small_config(), rate_hz=20.0, forgetting_frames=forget, window_s=0.5
    )
    s = result["summary"]
    assert s["second_half_rmse_frozen"] > 0 and s["second_half_rmse_adapted"] > 0
    assert s["second_half_rmse_ratio"] == pytest.approx(s["second_half_rmse_adapted"] / s["second_half_rmse_frozen"])
    assert s["second_half_si_log_frozen"] > 0 and 0 <= s["second_half_boundary_f1_adapted"] <= 1
    assert len(result["frozen"]["windows"]) == len(result["adapted"]["windows"]) == 3
    assert result["forgetting"]["before"]["frames"] == 3
    base = evaluate_frames(Predictor(small_model()), forget)
    assert result["forgetting"]["before"]["rmse"] == pytest.approx(base["rmse"])
    if s["final_version"] == 0:
        assert result["forgetting"]["rmse_change_percent"] == pytest.approx(0.0)
    path = write_result(result, tmp_path / "r.json")
    loaded = json.loads(path.read_text())
    assert loaded["settings"]["engine"]["batch_size"] == 4
    png = plot_result(result, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rejects_bad_input(frames) -> None:
    with pytest.raises(ValueError, match="rate_hz"):
        stream(Predictor(small_model()), frames, rate_hz=0.0)
    with pytest.raises(ValueError, match="no frames"):
        load_frames(SyntheticRooms(seed=1, frames=2, width=64, height=48), 0)


def test_the_sensor_scale_rescales_each_frame_by_the_pairs_before_it(frames) -> None:
    """Frames whose sensor depth is 1.7x the model's own: from the second frame on the error is the model's alone."""
    predictor = Predictor(small_model())
    scaled = [replace(f, depth=1.7 * predictor.predict(f.rgb, frame_focal(f))) for f in frames[:6]]
    budget = Budget(round_every=20, lag=20, switch_lag=5)
    own = stream_budgeted(predictor, scaled, budget)["per_frame"]
    scale = SensorScale(predictor.min_depth, predictor.max_depth)
    rows = stream_budgeted(predictor, scaled, budget, scale=scale)["per_frame"]
    assert rows[0]["rmse"] == pytest.approx(own[0]["rmse"])  # no pair before the first frame
    assert all(r["rmse"] < 1e-3 * o["rmse"] for r, o in zip(rows[1:], own[1:]))
    assert scale.pairs == len(scaled)
