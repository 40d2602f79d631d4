"""Predictor: image-sized metric output, range masking, and tear-free weight swaps."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from depth_estimator_ros.learning.predictor import Predictor
from depth_estimator_ros.models import CANONICAL_FOCAL, DepthModel, TrainingDefaults, build_model

SIZE = (64, 64)


def _fast(seed: int) -> DepthModel:
    torch.manual_seed(seed)
    model = build_model("fast", input_size=SIZE)
    # The untrained head starts near-constant; a wide one makes weight sets easy to tell apart.
    nn.init.normal_(model.decoder.head.weight, std=0.3)
    return model


def _image(seed: int, h: int = 48, w: int = 80) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


class _RampModel(DepthModel):
    """Predicts a fixed left-to-right ramp from -1 m to 20 m, ignoring the image."""

    arch = "ramp"
    defaults = TrainingDefaults(lr=1e-3, weight_decay=0.0, loss="l1", micro_batch=1, accumulation=1)

    def __init__(self) -> None:
        super().__init__(input_size=(32, 32), min_depth=0.5, max_depth=10.0, encoder_weights=None)
        self.encoder = nn.Identity()
        self.decoder = nn.Identity()
        self.ramp = nn.Parameter(torch.linspace(-1.0, 20.0, 32).view(1, 1, 1, 32).repeat(1, 1, 32, 1))

    def predict_depth(self, x: Tensor) -> Tensor:
        return self.ramp.expand(x.shape[0], 1, *x.shape[-2:])

    def _scope_modules(self, scope: str) -> list[nn.Module]:
        return [self]


def test_predict_shape_dtype_range_and_model_is_a_private_eval_copy():
    model = _fast(0)
    model.train()
    predictor = Predictor(model, "cpu")
    depth = predictor.predict(_image(0))
    assert depth.shape == (48, 80) and depth.dtype == np.float32
    assert np.isfinite(depth).all()
    assert depth.min() >= model.min_depth and depth.max() <= model.max_depth
    assert model.training and not predictor.model.training
    assert predictor.model is not model
    assert not any(p.requires_grad for p in predictor.model.parameters())
    assert predictor.version == 0


def test_predict_batch_matches_single_predictions_at_each_size():
    predictor = Predictor(_fast(0))
    images = [_image(1, 48, 80), _image(2, 70, 50), _image(3, 64, 64)]
    outs = predictor.predict_batch(images)
    assert [o.shape for o in outs] == [(48, 80), (70, 50), (64, 64)]
    for image, out in zip(images, outs):
        np.testing.assert_allclose(out, predictor.predict(image), rtol=1e-4, atol=1e-4)
    assert predictor.predict_batch([]) == []


def test_upsampling_matches_torch_bilinear_of_the_masked_map():
    """The host-side upsampling gives torch's bilinear (align_corners=False) result of the range-masked map."""
    predictor = Predictor(_RampModel())
    depth = predictor.predict(_image(0, 96, 160))  # 32x32 ramp -> 96x160
    ramp = _RampModel().ramp.detach()
    masked = torch.where((ramp > 0.5) & (ramp < 10.0), ramp, torch.nan)
    reference = torch.nn.functional.interpolate(masked, size=(96, 160), mode="bilinear", align_corners=False)[0, 0]
    reference = reference.numpy()
    inside = np.isfinite(reference)
    assert np.array_equal(np.isfinite(depth), inside)
    np.testing.assert_allclose(depth[inside], reference[inside], rtol=1e-5, atol=1e-5)


def test_timings_split_the_call_into_prepare_forward_finish():
    predictor = Predictor(_fast(0))
    timings: dict[str, float] = {}
    started = time.perf_counter()
    depth, version = predictor.predict_versioned(_image(1, 120, 160), timings=timings)
    elapsed = time.perf_counter() - started
    assert depth.shape == (120, 160) and version == 0
    assert set(timings) == {"prepare", "forward", "finish"}
    assert all(seconds > 0 for seconds in timings.values())
    assert sum(timings.values()) <= elapsed
    np.testing.assert_array_equal(depth, predictor.predict(_image(1, 120, 160)))


def test_nan_exactly_outside_range():
    predictor = Predictor(_RampModel())
    depth = predictor.predict(_image(0, 32, 32))  # same size: no resampling of the ramp
    ramp = torch.linspace(-1.0, 20.0, 32).numpy()
    expected_valid = (ramp > 0.5) & (ramp < 10.0)
    assert np.array_equal(np.isfinite(depth[0]), expected_valid)
    np.testing.assert_allclose(depth[0][expected_valid], ramp[expected_valid], rtol=1e-6)


