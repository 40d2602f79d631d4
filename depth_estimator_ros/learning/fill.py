"""Dense depth while the sensor is there: its measurements where it has them, the prediction in its holes.

:func:`fill_depth` keeps every measured sensor pixel as it is and fills the holes (glass, black
surfaces, beyond range, the shadow beside edges) with the prediction, aligned to the sensor's
scale *around each hole*: the log ratio ``ln(sensor / pred)`` over the measured pixels is spread
into the holes by push-pull interpolation (a mask-weighted image pyramid, Gortler et al. 1996),
so a pixel in a hole takes the ratio of the measured pixels nearest to it, a small hole the
ratio of its own rim, a large hole the ratio of a wider ring, and a frame without any pair the
ratio 1. The ratio field is smooth and equals the local ratio at a hole's border, so the filled
values meet the sensor's without a seam, also where the prediction's scale drifts across the
image. It runs at a quarter of the resolution (the ratio varies slowly), a few milliseconds for
640x480 on one CPU core.

:func:`fill_evaluation` measures it: valid sensor pixels are hidden under random ellipses of a
realistic size, filled, and scored against what the sensor measured there, next to simply
interpolating the sensor (OpenCV's Telea inpainting, and push-pull of the sensor's own depth)
and the prediction aligned with one global ratio.
"""

from __future__ import annotations

import math
import time
from typing import Any

import cv2
import numpy as np

__all__ = ["FILL_METHODS", "fill_depth", "fill_evaluation", "finish_fill_evaluation", "hide_blobs"]

FILL_METHODS: tuple[str, ...] = ("fill", "global_scale", "inpaint_telea", "interp_pushpull")
"""What :func:`fill_evaluation` scores: :func:`fill_depth`, the prediction times one global
ratio, OpenCV's Telea inpainting of the sensor, push-pull interpolation of the sensor's depth."""

_WORK_WIDTH = 160  # the ratio field's resolution: one cell per 4 px at 640 wide


