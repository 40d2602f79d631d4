"""ONNX Runtime backend: export equality per architecture, selection and fallback, live swaps, bad graphs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depth_estimator_ros.learning import onnx_backend
from depth_estimator_ros.learning.predictor import Predictor
from depth_estimator_ros.models import ARCHITECTURES, CANONICAL_FOCAL, build_model, save_checkpoint

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip mode pins it in requirements.txt)")

SMALL = {"vgg16_coarse": {"input_size": (64, 64)}, "vgg16_coarse_conv": {"input_size": (64, 64)},
         "densenet201": {"input_size": (64, 64)}, "fast": {"input_size": (64, 96)}}


def _model(arch: str = "fast", seed: int = 0):
    torch.manual_seed(seed)
    return build_model(arch, **SMALL[arch]).eval()


def _image(seed: int, h: int = 120, w: int = 160) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_exports_and_matches_torch(arch):
    model = _model(arch)
    exported = onnx_backend.export_onnx(model)
    assert exported.max_abs_diff_m <= onnx_backend.EXPORT_TOLERANCE_M
    torch_pred = Predictor(model, "cpu")
    onnx_pred = Predictor(model, "cpu", backend="onnxruntime")
    assert onnx_pred.backend == "onnxruntime" and torch_pred.backend == "torch"
    for seed, focal in ((1, None), (2, 1.3 * CANONICAL_FOCAL)):
        rgb = _image(seed)
        np.testing.assert_allclose(onnx_pred.predict(rgb, focal), torch_pred.predict(rgb, focal), atol=1e-3,
                                   equal_nan=True)


def test_backend_selection_and_fallback(monkeypatch):
    model = _model()
    assert Predictor(model, "cpu", backend="auto").backend == "onnxruntime"
    with pytest.raises(ValueError, match="backend must be one of"):
        Predictor(model, "cpu", backend="tensorflow")
    monkeypatch.setattr(onnx_backend, "onnxruntime_available", lambda: False)
    fallback = Predictor(model, "cpu", backend="auto")
    assert fallback.backend == "torch" and "not installed" in fallback.backend_note

    def refuse(_model):
        raise ValueError("no exporter for this operator")

    monkeypatch.setattr(onnx_backend, "onnxruntime_available", lambda: True)
    monkeypatch.setattr(onnx_backend, "export_onnx", refuse)
    fallback = Predictor(model, "cpu", backend="auto")
    assert fallback.backend == "torch" and "no exporter" in fallback.backend_note
    with pytest.raises(ValueError, match="no exporter"):
        Predictor(model, "cpu", backend="onnxruntime")


def test_live_swap_answers_with_the_new_weights_exactly_like_torch():
    model = _model()
    onnx_pred = Predictor(model, "cpu", backend="onnxruntime")
    torch_pred = Predictor(model, "cpu")
    rgb = _image(3)
    before = onnx_pred.predict(rgb)
    torch.manual_seed(9)
    partial = {k: v + 0.05 * torch.randn_like(v) for k, v in model.state_dict().items()
               if k.startswith("decoder.") and v.is_floating_point()}
    onnx_pred.swap_state(partial, version=7)
    torch_pred.swap_state(partial, version=7)
    after = onnx_pred.predict_versioned(rgb)
    assert after[1] == 7
    assert not np.allclose(after[0], before, equal_nan=True)
    np.testing.assert_allclose(after[0], torch_pred.predict(rgb), atol=1e-3, equal_nan=True)
    with torch.no_grad():  # the caller's tensors changing afterwards (a staging model) change nothing
        for tensor in partial.values():
            tensor.fill_(0.0)
        model.decoder.head.bias.fill_(3.0)
    np.testing.assert_array_equal(onnx_pred.predict(rgb), after[0])
    # a second partial swap keeps the first one's tensors in force
    head = {"decoder.head.bias": torch.full_like(model.decoder.head.bias, 0.3)}
    onnx_pred.swap_state(head)
    torch_pred.swap_state(head)
    np.testing.assert_allclose(onnx_pred.predict(rgb), torch_pred.predict(rgb), atol=1e-3, equal_nan=True)
    # a full state dict, and a refused one that changes nothing
    full = {k: v.clone() for k, v in _model().state_dict().items()}
    onnx_pred.load_state_dict(full)
    np.testing.assert_allclose(onnx_pred.predict(rgb), before, atol=1e-5, equal_nan=True)
    with pytest.raises(ValueError, match="shape"):
        onnx_pred.swap_state({"decoder.head.bias": torch.zeros(3)})
    np.testing.assert_allclose(onnx_pred.predict(rgb), before, atol=1e-5, equal_nan=True)
    with pytest.raises(ValueError, match="focal"):
        onnx_pred.predict(rgb, float("nan"))


def test_decoder_swaps_reuse_the_session_and_encoder_swaps_build_a_new_one():
    model = _model()
    predictor = Predictor(model, "cpu", backend="onnxruntime")
    session = predictor._session
    assert session.live and all(name.startswith("decoder.") for name in session.live)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["decoder.head.bias"] += 0.2
    predictor.load_state_dict(state)  # a full state dict whose encoder is unchanged
    assert predictor._session._session is session._session
    encoder_key = next(k for k in state if k.startswith("encoder.") and state[k].is_floating_point())
    state[encoder_key] = state[encoder_key] * 1.01
    predictor.load_state_dict(state)
    assert predictor._session._session is not session._session
    reference = Predictor(model, "cpu")
    reference.load_state_dict(state)
    rgb = _image(5)
    np.testing.assert_allclose(predictor.predict(rgb), reference.predict(rgb), atol=1e-3, equal_nan=True)


def test_cached_export_reuses_the_file_and_replaces_a_corrupt_one(tmp_path):
    model = _model()
    checkpoint = tmp_path / "m.safetensors"
    save_checkpoint(checkpoint, model)
    exported, path = onnx_backend.cached_export(model, checkpoint)
    assert path.parent == tmp_path and path.suffix == ".onnx" and path.read_bytes() == exported.data
    mtime = path.stat().st_mtime_ns
    _, again = onnx_backend.cached_export(model, checkpoint)
    assert again == path and path.stat().st_mtime_ns == mtime  # reused, not re-exported
    path.write_bytes(b"not an onnx graph")
    with pytest.raises(RuntimeError, match="cannot load"):
        onnx_backend.OnnxSession(path.read_bytes())
    repaired, again = onnx_backend.cached_export(model, checkpoint)
    assert again == path and path.read_bytes() == repaired.data
    predictor = Predictor(model, "cpu", backend="onnxruntime", checkpoint=str(checkpoint))
    assert str(path) in predictor.backend_note


def test_cuda_without_onnxruntime_gpu_is_refused_with_the_reason():
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(ValueError, match="onnxruntime-gpu"):
        onnx_backend.providers_for("cuda")
    assert onnx_backend.providers_for("cpu") == ["CPUExecutionProvider"]


def test_export_onnx_cli_writes_a_standalone_graph_that_matches_torch(tmp_path, checkpoint) -> None:
    import onnxruntime as ort

    from depth_estimator_ros.cli.export_onnx import main
    from depth_estimator_ros.models import load_checkpoint

    out = tmp_path / "model.onnx"
    assert main(["--checkpoint", str(checkpoint), "--out", str(out)]) == 0
    session = ort.InferenceSession(out.read_bytes(), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["rgb", "focal"]  # no weights fed as inputs
    model = load_checkpoint(checkpoint)[0].eval()
    rgb = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    got = session.run(["depth"], {"rgb": rgb, "focal": np.array([1.0], np.float32)})[0]
    with torch.no_grad():
        want = model.forward_unchecked(torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255.0, torch.tensor([1.0]))
    assert np.max(np.abs(got - want.numpy())) < 1e-3
    assert main(["--checkpoint", str(tmp_path / "missing.safetensors"), "--out", str(out)]) == 2
