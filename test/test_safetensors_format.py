"""Tests of safetensors_format: a blob recognised by its structure, every refusal named."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save as st_save
from st_helpers import smallest_length_ending_in, with_header_length

from depth_estimator_ros.safetensors_format import SafetensorsFormatError, looks_like_pickle, parse_header

BLOB = st_save({"a": torch.arange(3, dtype=torch.float32), "b": torch.zeros(2, 2, dtype=torch.int64)},
               metadata={"k": "v"})


def framed(header: dict, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


def test_a_genuine_blob_is_parsed_whatever_its_first_bytes():
    header = parse_header(BLOB)
    assert header["__metadata__"] == {"k": "v"} and header["a"]["shape"] == [3]
    for low in (b"\x80\x02", b"\x80\x05", b"PK", b"\x00"):
        blob = with_header_length(BLOB, smallest_length_ending_in(BLOB, low))
        assert blob.startswith(low) and parse_header(blob) == header
    assert parse_header(memoryview(bytearray(BLOB))) == header


@pytest.mark.parametrize(
    ("blob", "message", "truncated"),
    [
        (b"", "too short", True),
        (BLOB[:9], "too short", True),
        (BLOB[:100], "truncated: the header needs", True),
        (BLOB[:-1], "truncated: tensors need", True),
        (BLOB + b"\0", "1 bytes after the last tensor", False),
        (b"\x05" + bytes(7) + b"[1,2]", "byte 8 is not '{'", False),
        ((2**40).to_bytes(8, "little") + b"{}", "outside 2..", False),
        (b"\x08" + bytes(7) + b'{"a":[}}', "unreadable JSON", False),
        (framed({"a": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}, bytes(4)), "dtype 'Q9'", False),
        (framed({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4)), "shape", False),
        (framed({"a": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, bytes(4)), "shape", False),
        (framed({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, bytes(4)), "4 bytes for shape", False),
        (framed({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8)), "starts at 4", False),
        (framed({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
                 "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}, bytes(3)), "gap or overlap", False),
        (framed({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, bytes(4)), "data_offsets", False),
        (framed({"a": 5}), "not an object", False),
        (framed({"__metadata__": {"k": 5}}), "strings to strings", False),
        (bytes(8) + b"{", "too short", True),
    ],
)
def test_every_structural_problem_is_refused_with_its_reason(blob, message, truncated):
    with pytest.raises(SafetensorsFormatError, match=message) as error:
        parse_header(blob)
    assert error.value.truncated is truncated


def test_deeply_nested_json_is_refused_not_a_recursion_error():
    text = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(SafetensorsFormatError, match="unreadable JSON"):
        parse_header(len(text).to_bytes(8, "little") + text)


def test_pickles_are_refused_and_only_then_named():
    for protocol in (2, 3, 4, 5):
        data = pickle.dumps({"w": [1.0]}, protocol=protocol)
        with pytest.raises(SafetensorsFormatError):
            parse_header(data)
        assert looks_like_pickle(data)
    assert looks_like_pickle(b"PK\x03\x04rest") and not looks_like_pickle(b"\x80\x01") and not looks_like_pickle(b"")
