"""Standard monocular-depth metrics over valid pixels, per frame or pooled over many.

Definitions, over the scored pixel set ``S`` with prediction ``p`` and ground truth
``t`` in metres:

- ``rmse = sqrt(mean((p - t)^2))``, ``mae = mean(|p - t|)``
- ``abs_rel = mean(|p - t| / t)``, ``sq_rel = mean((p - t)^2 / t)``
- ``log10 = mean(|log10 p - log10 t|)``
- ``delta{k} = fraction of S with max(p / t, t / p) < 1.25 ** k`` for k = 1, 2, 3
- ``n_valid = |S|``; ``n_missing`` = pixels marked valid whose prediction is not finite

Structure metrics (what RMSE and ``delta1`` do not see: the shape of the depth and its edges),
computed per image (an ``(H, W)`` array, or each ``H x W`` image of a batch; a 1-D input is one
image without neighbours, so it has no pixel pairs):

- ``si_log = sqrt(mean_i((g_i - mean_f(g))^2))`` with ``g = ln p - ln t``: the scale-invariant
  log RMSE of Eigen et al. (2014, lambda = 1), per image ``f`` (its mean log ratio removed),
  pooled over pixels; 0 for any prediction that is the target times one constant per image
  (natural-log units: 0.1 is about a 10 % relative error left after the best global scale)
- ``boundary_f1`` / ``boundary_precision`` / ``boundary_recall``: depth discontinuities as
  Depth Pro (Bochkovskii et al., 2024) defines its boundary metric, on pixel pairs ``d`` px
  apart horizontally and vertically, ``d = boundary_pair_distance(W)`` (4 px at 640 wide, so
  images of different resolution compare; 2 px at 320, 1 px at 192). A pair is an edge at
  threshold ``T`` when ``max(a, b) / min(a, b) > T`` of its two depths; prediction and sensor
  agree on an edge when both see one and the same pixel is the nearer one (Depth Pro's
  foreground/background relation; a ratio is the same for depth and inverse depth, so
  Depth Pro's use of inverse depth changes nothing). Depth Pro compares neighbours 1 px
  apart at ten thresholds from 1.05 to 1.25 weighted by the threshold; this is the variant
  of issue 24. Only pairs with both pixels in ``S`` are counted
  (``n_pairs``). Per threshold: precision = agreed / predicted edges, recall = agreed /
  sensor edges (each 0 when its denominator is 0, as in Depth Pro), F1 = 2PR / (P + R)
  (0 when P + R = 0); the three figures are the means over :data:`BOUNDARY_THRESHOLDS`
  (1.05, 1.10, 1.15, 1.25). Counts are pooled over pairs (and frames) before the ratios,
  like every metric here. ``boundary_counts`` holds them: per threshold ``(agreed,
  predicted, sensor)`` edges. Compare the prediction at the sensor's resolution.

``S`` is ``valid`` restricted to pixels where ``t`` is finite and > 0 and ``p`` is
finite: a non-finite prediction (e.g. a :class:`Predictor` NaN outside the model's
range) is not scored but counted in ``n_missing`` so it is never silently lost. For
``log10``, the ``delta`` ratios and the structure metrics the prediction is floored at
``PRED_FLOOR`` metres so a zero or negative prediction gives a large finite error instead
of ``inf``. When ``S`` is empty every error metric is ``NaN`` (there is nothing to score;
callers check ``n_valid``) and ``n_valid`` is 0. Sums run in float64 (the structure
metrics' logs in float32).

Over a stream (a time window, a half, a whole run) the metrics are **pooled over
pixels**, never averaged over frames: :class:`MetricAccumulator` while the pixels are at
hand, :func:`pool_frame_metrics` from per-frame results, and :func:`window_metrics` for
consecutive windows of stream time. A window's RMSE is the RMSE of all its valid pixels,
so a frame with more valid depth weighs more. ``adapt_eval`` and ``make demo`` both
report these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = [
    "BOUNDARY_PAIR_PX",
    "BOUNDARY_REFERENCE_WIDTH",
    "BOUNDARY_THRESHOLDS",
    "METRIC_NAMES",
    "POOLED_METRICS",
    "PRED_FLOOR",
    "STRUCTURE_METRICS",
    "boundary_pair_distance",
    "boundary_scores",
    "compute_metrics",
    "MetricAccumulator",
    "pool_frame_metrics",
    "window_metrics",
]

METRIC_NAMES: tuple[str, ...] = (
    "rmse", "mae", "abs_rel", "sq_rel", "log10", "delta1", "delta2", "delta3",
    "si_log", "boundary_f1", "boundary_precision", "boundary_recall",
)  # fmt: skip
"""The metrics every result dict holds, besides ``n_valid``, ``n_missing``, ``n_pairs`` and ``boundary_counts``."""

POOLED_METRICS: tuple[str, ...] = ("rmse", "abs_rel", "delta1")
"""The metrics :func:`pool_frame_metrics` pools: RMSE (m), AbsRel, and the share of pixels within 1.25x."""

STRUCTURE_METRICS: tuple[str, ...] = ("si_log", "boundary_f1", "boundary_precision", "boundary_recall")
"""The structure metrics (scale-invariant error and depth boundaries); :func:`pool_frame_metrics` pools them too."""

PRED_FLOOR = 1e-3
"""Metres; predictions below this are raised to it for every log and ratio (``log10``, ``delta``, structure)."""

BOUNDARY_THRESHOLDS: tuple[float, ...] = (1.05, 1.10, 1.15, 1.25)
"""Depth ratios of a pixel pair above which the pair is a depth discontinuity."""

BOUNDARY_PAIR_PX = 4
"""Distance of the pixels of a pair at :data:`BOUNDARY_REFERENCE_WIDTH` (scaled with the width)."""

BOUNDARY_REFERENCE_WIDTH = 640
"""Image width, pixels, at which pairs are :data:`BOUNDARY_PAIR_PX` apart."""

_SUM_KEYS = ("n", "sq", "abs", "abs_rel", "sq_rel", "log10", "d1", "d2", "d3", "missing", "si", "pairs")
_LOG_THRESHOLDS = np.log(np.asarray(BOUNDARY_THRESHOLDS, dtype=np.float64)).astype(np.float32)


def _as_numpy(x: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{what} must be a numpy.ndarray or torch.Tensor, got {type(x).__name__}")


def _sums(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, valid) -> dict[str, Any]:
    """Return the per-pixel sums every metric is derived from (and the boundary counts, ``edges``)."""
    p = _as_numpy(pred, "pred")
    t = _as_numpy(target, "target")
    v = _as_numpy(valid, "valid")
    if p.shape != t.shape or p.shape != v.shape:
        raise ValueError(f"pred, target and valid must have one shape, got {p.shape}, {t.shape} and {v.shape}")
    if v.dtype != np.bool_:
        raise TypeError(f"valid must be boolean, got {v.dtype}")
    with np.errstate(invalid="ignore"):
        trusted = v & np.isfinite(t) & (t > 0)
    finite_pred = np.isfinite(p)
    scored = trusted & finite_pred
    missing = int(np.count_nonzero(trusted & ~finite_pred))
    ps = p[scored].astype(np.float64)
    ts = t[scored].astype(np.float64)
    err = ps - ts
    sq = err * err
    pf = np.maximum(ps, PRED_FLOOR)
    ratio = np.maximum(pf / ts, ts / pf)
    return {
        **_structure_sums(p, t, scored),
        "n": float(ps.size),
        "sq": float(sq.sum()),
        "abs": float(np.abs(err).sum()),
        "abs_rel": float((np.abs(err) / ts).sum()),
        "sq_rel": float((sq / ts).sum()),
        "log10": float(np.abs(np.log10(pf) - np.log10(ts)).sum()),
        "d1": float(np.count_nonzero(ratio < 1.25)),
        "d2": float(np.count_nonzero(ratio < 1.25**2)),
        "d3": float(np.count_nonzero(ratio < 1.25**3)),
        "missing": float(missing),
    }


def boundary_pair_distance(width: int) -> int:
    """Return the pixel distance of a boundary pair in an image ``width`` pixels wide (>= 1).

    ``round(BOUNDARY_PAIR_PX * width / BOUNDARY_REFERENCE_WIDTH)``: 4 at 640, 2 at 320, 1 at 192.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1 pixel, got {width}")
    return max(1, int(round(BOUNDARY_PAIR_PX * width / BOUNDARY_REFERENCE_WIDTH)))