@pytest.mark.parametrize("focal_scale", [1e-6, 0.05, 7.0, 1e6])
def test_depth_the_range_clamp_produced_is_never_valid(focal_scale):
    """Issue 26 (3): an absurd focal clamped every pixel to min/max depth, published as valid depth."""
    model = _fast(0)
    predictor = Predictor(model)
    rgb = _image(4, 48, 80)
    depth = predictor.predict(rgb, focal=CANONICAL_FOCAL * focal_scale)
    valid = np.isfinite(depth)
    assert ((depth[valid] > model.min_depth) & (depth[valid] < model.max_depth)).all()
    if focal_scale in (1e-6, 1e6):  # every pixel clamped
        assert not valid.any()
    # the same model with the canonical camera: nothing saturates, everything is valid
    assert np.isfinite(predictor.predict(rgb)).all()


def test_outputs_at_the_range_limits_are_nan_also_when_the_model_saturated_itself():
    """A pixel exactly at min_depth or max_depth (the head's sigmoid saturated) is NaN, one just inside is valid."""
    model = _RampModel()
    with torch.no_grad():
        model.ramp[..., :4] = model.min_depth
        model.ramp[..., 4:8] = model.min_depth * 1.001
        model.ramp[..., 8:12] = model.max_depth * 0.999
        model.ramp[..., 12:] = model.max_depth
    depth = Predictor(model).predict(_image(0, 32, 32))
    assert np.isnan(depth[:, :4]).all() and np.isnan(depth[:, 12:]).all()
    assert np.isfinite(depth[:, 4:12]).all()


def test_nan_weights_give_all_nan_not_garbage():
    predictor = Predictor(_fast(0))
    predictor.swap_state({"decoder.head.bias": torch.tensor([float("nan")])})
    assert np.isnan(predictor.predict(_image(0))).all()


def test_rejected_state_leaves_model_and_version_alone():
    predictor = Predictor(_fast(0))
    before = predictor.predict(_image(0))
    with pytest.raises(ValueError, match="lacks: \\['nope'\\]"):
        predictor.swap_state({"nope": torch.zeros(1), "decoder.head.bias": torch.tensor([3.0])})
    with pytest.raises(ValueError, match="shape"):
        predictor.swap_state({"decoder.head.bias": torch.zeros(2)})
    with pytest.raises(ValueError, match="lacks tensors"):
        predictor.load_state_dict({"decoder.head.bias": torch.tensor([3.0])})
    with pytest.raises(TypeError, match="state dict"):
        predictor.swap_state([1, 2])
    assert predictor.version == 0
    np.testing.assert_array_equal(predictor.predict(_image(0)), before)


def test_bad_arguments():
    with pytest.raises(ValueError, match="CUDA"):
        Predictor(_RampModel(), "cpu", amp=True)
    with pytest.raises(ValueError, match="auto"):
        Predictor(_RampModel(), "tpu")
    with pytest.raises(TypeError, match="uint8"):
        Predictor(_RampModel()).predict(np.zeros((32, 32, 3), np.float32))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            Predictor(_RampModel(), "cuda")


