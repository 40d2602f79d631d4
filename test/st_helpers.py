"""Helpers for tests of safetensors blobs: re-pad a header to any length.

A safetensors header may end in spaces (the writer pads it to a multiple of 8), so the
same tensors and metadata can be framed with any header length at least the JSON's own:
the way to give a genuine blob every low byte of its length field (0x80 included).
"""

from __future__ import annotations

__all__ = ["header_length", "with_header_length", "smallest_length_ending_in"]


def header_length(blob: bytes) -> int:
    """Return the header length field of a safetensors blob."""
    return int.from_bytes(blob[:8], "little")


def with_header_length(blob: bytes, length: int) -> bytes:
    """Return ``blob`` with its JSON header re-padded with spaces to ``length`` bytes.

    Raises:
        ValueError: ``length`` is shorter than the JSON itself.
    """
    size = header_length(blob)
    json_text = blob[8:8 + size].rstrip(b" ")
    if length < len(json_text):
        raise ValueError(f"header length {length} is shorter than the JSON ({len(json_text)} bytes)")
    return length.to_bytes(8, "little") + json_text + b" " * (length - len(json_text)) + blob[8 + size:]


def smallest_length_ending_in(blob: bytes, low: bytes) -> int:
    """Return the smallest header length >= the JSON's whose little-endian low bytes are ``low``."""
    json_len = len(blob[8:8 + header_length(blob)].rstrip(b" "))
    low_value, modulus = int.from_bytes(low, "little"), 256 ** len(low)
    return json_len + (low_value - json_len) % modulus
