"""Fixtures shared by the harness's tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest


def _write_room(folder: Path, seed: int, frames: int, depth_m: float) -> None:
    """Write a tiny 7-Scenes-layout room (JPEG colour, 16-bit millimetre depth, intrinsics)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(frames):
        cv2.imwrite(str(folder / f"frame-{i:06d}.color.jpg"), rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
        cv2.imwrite(str(folder / f"frame-{i:06d}.depth.png"), np.full((48, 64), depth_m * 1000, np.uint16))
    (folder / "camera-intrinsics.txt").write_text("50 0 32\n0 50 24\n0 0 1\n")


@pytest.fixture
def write_room() -> Callable[[Path, int, int, float], None]:
    """``write_room(folder, seed, frames, depth_m)``: a tiny room folder of constant depth."""
    return _write_room