def _check(depth: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(depth, np.ndarray):
        raise TypeError(f"{what} must be a numpy.ndarray, got {type(depth).__name__}")
    if depth.ndim != 2:
        raise ValueError(f"{what} must be (H, W), got shape {depth.shape}")
    return depth.astype(np.float32, copy=False)


def _positive(depth: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth > 0)


def _push_pull(values: np.ndarray, weight: np.ndarray, *, fallback: float) -> np.ndarray:
    """Spread ``values`` (where ``weight > 0``) over the whole image, smoothly; float32 ``(h, w)``.

    Push: halve the weighted values and the weights (area average) down to one pixel. Pull:
    from the coarsest level up, a pixel keeps its own weighted mean where its weight is full
    and blends towards the coarser level's estimate as its weight falls to 0.
    """
    levels = [(values * weight, weight)]
    while max(levels[-1][1].shape) > 1:
        num, den = levels[-1]
        size = (max(1, (num.shape[1] + 1) // 2), max(1, (num.shape[0] + 1) // 2))
        levels.append((cv2.resize(num, size, interpolation=cv2.INTER_AREA),
                       cv2.resize(den, size, interpolation=cv2.INTER_AREA)))  # fmt: skip
    estimate = np.full(levels[-1][1].shape, np.float32(fallback))
    for num, den in reversed(levels):
        coarse = cv2.resize(estimate, (num.shape[1], num.shape[0]), interpolation=cv2.INTER_LINEAR)
        alpha = np.clip(den * np.float32(2.0), 0.0, 1.0)  # a cell half measured or more: its own mean
        own = np.divide(num, den, out=coarse.copy(), where=den > 0)
        estimate = alpha * own + (1.0 - alpha) * coarse
    return estimate.astype(np.float32, copy=False)


def fill_depth(sensor: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill the sensor's holes with the prediction, scaled to the sensor around each hole.

    Args:
        sensor: ``(H, W)`` sensor depth in metres; NaN, 0, negative and infinite values are
            holes.
        pred: ``(H, W)`` predicted depth in metres at the sensor's resolution (NaN invalid).

    Returns:
        ``(filled, measured)``: ``filled`` is ``(H, W)`` float32 metres, the sensor's own
        value (bit for bit) where ``measured``, elsewhere ``pred`` times the local ratio
        ``sensor / pred`` spread from the measured pixels around (the global ratio where a
        hole has none near, 1 when the frame has no measured pixel with a prediction); NaN
        only where neither sensor nor prediction has a depth. ``measured`` is the ``(H, W)``
        bool mask of the sensor's valid pixels.

    Raises:
        TypeError: an input is not a numpy array.
        ValueError: an input is not 2-D or the shapes differ.
    """
    s, p = _check(sensor, "sensor"), _check(pred, "pred")
    if s.shape != p.shape:
        raise ValueError(f"sensor and pred must have one shape, got {s.shape} and {p.shape}")
    measured = _positive(s)
    usable = _positive(p)
    both = measured & usable
    height, width = s.shape
    log_ratio = np.zeros(s.shape, np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.subtract(np.log(s, where=both, out=np.zeros_like(s)), np.log(p, where=both, out=np.zeros_like(p)),
                    out=log_ratio, where=both)  # fmt: skip
    weight = both.astype(np.float32)
    pairs = int(np.count_nonzero(both))
    fallback = float(log_ratio.sum(dtype=np.float64) / pairs) if pairs else 0.0
    factor = max(1, width // _WORK_WIDTH)
    small = (max(1, width // factor), max(1, height // factor))
    small_weight = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
    small_ratio = np.divide(cv2.resize(log_ratio, small, interpolation=cv2.INTER_AREA), small_weight,
                            out=np.zeros_like(small_weight), where=small_weight > 0)  # fmt: skip
    field = _push_pull(small_ratio, small_weight, fallback=fallback)
    field = cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)
    filled = s.copy()
    holes = ~measured
    filled[holes] = np.where(usable[holes], p[holes] * np.exp(field[holes]), np.float32(np.nan))
    return filled, measured


def hide_blobs(
    measured: np.ndarray, rng: np.random.Generator, *, count: int = 8, diameter_px: tuple[float, float] = (20.0, 80.0)
) -> np.ndarray:
    """Return a mask of measured pixels under ``count`` random ellipses (a realistic sensor hole).

    Args:
        measured: ``(H, W)`` bool, the sensor's valid pixels.
        rng: random generator (seed it for a repeatable mask).
        count: ellipses per image.
        diameter_px: range of each axis' length in pixels at 640 wide (scaled with the width).

    Returns:
        ``(H, W)`` bool: the measured pixels inside the ellipses.
    """
    height, width = measured.shape
    scale = width / 640.0
    mask = np.zeros((height, width), np.uint8)
    for _ in range(count):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = tuple(max(1, int(round(scale * rng.uniform(*diameter_px) / 2))) for _ in range(2))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, thickness=-1)
    return mask.astype(bool) & measured


def _pushpull_depth(sensor: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Interpolate the sensor's log depth into its holes (push-pull at full resolution)."""
    log_depth = np.log(np.where(measured, sensor, np.float32(1.0)))
    out = _push_pull(log_depth, measured.astype(np.float32), fallback=float(log_depth[measured].mean()))
    return np.where(measured, sensor, np.exp(out)).astype(np.float32)


def _inpaint(sensor: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Interpolate the sensor into its holes with OpenCV's Telea inpainting (radius 5 px).

    In millimetres as uint16, the sensor's own format: OpenCV 4.14's Telea on float32 depth
    drifts even inside a constant region (2.5 m filled as 3.46 m).
    """
    millimetres = np.clip(np.where(measured, sensor * 1000.0, 0.0), 0, 65535).round().astype(np.uint16)
    out = cv2.inpaint(millimetres, (~measured).astype(np.uint8), 5, cv2.INPAINT_TELEA).astype(np.float32) / 1000.0
    return np.where(measured, sensor, np.where(out > 0, out, np.float32(np.nan)))


def fill_evaluation(
    sensor: np.ndarray,
    pred: np.ndarray,
    valid: np.ndarray,
    rng: np.random.Generator,
    *,
    count: int = 8,
    diameter_px: tuple[float, float] = (20.0, 80.0),
) -> dict[str, Any]:
    """Hide measured pixels under random blobs, fill them back, and return the error sums.

    Args:
        sensor: ``(H, W)`` sensor depth in metres, NaN invalid.
        pred: ``(H, W)`` prediction in metres at the sensor's resolution.
        valid: ``(H, W)`` bool, the sensor pixels that may be hidden and scored (e.g.
            :func:`~depth_estimator_ros.learning.losses.valid_mask`).
        rng: random generator for the blobs.
        count: blobs per image (see :func:`hide_blobs`).
        diameter_px: range of the blobs' axes, pixels at 640 wide (see :func:`hide_blobs`).

    Returns:
        Sums to pool over frames with :func:`finish_fill_evaluation`: ``hidden`` and
        ``border`` pixel counts (``border``: hidden pixels next to a still measured one)
        and, per method of :data:`FILL_METHODS`, ``{"n", "sq", "abs_rel", "border_rel"}``
        over the hidden pixels where the method gives a depth; ``fill_seconds``, the time
        :func:`fill_depth` took.
    """
    sensor, pred = _check(sensor, "sensor"), _check(pred, "pred")
    hidden = hide_blobs(valid, rng, count=count, diameter_px=diameter_px)
    seen = sensor.copy()
    seen[hidden] = np.nan
    measured = _positive(seen)
    grown = cv2.dilate(measured.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    border = hidden & grown
    tic = time.perf_counter()
    filled, _ = fill_depth(seen, pred)
    fill_seconds = time.perf_counter() - tic
    both = measured & _positive(pred)
    ratio = float(np.exp(np.median(np.log(seen[both]) - np.log(pred[both])))) if both.any() else 1.0
    outputs = {
        "fill": filled,
        "global_scale": pred * np.float32(ratio),
        "inpaint_telea": _inpaint(seen, measured),
        "interp_pushpull": _pushpull_depth(seen, measured),
    }
    truth = sensor
    out: dict[str, Any] = {"hidden": int(hidden.sum()), "border": int(border.sum()), "fill_seconds": fill_seconds}
    for name in FILL_METHODS:
        estimate = outputs[name]
        scored = hidden & _positive(estimate)
        err = (estimate[scored] - truth[scored]).astype(np.float64)
        rel = np.abs(err) / truth[scored]
        on_border = border[scored]
        out[name] = {
            "n": int(scored.sum()),
            "sq": float(np.sum(err * err)),
            "abs_rel": float(rel.sum()),
            "n_border": int(on_border.sum()),
            "border_rel": float(rel[on_border].sum()),
        }
    return out


def finish_fill_evaluation(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool :func:`fill_evaluation` sums over frames into RMSE, AbsRel and border error per method.

    Args:
        rows: :func:`fill_evaluation` results.

    Returns:
        ``hidden`` and ``border`` pixel counts, ``frames``, ``fill_ms_mean`` /
        ``fill_ms_p95`` (time of :func:`fill_depth` per frame) and, per method,
        ``{"rmse", "abs_rel", "border_abs_rel", "coverage"}`` (``coverage``: the share of
        hidden pixels it gave a depth; NaN metrics when none).
    """
    hidden = sum(r["hidden"] for r in rows)
    times = np.array([r["fill_seconds"] for r in rows]) * 1e3
    out: dict[str, Any] = {
        "frames": len(rows),
        "hidden": hidden,
        "border": sum(r["border"] for r in rows),
        "fill_ms_mean": float(times.mean()) if rows else math.nan,
        "fill_ms_p95": float(np.percentile(times, 95)) if rows else math.nan,
    }
    for name in FILL_METHODS:
        n = sum(r[name]["n"] for r in rows)
        nb = sum(r[name]["n_border"] for r in rows)
        out[name] = {
            "rmse": math.sqrt(sum(r[name]["sq"] for r in rows) / n) if n else math.nan,
            "abs_rel": sum(r[name]["abs_rel"] for r in rows) / n if n else math.nan,
            "border_abs_rel": sum(r[name]["border_rel"] for r in rows) / nb if nb else math.nan,
            "coverage": n / hidden if hidden else math.nan,
        }
    return out
