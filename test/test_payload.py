"""Tests of weight payloads: exact round trip, compact deltas, and every refusal."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save as st_save
from st_helpers import header_length, smallest_length_ending_in, with_header_length

from depth_estimator_ros.adaptation.payload import (
    PayloadError,
    RunOrder,
    export_payload,
    import_payload,
    read_payload,
)
from depth_estimator_ros.models import build_model, load_checkpoint

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


# ------------------------------------------------ issue 26 #1: recognised by structure
def tiny_model() -> torch.nn.Module:
    """A module with a payload identity but only a few tensors: cheap to frame 256 ways."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    model.arch, model.config = "tiny", {"width": 3}
    return model


def assert_same_read(a: tuple[dict, dict], b: tuple[dict, dict]) -> None:
    assert a[0] == b[0]
    assert sorted(a[1]) == sorted(b[1])
    for key, value in a[1].items():
        assert value.dtype == b[1][key].dtype and torch.equal(value, b[1][key]), key


def test_every_low_byte_of_the_header_length_is_read_back_equal() -> None:
    # The first byte of a safetensors blob is the low byte of its header length: 0x80
    # (a pickle's PROTO opcode) is as genuine as any other, and so is 0x80 0x02..0x05.
    payload = export_payload(tiny_model(), 5, run_id="run-a")
    expected = read_payload(payload)
    lengths = [smallest_length_ending_in(payload, bytes([low])) for low in range(256)]
    lengths += [smallest_length_ending_in(payload, bytes([0x80, proto])) for proto in (2, 3, 4, 5)]
    first_bytes = set()
    for length in lengths:
        framed = with_header_length(payload, length)
        assert header_length(framed) == length
        first_bytes.add(framed[0])
        assert_same_read(read_payload(framed), expected)
    assert first_bytes == set(range(256))


@pytest.fixture(scope="module")
def shipped_model():
    return load_checkpoint("default")[0]


#: The versions where a full payload's header length can change (one more digit), 1 .. 100000.
DIGIT_BOUNDARIES = (1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 99999, 100000)


def test_full_payloads_of_every_version_up_to_100000_are_read_back_equal(shipped_model) -> None:
    # Issue 26 #1: from version 10000 on the shipped model's full payload had a 0xC980-byte
    # header, its first byte 0x80, and was refused as a pickle. A full payload of version v
    # is the version-1 payload with the digits of v in its header (safetensors orders the
    # metadata keys at random, and pads the header to a multiple of 8): checked at every
    # digit boundary, where the length changes. Every version from 1 to 100000 is then
    # re-framed (header only, cheap) and its header length is one of those read back in
    # full here.
    run = "0123456789abcdef0123456789abcdef"
    template = export_payload(shipped_model, 1, run_id=run)
    size = header_length(template)
    json_text, data = template[8:8 + size].rstrip(b" "), template[8 + size:]
    key = b'"version":"1"'
    assert json_text.count(key) == 1

    def reframed_length(version: int) -> int:
        return -(-(len(json_text) + len(str(version)) - 1) // 8) * 8

    expected_tensors = read_payload(template)[1]
    read_lengths = set()
    for version in DIGIT_BOUNDARIES:
        payload = export_payload(shipped_model, version, run_id=run)
        length = reframed_length(version)
        header = json_text.replace(key, b'"version":"%d"' % version)
        assert header_length(payload) == length and payload[8 + length:] == data, version
        assert json.loads(payload[8:8 + length]) == json.loads(header), version
        metadata, tensors = read_payload(payload)
        assert metadata["version"] == str(version) and metadata["run"] == run
        assert_same_read(({}, tensors), ({}, expected_tensors))
        read_lengths.add(length)
    # the case of the issue: a full payload whose header length ends in 0x80 (with a run id
    # in the metadata the natural lengths end in 0xA0 / 0xA8 now; frame it that way)
    payload = export_payload(shipped_model, 10000, run_id=run)
    framed = with_header_length(payload, smallest_length_ending_in(payload, b"\x80"))
    assert framed[0] == 0x80
    assert_same_read(read_payload(framed), read_payload(payload))
    assert {reframed_length(version) for version in range(1, 100_001)} == read_lengths


def test_run_order_refuses_older_or_equal_versions_of_a_run_and_accepts_a_new_run() -> None:
    # Issue 26 #8: version 3 after version 5 of the same trainer run is stale; a restarted
    # trainer (a new run id) starts again at 1 and is accepted.
    order = RunOrder()

    def meta(run: str | None, version: int) -> dict[str, str]:
        return {"version": str(version), **({} if run is None else {"run": run})}

    for run, version, stale in [("a", 5, False), ("a", 3, True), ("a", 5, True), ("a", 6, False),
                                ("b", 1, False), ("b", 1, True), ("a", 2, False), (None, 1, False)]:
        problem = order.problem(meta(run, version))
        assert bool(problem) == stale, (run, version, problem)
        if stale:
            assert f"version {version}" in problem and run in problem
        else:
            order.accepted(meta(run, version))
    assert read_payload(export_payload(tiny_model(), 1, run_id="r.1_x-Y"))[0]["run"] == "r.1_x-Y"
    fresh = [read_payload(export_payload(tiny_model(), 1))[0]["run"] for _ in range(2)]
    assert fresh[0] != fresh[1]  # no run_id: a new random one, ordered against no other payload
    for bad in ("", "a" * 65, "has space", "ünïcode"):
        with pytest.raises(ValueError, match="run_id"):
            export_payload(tiny_model(), 1, run_id=bad)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"arch": None}, "lacks arch"),
        ({"tensors": "5"}, "tensors must be a JSON list"),
        ({"tensors": "null"}, "tensors must be a JSON list"),
        ({"tensors": '["0.weight", "0.weight"]'}, "does not match its tensors"),
        ({"config": "[]"}, "config must be a JSON object"),
        ({"config": "{"}, "config is not JSON"),
        ({"version": "-1"}, "version '-1' is not an integer"),
        ({"version": "٣"}, "is not an integer"),
        ({"version": "9" * 5000}, "is not an integer"),  # int() alone raises a plain ValueError here
        ({"version": str(2**63)}, "is not an integer"),
        ({"run": ""}, "run '' is not"),
        ({"run": "x" * 65}, "is not 1-64 characters"),
        ({"arch": ""}, "arch is empty"),
    ],
)
def test_malformed_metadata_is_a_payload_error_naming_the_problem(changes, message) -> None:
    # Issue 26 #5: KeyError / TypeError escaped for a missing arch or tensors = 5 / null.
    metadata, tensors = read_payload(export_payload(tiny_model(), 3, run_id="run-a"))
    metadata = {k: v for k, v in {**metadata, **changes}.items() if v is not None}
    with pytest.raises(PayloadError, match=message):
        import_payload(tiny_model(), st_save(tensors, metadata=metadata))
