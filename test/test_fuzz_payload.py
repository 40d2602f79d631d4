"""Property-based fuzzing (hypothesis) of the weight payload reader and the checkpoint loader (issue 26).

Random bytes, valid blobs with flipped, cut or appended bytes, every header length and
random metadata. The properties: nothing but the documented error is raised
(:class:`PayloadError`, :class:`CheckpointError`), cut or padded blobs are always refused,
and what is accepted is exactly what the bytes say (the parsed header, its metadata, the
tensors' bytes): invalid data never becomes a valid output. ``make test`` runs the bounded
profile of ``test/conftest.py``; ``make fuzz`` the long one (``HYPOTHESIS_PROFILE=fuzz``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save
from st_helpers import header_length, with_header_length

from depth_estimator_ros import models
from depth_estimator_ros.adaptation.payload import (
    PAYLOAD_FORMAT,
    PayloadError,
    export_payload,
    import_payload,
    read_payload,
)
from depth_estimator_ros.models import CheckpointError, load_checkpoint, save_checkpoint

#: Examples of the costly checkpoint properties: a fifth of the profile's (each may build a model).
CHECKPOINT_EXAMPLES = max(10, settings().max_examples // 5)
SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


def tiny_model() -> torch.nn.Module:
    """A module with a payload identity and float and int64 tensors (BatchNorm's counter)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    model.arch, model.config = "tiny", {"width": 3}
    return model


PAYLOAD = export_payload(tiny_model(), 7, run_id="fuzz-run")
HEADER_END = 8 + header_length(PAYLOAD)


def assert_faithful(blob: bytes, metadata: dict[str, str], tensors: dict[str, torch.Tensor]) -> None:
    """Assert that an accepted blob's output is what its bytes say."""
    size = header_length(blob)
    header = json.loads(blob[8:8 + size])
    assert metadata == header["__metadata__"]
    assert metadata["format"] == PAYLOAD_FORMAT
    assert sorted(tensors) == sorted(k for k in header if k != "__metadata__") == sorted(json.loads(metadata["tensors"]))
    assert metadata["version"].isascii() and metadata["version"].isdigit()
    for name, tensor in tensors.items():
        begin, end = header[name]["data_offsets"]
        assert list(tensor.shape) == header[name]["shape"]
        assert as_bytes(tensor) == blob[8 + size + begin:8 + size + end]


def as_bytes(tensor: torch.Tensor) -> bytes:
    """Return the little-endian bytes of ``tensor`` (any shape, 0-d included)."""
    return tensor.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()


def read_or_refuse(blob: bytes) -> tuple[dict[str, str], dict[str, torch.Tensor]] | None:
    """Return ``read_payload(blob)``, or None when it raised PayloadError (anything else fails the test)."""
    try:
        return read_payload(blob)
    except PayloadError:
        return None


# --------------------------------------------------------------------------- payload reader
@given(st.binary(max_size=4096))
def test_random_bytes_are_refused_with_payload_error(blob: bytes) -> None:
    assert read_or_refuse(blob) is None


@given(length=st.integers(0, 2**64 - 1), body=st.binary(max_size=512))
def test_random_bytes_behind_a_json_start_are_refused_with_payload_error(length: int, body: bytes) -> None:
    assert read_or_refuse(length.to_bytes(8, "little") + b"{" + body) is None


@given(st.data())
def test_flipped_bytes_are_refused_or_read_as_they_are(data: st.DataObject) -> None:
    # mostly in the header, where a flip changes the structure; some in the tensor bytes
    position = data.draw(st.one_of(st.integers(0, HEADER_END - 1), st.integers(0, len(PAYLOAD) - 1)))
    flips = data.draw(st.lists(st.tuples(st.just(position) | st.integers(0, len(PAYLOAD) - 1), st.integers(1, 255)),
                               min_size=1, max_size=3))
    blob = bytearray(PAYLOAD)
    for index, mask in flips:
        blob[index] ^= mask
    blob = bytes(blob)
    result = read_or_refuse(blob)
    if result is not None:
        assert_faithful(blob, *result)
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        import_payload(model, blob)
    except PayloadError:
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@given(st.integers(0, len(PAYLOAD) - 1))
def test_every_cut_is_refused(keep: int) -> None:
    assert read_or_refuse(PAYLOAD[:keep]) is None


@given(st.binary(min_size=1, max_size=64))
def test_appended_bytes_are_refused(extra: bytes) -> None:
    assert read_or_refuse(PAYLOAD + extra) is None


@given(st.integers(0, 70_000))
def test_every_header_length_reads_back_equal(padding: int) -> None:
    json_len = len(PAYLOAD[8:HEADER_END].rstrip(b" "))
    blob = with_header_length(PAYLOAD, json_len + padding)
    metadata, tensors = read_payload(blob)
    expected_metadata, expected = read_payload(PAYLOAD)
    assert metadata == expected_metadata and sorted(tensors) == sorted(expected)
    assert all(torch.equal(tensors[k], expected[k]) for k in expected)


_TEXT = st.text(max_size=12)
_METADATA_VALUES = {
    "format": st.just(PAYLOAD_FORMAT) | _TEXT,
    "format_version": st.just("1") | _TEXT,
    "arch": st.just("tiny") | _TEXT,
    "config": st.sampled_from(['{"width": 3}', "{}", "[]", "5", "null", "{", '"x"']) | _TEXT,
    "version": st.integers(-2, 2**64).map(str) | st.sampled_from(["", " 7", "7 ", "٣", "1e3", "0x10", "+1", "9" * 5000])
    | _TEXT,
    "tensors": st.sampled_from(["5", "null", "[]", '["0.weight"]', "[1, 2]", "{}"]) | _TEXT,
    "run": st.sampled_from(["fuzz-run", "", "a b", "x" * 65, "ok.1_-"]) | _TEXT,
}


@given(st.data())
def test_random_metadata_is_refused_or_follows_the_schema(data: st.DataObject) -> None:
    _, tensors = read_payload(PAYLOAD)
    good = read_payload(PAYLOAD)[0]
    metadata = {}
    for key, strategy in _METADATA_VALUES.items():
        choice = data.draw(st.sampled_from(["keep", "drop", "change"]), label=key)
        if choice == "keep":
            metadata[key] = good[key]
        elif choice == "change":
            metadata[key] = data.draw(strategy, label=f"{key} value")
    metadata.update(data.draw(st.dictionaries(st.text(max_size=6), _TEXT, max_size=2), label="extra keys"))
    blob = st_save(tensors, metadata=metadata)
    result = read_or_refuse(blob)
    if result is None:
        return
    assert_faithful(blob, *result)
    out = result[0]
    assert out["format_version"] == "1" and out["arch"] and int(out["version"]) < 2**63
    assert isinstance(json.loads(out["config"]), dict)
    if "run" in out:
        assert 1 <= len(out["run"]) <= 64 and " " not in out["run"]


# ------------------------------------------------------------------------- checkpoint loader
@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("fuzz_ckpt") / "fast32.safetensors"
    save_checkpoint(path, models.build_model("fast", input_size=(32, 32)))
    return path.read_bytes()


def load_or_refuse(path: Path, blob: bytes):
    """Return ``load_checkpoint`` of ``blob`` written to ``path``, or None on CheckpointError."""
    path.write_bytes(blob)
    try:
        return load_checkpoint(path)
    except CheckpointError:
        return None


@settings(max_examples=CHECKPOINT_EXAMPLES, suppress_health_check=SLOW_OK)
@given(st.binary(max_size=4096))
def test_random_files_are_refused_as_checkpoints(tmp_path, blob: bytes) -> None:
    assert load_or_refuse(tmp_path / "random.safetensors", blob) is None


@settings(max_examples=CHECKPOINT_EXAMPLES, suppress_health_check=SLOW_OK)
@given(st.data())
def test_cut_or_extended_checkpoints_are_refused(tmp_path, checkpoint_bytes, data: st.DataObject) -> None:
    if data.draw(st.booleans(), label="cut"):
        blob = checkpoint_bytes[:data.draw(st.integers(0, len(checkpoint_bytes) - 1), label="keep")]
    else:
        blob = checkpoint_bytes + data.draw(st.binary(min_size=1, max_size=64), label="extra")
    assert load_or_refuse(tmp_path / "cut.safetensors", blob) is None


@settings(max_examples=CHECKPOINT_EXAMPLES, suppress_health_check=SLOW_OK)
@given(st.data())
def test_flipped_checkpoint_bytes_are_refused_or_loaded_as_they_are(tmp_path, checkpoint_bytes,
                                                                   data: st.DataObject) -> None:
    end = 8 + header_length(checkpoint_bytes)
    in_header = data.draw(st.integers(0, 9), label="region") > 0  # 9 in 10 in the header
    position = data.draw(st.integers(0, end - 1) if in_header else st.integers(end, len(checkpoint_bytes) - 1))
    blob = bytearray(checkpoint_bytes)
    blob[position] ^= data.draw(st.integers(1, 255), label="mask")
    blob = bytes(blob)
    loaded = load_or_refuse(tmp_path / "flipped.safetensors", blob)
    if loaded is None:
        return
    model, metadata = loaded
    size = header_length(blob)
    header = json.loads(blob[8:8 + size])
    assert metadata["arch"] == header["__metadata__"]["arch"] == model.arch
    for name, tensor in model.state_dict().items():  # the file's bytes, nothing else
        begin, stop = header[name]["data_offsets"]
        raw = blob[8 + size + begin:8 + size + stop]
        assert as_bytes(tensor) == raw, name
