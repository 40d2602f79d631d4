"""The ``train`` command end to end with tiny settings."""

from __future__ import annotations

import json

import numpy as np
import torch

from depth_estimator_bench.cli.train import main
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
    (only,) = split["sources"].values()
    parts = [only["train"], only["val"], only["test"]]
    assert sorted(sum(parts, [])) == list(range(12)) and [len(p) for p in parts] == [10, 1, 1]
    best, _ = load_checkpoint(out / "best.safetensors")
    model, meta = load_checkpoint(copy)
    assert all(torch.equal(t, best.state_dict()[k]) for k, t in model.state_dict().items())
    assert model.arch == "fast" and model.input_size == (32, 32)
    assert meta["provenance"]["data"] == [DATA] and meta["provenance"]["command"].startswith("train --data")
    assert np.isfinite(meta["provenance"]["train_mean_depth"])
    sidecar = json.loads(copy.with_suffix(".json").read_text())
    assert sidecar["provenance"] == meta["provenance"] and sidecar["stored_dtype"] == "float32"


def test_train_on_a_folder_of_rooms_leaves_rooms_out_and_budgets_by_steps(tmp_path, capsys, write_room):
    rooms = tmp_path / "rooms"
    write_room(rooms / "near", 1, 6, 1.0)
    write_room(rooms / "far", 2, 6, 4.0)
    write_room(rooms / "held_out", 3, 4, 2.0)
    (rooms / "SOURCES.tsv").write_text("name\tlicense\nnear\tMIT\nfar\tCC BY\nheld_out\tnone\n")
    out, copy = tmp_path / "run", tmp_path / "ship" / "base.safetensors"
    rc = main(["--data", str(rooms), "--leave-out", "held_out", "--input-size", "32", "32", "--steps", "3",
               "--cosine", "--max-zoom", "1.5", "--min-room-frames", "8", "--micro-batch", "4",
               "--split", "0.6", "0.2", "0.2", "--out", str(out), "--checkpoint", str(copy), "--half",
               "--device", "cpu", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    log = json.loads((out / "train_log.json").read_text())
    assert log["steps"] == 3 and log["stopped"] == "steps"
    assert log["n_train"] == 16  # each room's 4 training frames repeated to 8
    _, meta = load_checkpoint(copy)
    provenance = meta["provenance"]
    assert provenance["rooms"] == {"far": 6, "near": 6} and provenance["leave_out"] == ["held_out"]
    assert [row["name"] for row in provenance["licences"]] == ["near", "far"]
    assert json.loads(copy.with_suffix(".json").read_text())["stored_dtype"] == "float16"
    split = json.loads((out / "split.json").read_text())
    assert set(split["sources"]) == {"near", "far"}
    capsys.readouterr()
    assert main(["--data", str(rooms), "--leave-out", "kitchen", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "no such room" in capsys.readouterr().err


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