def test_state_dict_snapshot_round_trips_and_versions_follow_swaps():
    a, b = _fast(0), _fast(1)
    predictor = Predictor(a)
    image = _image(4)
    out_a = predictor.predict(image)
    predictor.load_state_dict(b.state_dict(), version=7)
    assert predictor.version == 7
    snapshot = predictor.state_dict()
    assert all(torch.equal(snapshot[k], v) for k, v in b.state_dict().items())
    np.testing.assert_allclose(predictor.predict(image), Predictor(b).predict(image), rtol=1e-5)
    predictor.swap_state(lambda model: model.load_state_dict(a.state_dict()))
    assert predictor.version == 8
    np.testing.assert_allclose(predictor.predict(image), out_a, rtol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_load_over_base_swaps_only_what_changes_and_returns_left_out_tensors_to_the_base(backend):
    base, other = _fast(0), _fast(1)
    predictor = Predictor(base, backend=backend)
    image = _image(6)
    at_base = predictor.predict(image)
    decoder = {k: v for k, v in other.state_dict().items() if k.startswith("decoder.")}
    copies = []
    real_stage = predictor._stage
    predictor._stage = lambda state, strict: copies.append(sorted(state)) or real_stage(state, strict=strict)

    predictor.load_over_base(decoder, version=3)  # a decoder payload
    mixed = build_model("fast", input_size=SIZE)
    mixed.load_state_dict({**base.state_dict(), **decoder})
    np.testing.assert_allclose(predictor.predict(image), Predictor(mixed).predict(image), rtol=1e-4, atol=1e-5)
    assert predictor.version == 3 and copies[-1] == sorted(decoder)  # the encoder is never copied

    head = {"decoder.head.bias": torch.tensor([0.5])}
    predictor.load_over_base(head, version=4)  # the rest of the decoder goes back to the base
    assert copies[-1] == sorted(decoder)
    mixed.load_state_dict({**base.state_dict(), **head})
    np.testing.assert_allclose(predictor.predict(image), Predictor(mixed).predict(image), rtol=1e-4, atol=1e-5)

    with pytest.raises(ValueError, match="shape"):  # refused: nothing changes, not even the record
        predictor.load_over_base({"decoder.head.bias": torch.zeros(2)}, version=9)
    assert predictor.version == 4
    predictor.load_over_base({}, version=5)  # the base again
    assert copies[-1] == ["decoder.head.bias"]
    np.testing.assert_allclose(predictor.predict(image), at_base, rtol=1e-5, atol=1e-6)


def test_a_model_resolution_prediction_upsampled_later_is_the_prediction():
    predictor = Predictor(_fast(3))
    image = _image(7, 96, 160)
    small, version = predictor.predict_versioned(image, upsample=False)
    assert small.shape == predictor.input_size and version == 0
    np.testing.assert_array_equal(predictor.upsample(small, image.shape[:2]), predictor.predict(image))


def test_take_model_runs_the_callers_model_without_a_copy():
    model = _fast(2)
    predictor = Predictor(model, take_model=True)
    assert predictor.model is model
    assert Predictor(model).model is not model


def test_torch_on_a_cpu_runs_channels_last_by_default_with_the_same_depth_and_contiguous_snapshots():
    model = _fast(3)
    default, plain = Predictor(model), Predictor(model, channels_last=False)
    assert default.channels_last and not plain.channels_last
    assert default.model.decoder.head.weight.is_contiguous(memory_format=torch.channels_last)
    image = _image(5)
    np.testing.assert_allclose(default.predict(image), plain.predict(image), rtol=1e-5, atol=1e-5)
    default.load_state_dict(_fast(4).state_dict(), version=2)  # swaps copy into the channels-last tensors
    np.testing.assert_allclose(default.predict(image), Predictor(_fast(4)).predict(image), rtol=1e-5)
    snapshot = default.state_dict()
    assert all(t.is_contiguous() for t in snapshot.values())  # safetensors refuses strided tensors


def test_swaps_under_concurrent_predicts_never_mix_weights():
    """Two threads predict while a third flips between two weight sets: every frame is pure A or pure B."""
    a, b = _fast(0), _fast(1)
    state_a, state_b = a.state_dict(), b.state_dict()
    image = _image(5)
    predictor = Predictor(a)
    ref = {0: predictor.predict(image)}
    predictor.load_state_dict(state_b, version=1)
    ref[1] = predictor.predict(image)
    assert np.abs(ref[0] - ref[1]).max() > 1e-2  # the two weight sets are told apart
    predictor.load_state_dict(state_a, version=0)

    stop = threading.Event()
    results: list[tuple[np.ndarray, int]] = []
    errors: list[BaseException] = []

    def predict_loop() -> None:
        try:
            while not stop.is_set():
                results.append(predictor.predict_versioned(image))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def swap_loop() -> None:
        try:
            k = 0
            while not stop.is_set():
                k += 1
                # Alternate full and partial (per-tensor) swaps and the callable form.
                if k % 3 == 0:
                    predictor.swap_state(lambda m, s=(state_a if k % 2 == 0 else state_b): m.load_state_dict(s),
                                         version=k % 2 and 1 or 0)
                elif k % 2:
                    predictor.swap_state(state_b, version=1)
                else:
                    predictor.load_state_dict(state_a, version=0)
                stop.wait(0.001)  # let the predictors take the lock between swaps
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=predict_loop) for _ in range(2)] + [threading.Thread(target=swap_loop)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20.0
    while len(results) < 40 and time.monotonic() < deadline and not errors:
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join(timeout=10.0)
        assert not t.is_alive()
    assert not errors, errors
    assert len(results) >= 40
    versions = {v for _, v in results}
    assert versions == {0, 1}
    for depth, version in results:
        np.testing.assert_allclose(depth, ref[version], rtol=1e-5, atol=1e-5)
