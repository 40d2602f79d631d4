"""The ``train`` command end to end with tiny settings."""

from __future__ import annotations

import json

import numpy as np
import torch

from depth_estimator_ros.cli.train import main
from depth_estimator_ros.models import load_checkpoint, save_checkpoint, build_model

DATA = "synthetic:seed=1,frames=12,width=64,height=48,rooms=2"


def test_train_writes_outputs_split_and_copy(tmp_path, capsys):
    out, copy = tmp_path / "run", tmp_path / "pretrained" / "tiny.safetensors"
    rc = main(["--data", DATA, "--input-size", "32", "32", "--epochs", "1", "--micro-batch", "4",
               "--out", str(out), "--checkpoint", str(copy), "--device", "cpu", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "validation RMSE" in printed and str(copy) in printed
    for name in ("best.safetensors", "train_log.csv", "train_log.json", "loss_curve.png", "split.json"):
        assert (out / name).is_file(), name
    split = json.loads((out / "split.json").read_text())
    parts = [split["train"], split["val"], split["test"]]
    assert sorted(sum(parts, [])) == list(range(12)) and [len(p) for p in parts] == [10, 1, 1]
    assert copy.read_bytes() == (out / "best.safetensors").read_bytes()
    model, meta = load_checkpoint(copy)
    assert model.arch == "fast" and model.input_size == (32, 32)
    assert meta["provenance"]["data"] == DATA and meta["provenance"]["command"].startswith("train --data")
    assert np.isfinite(meta["provenance"]["train_mean_depth"])


def test_train_fine_tunes_from_init_and_refuses_other_arch(tmp_path, capsys):
    torch.manual_seed(0)
    init = tmp_path / "init.safetensors"
    save_checkpoint(init, build_model("fast", input_size=(32, 32)))
    rc = main(["--data", DATA, "--init", str(init), "--scope", "decoder", "--epochs", "1", "--micro-batch", "6",
               "--out", str(tmp_path / "ft"), "--device", "cpu", "--quiet"])
    assert rc == 0
    tuned, meta = load_checkpoint(tmp_path / "ft" / "best.safetensors")
    assert tuned.input_size == (32, 32) and meta["provenance"]["init"] == str(init)
    capsys.readouterr()
    rc = main(["--data", DATA, "--init", str(init), "--arch", "densenet201", "--out", str(tmp_path / "x"), "--quiet"])
    assert rc == 2
    assert "expected 'densenet201'" in capsys.readouterr().err


def test_train_reports_bad_data_without_traceback(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "train: error:" in capsys.readouterr().err
    assert main(["--data", "synthetic:seed=1,frames=3,width=64,height=48", "--out", str(tmp_path / "o"),
                 "--quiet"]) == 2
    assert "validation" in capsys.readouterr().err
