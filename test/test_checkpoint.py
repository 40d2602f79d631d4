"""Tests for checkpoint files: bit-exact round trips, atomic writes and every refusal."""

from __future__ import annotations

import json
import os
import pickle
import resource
import signal
from datetime import datetime
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_save
from safetensors.torch import save_file
from st_helpers import smallest_length_ending_in, with_header_length

from depth_estimator_ros import __version__
from depth_estimator_ros.models import ARCHITECTURES, CheckpointError, build_model, load_checkpoint, save_checkpoint
from depth_estimator_ros.models.checkpoint import CHECKPOINT_FORMAT

# The fully connected head is sized by input_size; keep its checkpoint small.
SMALL = {"vgg16_coarse": {"input_size": (64, 64)}}


def _trained_fast() -> torch.nn.Module:
    """Return a fast model whose weights and BN statistics moved away from their init."""
    torch.manual_seed(0)
    model = build_model("fast", max_depth=8.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    rgb = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    model(rgb).mean().backward()
    optimizer.step()
    return model


@pytest.fixture(scope="module")
def fast_model():
    return _trained_fast()


@pytest.fixture()
def good_file(tmp_path, fast_model) -> Path:
    path = tmp_path / "fast.safetensors"
    save_checkpoint(path, fast_model, provenance={"dataset": "synthetic:seed=3", "epochs": 2})
    return path


def _tensors_and_metadata(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}, dict(handle.metadata())


def _rewrite(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> Path:
    out = path.with_name("edited.safetensors")
    out.write_bytes(safetensors_save(tensors, metadata=metadata))
    return out


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_round_trip_is_bit_exact(arch, tmp_path):
    torch.manual_seed(0)
    model = build_model(arch, **SMALL.get(arch, {}))
    path = tmp_path / f"{arch}.safetensors"
    save_checkpoint(path, model)
    loaded, metadata = load_checkpoint(path, arch=arch)
    assert type(loaded) is type(model) and metadata["arch"] == arch
    assert loaded.config == model.config
    original, restored = model.state_dict(), loaded.state_dict()
    assert list(restored) == list(original)
    for name, tensor in original.items():
        assert restored[name].dtype == tensor.dtype
        assert torch.equal(restored[name], tensor), name
    assert not loaded.training


def test_round_trip_of_a_trained_model_and_its_metadata(good_file, fast_model):
    loaded, metadata = load_checkpoint(good_file)
    for name, tensor in fast_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    rgb = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    fast_model.eval()
    with torch.inference_mode():
        assert torch.equal(loaded(rgb), fast_model(rgb))
    assert metadata["format"] == CHECKPOINT_FORMAT and metadata["format_version"] == 1
    assert metadata["config"] == {"input_size": [192, 256], "min_depth": 0.1, "max_depth": 8.0,
                                  "backbone": "mobilenet_v2", "freeze_encoder_bn": False}
    assert metadata["input_size"] == (192, 256)
    assert (metadata["min_depth"], metadata["max_depth"]) == (0.1, 8.0)
    assert metadata["provenance"] == {"dataset": "synthetic:seed=3", "epochs": 2}
    assert metadata["package_version"] == __version__
    assert datetime.fromisoformat(metadata["created"]).tzinfo is not None
    raw = _tensors_and_metadata(good_file)[1]
    assert json.loads(raw["config"])["max_depth"] == 8.0  # plain JSON, readable by any safetensors tool


def test_atomic_write_leaves_only_the_target(good_file, fast_model):
    save_checkpoint(good_file, fast_model)  # overwrite in place
    assert sorted(os.listdir(good_file.parent)) == [good_file.name]


def test_failed_write_keeps_the_previous_file_and_no_temp_file(good_file, fast_model):
    before = good_file.read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # A file-size limit below the checkpoint size makes the write fail half-way, like a full disk.
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) // 2, hard))
    try:
        with pytest.raises(OSError):
            save_checkpoint(good_file, fast_model, provenance={"attempt": 2})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert good_file.read_bytes() == before
    assert sorted(os.listdir(good_file.parent)) == [good_file.name]


def test_saving_non_finite_weights_is_refused_and_keeps_the_previous_file(good_file):
    model = _trained_fast()
    with torch.no_grad():
        model.decoder.head.weight[0, 0, 0, 0] = float("nan")
    before = good_file.read_bytes()
    with pytest.raises(CheckpointError, match="decoder.head.weight"):
        save_checkpoint(good_file, model)
    assert good_file.read_bytes() == before
    assert sorted(os.listdir(good_file.parent)) == [good_file.name]


def test_save_refuses_bad_arguments(tmp_path, fast_model):
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(tmp_path / "x.safetensors", fast_model, provenance={"when": datetime.now()})
    with pytest.raises(TypeError, match="DepthModel"):
        save_checkpoint(tmp_path / "x.safetensors", torch.nn.Linear(2, 2))
    assert os.listdir(tmp_path) == []


def test_missing_file_and_directory_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("keep", [4, 100, 0.5, -1])
def test_truncated_file_is_refused(good_file, keep):
    data = good_file.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    good_file.write_bytes(data[:cut])
    with pytest.raises(CheckpointError, match="truncated|too short"):
        load_checkpoint(good_file)


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(5),
                                   dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load_checkpoint(path)


def test_torch_save_and_pickle_files_are_never_unpickled(tmp_path, fast_model):
    zip_file = tmp_path / "model.pt"
    torch.save(fast_model.state_dict(), zip_file)
    legacy = tmp_path / "model.pkl"
    legacy.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}, protocol=2))
    for path in (zip_file, legacy):
        with pytest.raises(CheckpointError, match="pickle"):
            load_checkpoint(path)


