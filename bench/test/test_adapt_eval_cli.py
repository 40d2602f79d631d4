"""End-to-end test of the adapt_eval command on a tiny synthetic stream."""

from __future__ import annotations

import json

import pytest

from depth_estimator_bench.cli.adapt_eval import main
from depth_estimator_ros.models import build_model, save_checkpoint


def test_adapt_eval_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "ae"
    status = main([
        "--data", "synthetic:seed=3,frames=30,width=64,height=48",
        "--forget-data", "synthetic:seed=0,frames=2,width=64,height=48",
        "--base-data", "synthetic:seed=0,frames=4,width=64,height=48", "--base-replay", "0.25",
        "--input-size", "48x64", "--rate", "20", "--min-new", "6", "--max-new", "8", "--epochs", "1",
        "--buffer", "16", "--window", "0.5", "--out", str(out), "--no-progress",
    ])
    assert status == 0
    result = json.loads((out / "adapt_eval.json").read_text())
    assert (out / "adapt_eval.png").read_bytes()[:4] == b"\x89PNG"
    assert result["settings"]["start"] == "cold" and result["settings"]["frames"] == 30
    assert result["settings"]["base_frames"] == 4 and result["settings"]["engine"]["base_replay_fraction"] == 0.25
    assert result["settings"]["engine"]["scope"] == "all"  # a cold start has no encoder worth keeping
    assert result["summary"]["rounds_run"] >= 1
    assert result["forgetting"]["frames"] == 2
    assert "second-half RMSE" in capsys.readouterr().out


def test_adapt_eval_from_a_checkpoint_adapts_the_decoder_unless_told(tmp_path) -> None:
    checkpoint = tmp_path / "base.safetensors"
    save_checkpoint(checkpoint, build_model("fast", input_size=(48, 64)))
    common = ["--data", "synthetic:seed=3,frames=12,width=64,height=48", "--forget-data", "none",
              "--checkpoint", str(checkpoint), "--rate", "20", "--min-new", "4", "--max-new", "6", "--epochs", "1",
              "--buffer", "8", "--window", "0.5", "--no-progress"]
    for extra, scope in (([], "decoder"), (["--scope", "all"], "all")):
        out = tmp_path / scope
        assert main([*common, *extra, "--out", str(out)]) == 0
        assert json.loads((out / "adapt_eval.json").read_text())["settings"]["engine"]["scope"] == scope


def test_adapt_eval_refuses_bad_arguments(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--cold-start", "--checkpoint", str(tmp_path / "x.safetensors")])
    assert main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path), "--no-progress"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["--lr", "-1", "--out", str(tmp_path), "--no-progress"]) == 2