def _edge_level(step: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Return how many thresholds ``|step|`` (a log depth ratio) exceeds, int8, 0 where not ``keep``."""
    magnitude = np.abs(step)
    level = np.zeros(step.shape, dtype=np.int8)
    for log_threshold in _LOG_THRESHOLDS:
        level += magnitude > log_threshold
    level *= keep
    return level


def _edge_counts(log_p: np.ndarray, log_t: np.ndarray, scored: np.ndarray) -> tuple[np.ndarray, int]:
    """Return the ``(agreed, predicted, sensor)`` edge counts per threshold and the number of scored pairs."""
    counts = np.zeros((len(BOUNDARY_THRESHOLDS), 3), dtype=np.int64)
    pairs = 0
    if log_p.ndim < 2:
        return counts, pairs
    d = boundary_pair_distance(log_p.shape[-1])
    for axis in (-1, -2):
        if log_p.shape[axis] <= d:
            continue
        near = [slice(None)] * log_p.ndim
        far = [slice(None)] * log_p.ndim
        near[axis], far[axis] = slice(None, -d), slice(d, None)
        near, far = tuple(near), tuple(far)
        both = scored[near] & scored[far]
        step_p = log_p[far] - log_p[near]
        step_t = log_t[far] - log_t[near]
        pairs += int(np.count_nonzero(both))
        # Level k: the pair is an edge at the thresholds 0..k-1 (0 outside the scored pairs).
        level_p, level_t = _edge_level(step_p, both), _edge_level(step_t, both)
        agreed = np.minimum(level_p, level_t)
        agreed *= (step_p < 0) == (step_t < 0)  # the same pixel is the nearer one
        for j in range(len(BOUNDARY_THRESHOLDS)):
            for column, level in enumerate((agreed, level_p, level_t)):
                counts[j, column] += np.count_nonzero(level > j)
    return counts, pairs


def _structure_sums(p: np.ndarray, t: np.ndarray, scored: np.ndarray) -> dict[str, Any]:
    """Return the per-image sum of squared mean-removed log ratios (``si_log``) and the boundary counts."""
    with np.errstate(invalid="ignore", divide="ignore"):
        log_p = np.log(np.maximum(p.astype(np.float32, copy=False), np.float32(PRED_FLOOR)))
        log_t = np.log(t.astype(np.float32, copy=False))  # -inf or NaN outside S
        edges, pairs = _edge_counts(log_p, log_t, scored)
        log_ratio = log_p - log_t
    size = p.shape[-1] * p.shape[-2] if p.ndim >= 2 else p.size
    log_ratio = log_ratio.reshape(-1, max(size, 1))
    keep = scored.reshape(log_ratio.shape)
    si = 0.0
    for image, mask in zip(log_ratio, keep):
        g = image[mask].astype(np.float64)
        if g.size:
            si += float(np.sum((g - g.mean()) ** 2))
    return {"si": si, "pairs": float(pairs), "edges": edges}


def boundary_scores(counts: np.ndarray | Sequence[Sequence[int]]) -> dict[str, float]:
    """Return boundary precision, recall and F1 from edge counts (see the module docstring).

    Args:
        counts: per threshold of :data:`BOUNDARY_THRESHOLDS`, ``(agreed, predicted,
            sensor)`` edges, e.g. summed ``boundary_counts`` of several frames.

    Returns:
        ``{"boundary_f1", "boundary_precision", "boundary_recall"}``, each the mean over
        the thresholds.
    """
    c = np.asarray(counts, dtype=np.float64).reshape(len(BOUNDARY_THRESHOLDS), 3)
    precision = c[:, 0] / np.maximum(c[:, 1], 1.0)
    recall = c[:, 0] / np.maximum(c[:, 2], 1.0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(total), where=total > 0)
    return {
        "boundary_f1": float(f1.mean()),
        "boundary_precision": float(precision.mean()),
        "boundary_recall": float(recall.mean()),
    }


def _finish(s: dict[str, Any]) -> dict[str, Any]:
    n = s["n"]
    out: dict[str, Any]
    if n == 0:
        out = {name: math.nan for name in METRIC_NAMES}
    else:
        out = {
            "rmse": math.sqrt(s["sq"] / n),
            "mae": s["abs"] / n,
            "abs_rel": s["abs_rel"] / n,
            "sq_rel": s["sq_rel"] / n,
            "log10": s["log10"] / n,
            "delta1": s["d1"] / n,
            "delta2": s["d2"] / n,
            "delta3": s["d3"] / n,
            "si_log": math.sqrt(max(s["si"], 0.0) / n),
        }
        if s["pairs"] > 0:
            out.update(boundary_scores(s["edges"]))
        else:
            out.update(boundary_f1=math.nan, boundary_precision=math.nan, boundary_recall=math.nan)
    out["n_valid"] = int(n)
    out["n_missing"] = int(s["missing"])
    out["n_pairs"] = int(s["pairs"])
    out["boundary_counts"] = tuple(tuple(int(v) for v in row) for row in s["edges"])
    return out


def compute_metrics(
    pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, valid: np.ndarray | torch.Tensor
) -> dict[str, float]:
    """Return the depth metrics of one prediction (see the module docstring).

    Args:
        pred: predicted depth in metres, any shape (``(H, W)`` or ``(B, 1, H, W)``),
            numpy or torch.
        target: ground-truth depth in metres, same shape, NaN where invalid.
        valid: boolean mask, same shape (e.g. from :func:`valid_mask`).

    Returns:
        Every name of :data:`METRIC_NAMES` as a float (NaN when nothing is scored; the
        boundary figures also when no pixel pair is), ``"n_valid"``, ``"n_missing"`` and
        ``"n_pairs"`` as ints and ``"boundary_counts"``, per threshold of
        :data:`BOUNDARY_THRESHOLDS` the ``(agreed, predicted, sensor)`` edges. A batch is
        pooled over all its pixels; the structure metrics treat each ``H x W`` image of it
        on its own (its mean log ratio, its pixel pairs).
    """
    return _finish(_sums(pred, target, valid))


class MetricAccumulator:
    """Pool exact per-pixel sums over many frames: a pixel-weighted result, not a mean of means.

    Args:
        keep_per_frame: also keep each update's own metrics in :attr:`per_frame`.
    """

    def __init__(self, *, keep_per_frame: bool = False) -> None:
        self._sums = self._empty()
        self._keep = keep_per_frame
        self.per_frame: list[dict[str, float]] = []
        self.frames = 0

    def update(
        self, pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, valid: np.ndarray | torch.Tensor
    ) -> dict[str, float]:
        """Add one frame (or batch) and return its own metrics.

        Args:
            pred: predicted depth in metres, any shape, numpy or torch.
            target: ground-truth depth in metres, same shape, NaN where invalid.
            valid: boolean mask, same shape.

        Returns:
            The metrics of this update alone, as :func:`compute_metrics` gives them.
        """
        s = _sums(pred, target, valid)
        for key in _SUM_KEYS:
            self._sums[key] += s[key]
        self._sums["edges"] = self._sums["edges"] + s["edges"]
        self.frames += 1
        own = _finish(s)
        if self._keep:
            self.per_frame.append(own)
        return own

    def result(self) -> dict[str, float]:
        """Return the metrics pooled over every pixel of every update so far (NaN if none)."""
        return _finish(self._sums)

    @staticmethod
    def _empty() -> dict[str, Any]:
        return {**dict.fromkeys(_SUM_KEYS, 0.0), "edges": np.zeros((len(BOUNDARY_THRESHOLDS), 3), np.int64)}

    def reset(self) -> None:
        """Forget every update."""
        self._sums = self._empty()
        self.per_frame = []
        self.frames = 0


def pool_frame_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pool per-frame metrics over pixels: RMSE, AbsRel and delta1 weighted by valid pixels.

    The same numbers a :class:`MetricAccumulator` fed with those frames gives, from the
    frames' own results (``compute_metrics``) instead of their pixels. When every row also
    has them, ``si_log`` is pooled the same way and the boundary
    figures from the summed ``boundary_counts`` (pooled over pixel pairs).

    Args:
        rows: per-frame dicts with ``rmse``, ``abs_rel``, ``delta1`` and ``n_valid``,
            optionally ``si_log``, ``n_pairs`` and ``boundary_counts``
            (other keys are ignored).

    Returns:
        ``{"rmse", "abs_rel", "delta1", "n_valid", "frames"}``, plus ``si_log``,
        ``boundary_f1``, ``boundary_precision`` and ``boundary_recall``
        where the rows have them; the metrics are NaN when no pixel was scored.
    """
    scored = [r for r in rows if r["n_valid"] > 0]
    n = float(sum(r["n_valid"] for r in scored))
    structure = bool(rows) and all({"si_log", "n_pairs", "boundary_counts"} <= r.keys() for r in rows)
    out: dict[str, Any]
    if n == 0:
        out = {"rmse": math.nan, "abs_rel": math.nan, "delta1": math.nan}
        if structure:
            out.update(dict.fromkeys(STRUCTURE_METRICS, math.nan))
        return {**out, "n_valid": 0, "frames": len(rows)}
    out = {
        "rmse": math.sqrt(sum(r["rmse"] ** 2 * r["n_valid"] for r in scored) / n),
        "abs_rel": sum(r["abs_rel"] * r["n_valid"] for r in scored) / n,
        "delta1": sum(r["delta1"] * r["n_valid"] for r in scored) / n,
    }
    if structure:
        out["si_log"] = math.sqrt(sum(r["si_log"] ** 2 * r["n_valid"] for r in scored) / n)
        if sum(r["n_pairs"] for r in scored) > 0:
            out.update(boundary_scores(np.sum([np.asarray(r["boundary_counts"]) for r in scored], axis=0)))
        else:
            out.update(boundary_f1=math.nan, boundary_precision=math.nan, boundary_recall=math.nan)
    return {**out, "n_valid": int(n), "frames": len(rows)}


def window_metrics(rows: Sequence[dict[str, Any]], window_s: float, duration_s: float) -> list[dict[str, Any]]:
    """Pool per-frame metrics over consecutive windows of stream time.

    Args:
        rows: per-frame dicts as :func:`pool_frame_metrics` takes, each with ``t``, its
            stream time in seconds from the first frame.
        window_s: window length, seconds (> 0).
        duration_s: length of the stream, seconds (frames x frame period, so the last
            frame's ``t`` is below it); windows cover ``[0, duration_s)``.

    Returns:
        One dict per window, ``{"t0", "t1", **pool_frame_metrics(frames in [t0, t1))}``;
        a window without frames has ``frames == 0`` and NaN metrics.

    Raises:
        ValueError: ``window_s`` is not > 0.
    """
    if not window_s > 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    count = max(1, int(math.ceil(duration_s / window_s)))
    out = []
    for w in range(count):
        t_lo, t_hi = w * window_s, (w + 1) * window_s
        inside = [r for r in rows if t_lo <= r["t"] < t_hi]
        out.append({"t0": t_lo, "t1": min(t_hi, duration_s), **pool_frame_metrics(inside)})
    return out
