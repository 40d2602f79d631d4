"""Tests of the tour evaluation: visit parsing, per-visit summaries, the deterministic budgeted mode."""

from __future__ import annotations

import json
import math

import pytest
import torch

from depth_estimator_bench.cli.tour_eval import main
from depth_estimator_bench.prequential import Budget
from depth_estimator_bench.tour import Visit, load_tour, parse_tour, run_tour, summarise_visits
from depth_estimator_ros.adaptation import AdaptationConfig
from depth_estimator_ros.models import build_model

ROOM_A = "synthetic:seed=8,frames=36,width=64,height=48"
ROOM_B = "synthetic:seed=3,frames=24,width=64,height=48"
TOUR = f"a={ROOM_A}@0:18;b={ROOM_B};a={ROOM_A}@18:36"


def test_parse_tour_labels_ranges_and_separators() -> None:
    assert parse_tour("/data/kitchen@0:300,lab=/data/rooms/lab,/data/kitchen@300:") == [
        Visit("kitchen", "/data/kitchen", 0, 300),
        Visit("lab", "/data/rooms/lab", 0, None),
        Visit("kitchen", "/data/kitchen", 300, None),
    ]
    assert parse_tour(TOUR)[1] == Visit("b", ROOM_B, 0, None)
    for bad in ("", "a@5:2", "a@x:3", "a@3"):
        with pytest.raises(ValueError):
            parse_tour(bad)


def _row(index: int, rmse: float, room=None) -> dict:
    return {"index": index, "t": index / 10, "rmse": rmse, "abs_rel": 0.1, "delta1": 0.9, "n_valid": 100, "room": room}


def test_summarise_visits_compares_runs_per_visit_and_a_return_with_the_previous_end() -> None:
    visits = [Visit("a", "x", 0, 20), Visit("b", "y"), Visit("a", "x", 20, 40)]
    spans = [(0, 20), (20, 30), (30, 50)]
    frozen = [_row(i, 1.0) for i in range(50)]
    # adapted: visit a learns (0.5 at its end), b is worse at its start, the return starts at 0.6
    adapted = [_row(i, 1.0 if i < 10 else 0.5, "room-1") for i in range(20)]
    adapted += [_row(i, 1.5 if i < 23 else 0.9, None) for i in range(20, 30)]
    adapted += [_row(i, 0.6, "room-1") for i in range(30, 50)]
    out = summarise_visits(visits, spans, frozen, adapted, rate_hz=10.0, first_s=0.5, window_s=0.5)
    a, b, again = out
    assert not a["return"] and again["return"] and a["frames"] == 20
    assert a["first_adapted"]["rmse"] == pytest.approx(1.0) and a["adapted"]["rmse"] < a["frozen"]["rmse"]
    assert b["first_adapted"]["rmse"] > b["first_frozen"]["rmse"]
    assert b["worst_window_ratio_after_first"] == pytest.approx(0.9)
    assert again["previous_end_adapted_rmse"] == pytest.approx(0.5)
    assert again["return_start_ratio"] == pytest.approx(1.2)
    assert again["room_at_start"] == "room-1"
    assert b["last_second_ratio"] == pytest.approx(0.9) and a["last_second_ratio"] == pytest.approx(0.5)


def test_the_budgeted_tour_is_deterministic_and_remembers_rooms() -> None:
    visits = parse_tour(TOUR)
    frames, spans = load_tour(visits)
    assert spans == [(0, 18), (18, 42), (42, 60)]
    config = AdaptationConfig(buffer_capacity=32, min_new_frames=4, max_new_frames=8, holdout_frames=2,
                              duplicate_threshold=0.0)

    def once() -> dict:
        torch.manual_seed(0)
        model = build_model("fast", input_size=(48, 64)).eval()
        return run_tour(model, visits, frames, spans, config=config, budget=Budget(6, 2, 1), rate_hz=10.0,
                        forgetting_frames=frames[:5], first_s=0.6, window_s=0.6)

    first, second = once(), once()
    assert first["per_frame"] == second["per_frame"]  # same frames, same rounds, same weights: no clock
    s = first["summary"]
    assert s["rounds_run"] >= 6 and s["rooms"] >= 1
    assert len(first["visits"]) == 3 and first["visits"][2]["return"]
    assert math.isfinite(first["visits"][2]["return_start_ratio"])
    assert first["recognition"][0]["expected"] == []  # a first visit: the right answer is the base
    assert "by_appearance_rmse_change_percent" in first["forgetting"]


def test_tour_eval_writes_json_and_plot(tmp_path, checkpoint) -> None:
    code = main([
        "--tour", TOUR, "--checkpoint", str(checkpoint), "--budget", "6:2:2", "--rate", "10",
        "--forget-data", ROOM_B, "--forget-frames", "4", "--min-new", "4", "--max-new", "8",
        "--duplicate-threshold", "0", "--out", str(tmp_path), "--no-progress",
    ])
    assert code == 0
    result = json.loads((tmp_path / "tour_eval.json").read_text())
    assert result["settings"]["mode"] == "budget"
    assert result["settings"]["budget"] == {"round_every": 6, "lag": 2, "switch_lag": 2}
    assert [v["label"] for v in result["visits"]] == ["a", "b", "a"]
    assert (tmp_path / "tour_eval.png").stat().st_size > 1000
    assert main(["--tour", "a@5:2", "--out", str(tmp_path)]) == 2  # a bad visit: a message, exit 2
