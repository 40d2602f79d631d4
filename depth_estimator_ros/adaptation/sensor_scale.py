"""The sensor's scale on the estimator's output: the depth ratio of the last few pairs.

While registered sensor depth arrives, each predicted frame is compared with its sensor
depth (the median log ratio over a grid of pixels) and the next frames are multiplied by
the ratio of the last :data:`SCALE_FRAMES` pairs, while that ratio has lowered the error of
the last pairs (:data:`GUARD_PAIRS`). It is the fastest part of adapting to a
room: a scalar, right one frame after the sensor sees the room, where a training round
needs a second and what it learns the next view may not share (docs/EXPERIMENTS.md,
"The sensor's scale"). Without pairs for ``hold_s`` (the sensor gone, RGB only) the
output is the model's own again. The estimator node and the prequential evaluations
use this one class; no ROS here.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

__all__ = ["SensorScale", "SCALE_FRAMES", "GAIN_LIMITS"]

SCALE_FRAMES = 5
"""Pairs whose mean log ratio rescales the next frames: fewer follow a view change sooner,
more average out a frame's own error (5 against 10 on the budgeted tour, docs/EXPERIMENTS.md)."""

GAIN_LIMITS = (0.5, 2.0)
"""The factor stays in this range: a larger disagreement is not a scale error."""

SAMPLE_GRID = (60, 80)
"""Rows, columns of the pixel grid a pair is compared on (nearest pixels: holes stay holes)."""

MIN_PIXELS = 100
"""Valid pixels a pair needs to count."""

GUARD_PAIRS = 10
"""The factor is applied only while it would have lowered the squared error (metres) summed over
the last this many pairs (each scored with the factor it had): where the right scale jumps
from frame to frame, the last frames' ratio can be worse than none (0 = always applied;
10 against 20 and none on the budgeted tour, docs/EXPERIMENTS.md)."""


class SensorScale:
    """Rescale predictions by the sensor-to-prediction depth ratio of the last pairs.

    Args:
        min_depth, max_depth: the sensor depth range counted valid, metres.
        frames: pairs averaged (:data:`SCALE_FRAMES`).
        hold_s: seconds after the newest pair the factor is applied; later it is 1.
    """

    def __init__(self, min_depth: float, max_depth: float, *, frames: int = SCALE_FRAMES,
                 hold_s: float = 1.0) -> None:
        if frames < 1:
            raise ValueError(f"frames must be at least 1, got {frames}")
        self._range = (min_depth, max_depth)
        self._ratios: deque[float] = deque(maxlen=frames)
        self._evidence: deque[float] = deque(maxlen=max(GUARD_PAIRS, 1))
        self._hold_s = hold_s
        self._last_stamp = -math.inf
        self.pairs = 0

    def reset(self) -> None:
        """Forget every pair (the output is the model's own until the next)."""
        self._ratios.clear()
        self._evidence.clear()
        self._last_stamp = -math.inf

    def gain(self, stamp: float) -> float:
        """The factor for a frame stamped ``stamp`` seconds.

        1 without a pair in the last ``hold_s``, or while the factor would have raised the
        squared error of the last :data:`GUARD_PAIRS` pairs.
        """
        if GUARD_PAIRS and sum(self._evidence) > 0:
            return 1.0
        return self._candidate(stamp)

    def _candidate(self, stamp: float) -> float:
        """The mean ratio of the last pairs, bounded; 1 without a pair in the last ``hold_s``."""
        if not self._ratios or not 0.0 <= stamp - self._last_stamp <= self._hold_s:
            return 1.0
        low, high = GAIN_LIMITS
        return float(np.clip(math.exp(sum(self._ratios) / len(self._ratios)), low, high))

    def apply(self, depth: np.ndarray, stamp: float) -> np.ndarray:
        """Return ``depth`` (metres) times :meth:`gain`, clipped to the depth range; ``depth`` itself at 1."""
        return self.rescale(depth, self.gain(stamp))

    def rescale(self, depth: np.ndarray, factor: float) -> np.ndarray:
        """Return ``depth`` (metres) times ``factor`` (a :meth:`gain`), clipped to the depth range; ``depth`` itself at 1."""
        if factor == 1.0:
            return depth
        scaled = np.multiply(depth, factor, dtype=depth.dtype)  # a new array: ``depth`` is still the model's own
        return np.clip(scaled, *self._range, out=scaled)

    def observe(self, predicted: np.ndarray, sensor: np.ndarray, stamp: float) -> float | None:
        """Count one pair: the model's own prediction (before :meth:`apply`) and its sensor depth.

        The two may differ in size (same field of view); both are sampled on
        :data:`SAMPLE_GRID`. A stamp older than the newest pair's (a bag played again)
        starts over. Returns the pair's log ratio, or None when it has too few valid pixels.
        """
        if stamp < self._last_stamp:
            self.reset()
        p, s = _grid(predicted), _grid(sensor)
        low, high = self._range
        valid = np.isfinite(s) & (s > low) & (s < high) & np.isfinite(p) & (p > 0)
        if int(valid.sum()) < MIN_PIXELS:
            return None
        ratio = float(np.median(np.log(s[valid]) - np.log(p[valid])))
        if GUARD_PAIRS:  # what the factor this frame had (or would have had) did to its error
            factor = self._candidate(stamp)
            scaled = np.clip(factor * p[valid], low, high)
            self._evidence.append(float(np.mean((scaled - s[valid]) ** 2) - np.mean((p[valid] - s[valid]) ** 2)))
        self._ratios.append(ratio)
        self._last_stamp = stamp
        self.pairs += 1
        return ratio


def _grid(image: np.ndarray) -> np.ndarray:
    rows, cols = SAMPLE_GRID
    h, w = image.shape[:2]
    ys = ((np.arange(rows) + 0.5) * h / rows).astype(np.intp)
    xs = ((np.arange(cols) + 0.5) * w / cols).astype(np.intp)
    return image[np.ix_(ys, xs)].astype(np.float32, copy=False)