def test_safetensors_without_our_metadata_is_refused(good_file):
    tensors, metadata = _tensors_and_metadata(good_file)
    bare = good_file.with_name("bare.safetensors")
    save_file(tensors, str(bare))
    with pytest.raises(CheckpointError, match="no metadata"):
        load_checkpoint(bare)
    with pytest.raises(CheckpointError, match="format 'other.format'"):
        load_checkpoint(_rewrite(good_file, tensors, {**metadata, "format": "other.format"}))
    with pytest.raises(CheckpointError, match="lacks config"):
        load_checkpoint(_rewrite(good_file, tensors, {k: v for k, v in metadata.items() if k != "config"}))
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(_rewrite(good_file, tensors, {**metadata, "format_version": "99"}))
    with pytest.raises(CheckpointError, match="unknown architecture 'unet'"):
        load_checkpoint(_rewrite(good_file, tensors, {**metadata, "arch": "unet"}))
    with pytest.raises(CheckpointError, match="does not build"):
        load_checkpoint(_rewrite(good_file, tensors, {**metadata, "config": '{"min_depth": -1}'}))


def test_another_architecture_is_refused_by_name(good_file):
    with pytest.raises(CheckpointError, match="checkpoint is for 'fast', expected 'densenet201'"):
        load_checkpoint(good_file, arch="densenet201")
    tensors, metadata = _tensors_and_metadata(good_file)
    relabelled = _rewrite(good_file, tensors, {**metadata, "arch": "densenet201", "config": "{}"})
    with pytest.raises(CheckpointError, match="checkpoint is for 'densenet201', expected 'fast'"):
        load_checkpoint(relabelled, arch="fast")
    with pytest.raises(CheckpointError, match="do not match architecture 'densenet201'"):
        load_checkpoint(relabelled)
    with pytest.raises(ValueError, match="vgg16_coarse_conv"):
        load_checkpoint(good_file, arch="fastest")


def test_tensors_not_matching_the_architecture_are_refused(good_file):
    tensors, metadata = _tensors_and_metadata(good_file)
    renamed = dict(tensors)
    renamed["decoder.extra.weight"] = renamed.pop("decoder.head.weight")
    with pytest.raises(CheckpointError, match=r"1 missing \[decoder.head.weight\], 1 unexpected"):
        load_checkpoint(_rewrite(good_file, renamed, metadata))
    reshaped = {**tensors, "decoder.head.bias": torch.zeros(2)}
    with pytest.raises(CheckpointError, match=r"decoder.head.bias \(2,\)"):
        load_checkpoint(_rewrite(good_file, reshaped, metadata))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_tensors_are_refused(good_file, value):
    tensors, metadata = _tensors_and_metadata(good_file)
    poisoned = tensors["decoder.head.weight"].clone()
    poisoned.view(-1)[3] = value
    with pytest.raises(CheckpointError, match="NaN/inf.*decoder.head.weight"):
        load_checkpoint(_rewrite(good_file, {**tensors, "decoder.head.weight": poisoned}, metadata))


def test_map_location_places_the_model(good_file):
    model, _ = load_checkpoint(good_file, map_location=torch.device("cpu"))
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_a_float16_file_loads_as_the_float32_model_it_rounds(tmp_path, fast_model):
    path = tmp_path / "half.safetensors"
    save_checkpoint(path, fast_model, dtype=torch.float16)
    full = tmp_path / "full.safetensors"
    save_checkpoint(full, fast_model)
    assert path.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_checkpoint(path)
    for name, tensor in fast_model.state_dict().items():
        got = loaded.state_dict()[name]
        assert got.dtype == tensor.dtype, name
        if tensor.is_floating_point():
            assert torch.equal(got, tensor.half().to(tensor.dtype)), name


@pytest.mark.parametrize("low", [b"\x80", b"\x80\x02", b"\x80\x05", b"PK"])
def test_a_checkpoint_is_recognised_by_its_structure_not_its_first_bytes(good_file, fast_model, low):
    # Issue 26 #1: the first bytes are the header length's; a genuine file may start like a pickle.
    data = good_file.read_bytes()
    framed = with_header_length(data, smallest_length_ending_in(data, low))
    assert framed.startswith(low)
    good_file.write_bytes(framed)
    loaded, _ = load_checkpoint(good_file)
    for name, tensor in fast_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
