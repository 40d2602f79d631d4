"""Tests of weight payloads: exact round trip, compact deltas, and every refusal."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save as st_save

from depth_estimator_ros.adaptation.payload import (
    PayloadError,
    export_payload,
    import_payload,
    read_payload,
)
from depth_estimator_ros.models import build_model

SIZE = (32, 48)


def small_model(seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return build_model("fast", input_size=SIZE, **kwargs).eval()


def perturb_decoder(model) -> None:
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.add_(0.01 * torch.randn_like(p))


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_round_trip_reproduces_predictions_exactly() -> None:
    sender = small_model(0)
    base = snapshot(sender)
    perturb_decoder(sender)
    payload = export_payload(sender, 7, base_state=base)
    receiver = small_model(0)  # same base weights, separate instance
    x = torch.rand(2, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert not torch.equal(receiver(x), sender(x))
        assert import_payload(receiver, payload) == 7
        assert torch.equal(receiver(x), sender(x))


def test_delta_holds_only_changed_tensors() -> None:
    model = small_model(0)
    base = snapshot(model)
    perturb_decoder(model)
    metadata, tensors = read_payload(export_payload(model, 1, base_state=base))
    changed = {f"decoder.{name}" for name, _ in model.decoder.named_parameters()}
    assert set(tensors) == changed
    assert json.loads(metadata["tensors"]) == sorted(changed)
    assert metadata["arch"] == "fast" and metadata["version"] == "1"
    full = read_payload(export_payload(model, 1))[1]
    assert set(full) == set(model.state_dict())


def expect_refused(model, payload: bytes, match: str) -> None:
    before = snapshot(model)
    with pytest.raises(PayloadError, match=match):
        import_payload(model, payload)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_refuses_other_architecture_and_config() -> None:
    model = small_model(0)
    other_size = build_model("fast", input_size=(64, 64))
    expect_refused(model, export_payload(other_size, 1), "built with")
    expect_refused(model, export_payload(model, 1, arch="vgg16_coarse_conv"), "architecture 'vgg16_coarse_conv'")


def test_refuses_bad_tensors_without_touching_weights() -> None:
    model = small_model(0)
    good = export_payload(model, 3)
    metadata, tensors = read_payload(good)

    def forged(mutate) -> bytes:
        t = {k: v.clone() for k, v in tensors.items()}
        mutate(t)
        meta = dict(metadata, tensors=json.dumps(sorted(t)))
        return st_save(t, metadata=meta)

    first = next(iter(sorted(k for k, v in tensors.items() if v.is_floating_point())))

    def with_nan(t):
        t[first].view(-1)[0] = float("nan")

    def unknown(t):
        t["decoder.extra.weight"] = torch.zeros(3)

    def reshaped(t):
        t[first] = torch.zeros(1, *t[first].shape)

    def retyped(t):
        t[first] = t[first].double()

    # Put the bad tensor last in validation order is irrelevant: nothing is copied first.
    expect_refused(model, forged(with_nan), "NaN or inf")
    expect_refused(model, forged(unknown), "does not exist")
    expect_refused(model, forged(reshaped), "shape")
    expect_refused(model, forged(retyped), "dtype")


def test_refuses_garbage_truncation_and_pickles() -> None:
    model = small_model(0)
    good = export_payload(model, 2)
    expect_refused(model, good[: len(good) // 2], "truncated|not valid")
    expect_refused(model, b"\x00" * 3, "truncated")
    expect_refused(model, b"garbage!" * 20, "truncated|not safetensors|not valid")
    expect_refused(model, pickle.dumps(model.state_dict()), "pickle")
    plain = st_save({"x": torch.zeros(2)})
    expect_refused(model, plain, "metadata")
    foreign = st_save({"x": torch.zeros(2)}, metadata={"format": "something"})
    expect_refused(model, foreign, "format")
    with pytest.raises(PayloadError, match="bytes"):
        import_payload(model, "not bytes")  # type: ignore[arg-type]


def test_export_rejects_bad_version() -> None:
    with pytest.raises(ValueError, match="version"):
        export_payload(small_model(0), -1)
