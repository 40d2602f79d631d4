"""The frame source protocol, its error type, subsets and seeded splits."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np

from depth_estimator_ros.data.frame import Frame

__all__ = ["DataError", "FrameSource", "Subset", "split_indices", "split_source", "associate"]


class DataError(ValueError):
    """Raised for unusable input data; the message names the file (or source) and the problem."""


class FrameSource(Sequence[Frame]):
    """A finite, indexable sequence of :class:`Frame` loaded on demand.

    Subclasses set ``name`` and implement :meth:`__len__` and :meth:`_load`; frames
    are read when indexed, so a source over thousands of frames holds none of
    them in memory. Indexing with a slice returns a :class:`Subset`.
    """

    name: str = ""

    def __len__(self) -> int:
        raise NotImplementedError

    def _load(self, index: int) -> Frame:
        """Load frame ``index`` (``0 <= index < len(self)``)."""
        raise NotImplementedError

    @overload
    def __getitem__(self, index: int) -> Frame: ...

    @overload
    def __getitem__(self, index: slice) -> "Subset": ...

    def __getitem__(self, index: int | slice) -> "Frame | Subset":
        """Return frame ``index`` (negative counts from the end) or a subset for a slice."""
        n = len(self)
        if isinstance(index, slice):
            return Subset(self, range(n)[index])
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"frame index must be an int or a slice, got {type(index).__name__}")
        position = int(index) + n if index < 0 else int(index)
        if not 0 <= position < n:
            raise IndexError(f"frame index {index} out of range for {self.name!r} with {n} frames")
        return self._load(position)

    def __iter__(self) -> Iterator[Frame]:
        for index in range(len(self)):
            yield self._load(index)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, frames={len(self)})"


class Subset(FrameSource):
    """The frames of ``source`` at ``indices``, in that order."""

    def __init__(self, source: FrameSource, indices: Sequence[int], name: str | None = None) -> None:
        """Select ``indices`` of ``source``.

        Args:
            source: the source to read from.
            indices: frame indices into ``source`` (each ``0 <= i < len(source)``).
            name: name of the subset; defaults to ``"<source name>[k frames]"``.

        Raises:
            IndexError: an index is out of range.
        """
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(source)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
            raise IndexError(f"subset indices must lie in [0, {n}) for {source.name!r}")
        self.name = name if name is not None else f"{source.name}[{self.indices.size} frames]"

    def __len__(self) -> int:
        return int(self.indices.size)

    def _load(self, index: int) -> Frame:
        return self.source[int(self.indices[index])]


def split_indices(
    n: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[np.ndarray, ...]:
    """Split ``range(n)`` at random into disjoint parts, reproducibly.

    Part sizes are ``floor(n * fraction)``; the frames left over by rounding go
    to the first part. The same ``(n, fractions, seed)`` always gives the same split.

    Args:
        n: number of items (``>= 0``).
        fractions: positive fractions summing to 1, e.g. train/val/test.
        seed: seed of the permutation.

    Returns:
        One sorted int64 index array per fraction.

    Raises:
        ValueError: ``n`` negative, a fraction not positive, or fractions not summing to 1.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    fractions = [float(f) for f in fractions]
    if not fractions or any(not f > 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    sizes = [int(np.floor(n * f)) for f in fractions]
    sizes[0] += n - sum(sizes)
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum([0, *sizes])
    return tuple(np.sort(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:]))


def split_source(
    source: FrameSource, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> tuple[Subset, ...]:
    """Split ``source`` into :class:`Subset` parts with :func:`split_indices`."""
    parts = split_indices(len(source), fractions, seed)
    return tuple(Subset(source, part, name=f"{source.name}[split {k}]") for k, part in enumerate(parts))


def associate(
    first: Sequence[float], second: Sequence[float], max_difference: float
) -> list[tuple[int, int]]:
    """Match two stamp lists one-to-one, closest pairs first (TUM's ``associate.py``).

    Args:
        first: stamps in seconds.
        second: stamps in seconds.
        max_difference: largest accepted ``|a - b|`` in seconds.

    Returns:
        ``(index in first, index in second)`` pairs sorted by the first index.
    """
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return []
    order_b = np.argsort(b)
    sorted_b = b[order_b]
    # candidates: for each a, the b stamps inside the window (few at sensor rates)
    lo = np.searchsorted(sorted_b, a - max_difference, side="left")
    hi = np.searchsorted(sorted_b, a + max_difference, side="right")
    candidates = [
        (abs(a[i] - sorted_b[j]), i, int(order_b[j])) for i in range(a.size) for j in range(lo[i], hi[i])
    ]
    candidates.sort()
    used_a: set[int] = set()
    used_b: set[int] = set()
    matches = []
    for _, i, j in candidates:
        if i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            matches.append((i, j))
    matches.sort()
    return matches
