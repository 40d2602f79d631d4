"""Tests for the frame source protocol, subsets, seeded splits and stamp association."""

from __future__ import annotations

import numpy as np
import pytest

from depth_estimator_ros.data.base import DataError, FrameSource, Subset, associate, split_indices, split_source
from depth_estimator_ros.data.frame import Frame


class _Counting(FrameSource):
    """Frames whose pixel value is their index; counts loads."""

    def __init__(self, n: int) -> None:
        self.n, self.loads, self.name = n, 0, "counting"

    def __len__(self) -> int:
        return self.n

    def _load(self, index: int) -> Frame:
        self.loads += 1
        return Frame(rgb=np.full((2, 2, 3), index, np.uint8), depth=None, stamp=index / 10, name=str(index))


def test_indexing_is_lazy_and_supports_negative_and_slices() -> None:
    source = _Counting(5)
    assert source.loads == 0
    assert source[-1].name == "4" and source[0].stamp == 0.0
    assert source.loads == 2
    part = source[1:5:2]
    assert isinstance(part, Subset) and len(part) == 2 and [f.name for f in part] == ["1", "3"]
    assert [f.name for f in source] == ["0", "1", "2", "3", "4"]
    with pytest.raises(IndexError, match="index 5 out of range for 'counting' with 5 frames"):
        source[5]
    with pytest.raises(TypeError, match="int or a slice"):
        source["0"]
    assert repr(source) == "_Counting(name='counting', frames=5)"


def test_subset_checks_indices() -> None:
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        Subset(_Counting(3), [0, 3])


def test_split_indices_is_seeded_disjoint_and_complete() -> None:
    train, val, test = split_indices(1449, (0.8, 0.1, 0.1), seed=0)
    assert (len(train), len(val), len(test)) == (1161, 144, 144)
    joined = np.concatenate([train, val, test])
    assert np.array_equal(np.sort(joined), np.arange(1449))
    again = split_indices(1449, (0.8, 0.1, 0.1), seed=0)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    other = split_indices(1449, (0.8, 0.1, 0.1), seed=1)
    assert not np.array_equal(val, other[1])
    assert all(np.all(np.diff(part) > 0) for part in (train, val, test))


@pytest.mark.parametrize("fractions", [(0.5, 0.4), (0.9, 0.1, 0.0), (), (1.2, -0.2)])
def test_split_indices_refuses_bad_fractions(fractions: tuple) -> None:
    with pytest.raises(ValueError, match="positive and sum to 1"):
        split_indices(10, fractions)


def test_split_source() -> None:
    parts = split_source(_Counting(10), (0.5, 0.5), seed=3)
    assert [len(p) for p in parts] == [5, 5]
    assert sorted(int(f.name) for p in parts for f in p) == list(range(10))


def test_associate_matches_closest_pairs_one_to_one() -> None:
    rgb = [0.000, 0.033, 0.066, 0.100, 0.500]
    depth = [0.010, 0.030, 0.031, 0.095]
    # 0.033 takes 0.031 (closest), 0.000 takes 0.010, 0.066 has nothing within 0.02 left, 0.100 takes 0.095
    assert associate(rgb, depth, 0.02) == [(0, 0), (1, 2), (3, 3)]
    assert associate([], depth, 0.02) == []


def test_data_error_is_value_error() -> None:
    assert issubclass(DataError, ValueError)
