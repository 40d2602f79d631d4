"""Recognise a safetensors blob by its structure, never by a sniffed first byte.

A safetensors file is an 8-byte little-endian header length ``N``, ``N`` bytes of a
UTF-8 JSON object (``{"name": {"dtype", "shape", "data_offsets"}, ..., "__metadata__":
{str: str}}``, possibly padded with spaces), then the tensor bytes, which the offsets
index entirely and without holes. Weight payloads, checkpoints and encoder weights are
all checked with :func:`parse_header` before any tensor is built. A pickle or a
``torch.save`` zip fails that check like any other foreign file; :func:`looks_like_pickle`
only chooses the wording of the refusal afterwards. (The first byte of a genuine file is
the low byte of its header length and can be anything, 0x80 included: a full payload of
the shipped model from version 10000 on has a 0xC980-byte header.)

Plain data: this module imports neither torch nor safetensors.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = [
    "DTYPE_SIZES",
    "MAX_HEADER_BYTES",
    "SafetensorsFormatError",
    "looks_like_pickle",
    "parse_header",
]

#: Bytes per element of the dtypes this package reads (safetensors' names).
DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}

#: Largest header accepted by default (the package's own are under 1 MiB; safetensors' limit is 100 MB).
MAX_HEADER_BYTES = 64 * 1024 * 1024

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOLS = frozenset(range(2, 6))  # the byte after pickle's PROTO opcode 0x80


class SafetensorsFormatError(ValueError):
    """Bytes that are not a complete safetensors blob.

    Attributes:
        truncated: the bytes look like the start of a safetensors blob that was cut short.
    """

    def __init__(self, message: str, *, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated


def looks_like_pickle(data: bytes | bytearray | memoryview) -> bool:
    """Return whether ``data`` starts like a pickle (protocol 2-5) or a ``torch.save`` zip.

    Only for wording a refusal of bytes that :func:`parse_header` already refused.
    """
    head = bytes(data[:4])
    return head == _ZIP_MAGIC or (len(head) >= 2 and head[0] == 0x80 and head[1] in _PICKLE_PROTOCOLS)


def parse_header(data: bytes | bytearray | memoryview, *, max_header_bytes: int = MAX_HEADER_BYTES) -> dict[str, Any]:
    """Return the JSON header of a safetensors blob after checking the blob's whole structure.

    Checked: the header length fits the data and ``max_header_bytes``; the header starts
    with ``{`` and is a UTF-8 JSON object; ``__metadata__``, if present, maps strings to
    strings; every tensor has a known dtype, a shape of non-negative integers and
    ``data_offsets`` whose span matches dtype and shape; the offsets cover the data
    section exactly, without gaps or overlaps.

    Args:
        data: the whole blob.
        max_header_bytes: the largest header length accepted.

    Returns:
        The parsed header (tensor entries and, if present, ``__metadata__``).

    Raises:
        SafetensorsFormatError: anything else; ``truncated`` is true when the blob is
            the start of a longer one.
    """
    size = len(data)
    if size < 10:  # 8 bytes of length and at least "{}"
        raise SafetensorsFormatError(f"truncated or empty: {size} bytes, too short for a safetensors header",
                                     truncated=True)
    if data[8] != 0x7B:  # "{"
        raise SafetensorsFormatError("no JSON header after the 8-byte length (byte 8 is not '{')")
    header_len = int.from_bytes(data[:8], "little")
    if header_len < 2 or header_len > max_header_bytes:
        raise SafetensorsFormatError(f"header length field {header_len} is outside 2..{max_header_bytes}")
    if 8 + header_len > size:
        raise SafetensorsFormatError(f"truncated: the header needs {8 + header_len} bytes, there are {size}",
                                     truncated=True)
    try:
        header = json.loads(bytes(data[8:8 + header_len]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SafetensorsFormatError(f"unreadable JSON header: {exc}") from None
    if not isinstance(header, dict):
        raise SafetensorsFormatError(f"the JSON header is a {type(header).__name__}, not an object")
    metadata = header.get("__metadata__")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise SafetensorsFormatError("__metadata__ must map strings to strings")
    spans = sorted(_span(name, entry) for name, entry in header.items() if name != "__metadata__")
    data_len = size - 8 - header_len
    position = 0
    for begin, end, name in spans:
        if begin != position:
            raise SafetensorsFormatError(f"tensor {name!r} starts at {begin}, expected {position} "
                                         "(offsets leave a gap or overlap)")
        position = end
    if position > data_len:
        raise SafetensorsFormatError(f"truncated: tensors need {position} data bytes, there are {data_len}",
                                     truncated=True)
    if position < data_len:
        raise SafetensorsFormatError(f"{data_len - position} bytes after the last tensor")
    return header


def _span(name: str, entry: Any) -> tuple[int, int, str]:
    """Return ``(begin, end, name)`` of one tensor entry after checking its dtype, shape and offsets."""
    if not isinstance(entry, dict):
        raise SafetensorsFormatError(f"tensor {name!r}: entry is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_SIZES:
        raise SafetensorsFormatError(f"tensor {name!r}: dtype {dtype!r} is not one of {', '.join(DTYPE_SIZES)}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise SafetensorsFormatError(f"tensor {name!r}: shape {shape!r} is not a list of integers >= 0")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)):
        raise SafetensorsFormatError(f"tensor {name!r}: data_offsets {offsets!r} is not [begin, end]")
    begin, end = offsets
    if end - begin != math.prod(shape) * DTYPE_SIZES[dtype]:
        raise SafetensorsFormatError(f"tensor {name!r}: {end - begin} bytes for shape {shape} of {dtype}")
    return begin, end, name


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
