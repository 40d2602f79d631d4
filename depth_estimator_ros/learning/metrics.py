"""Standard monocular-depth metrics over valid pixels, per frame or pooled over many.

Definitions, over the scored pixel set ``S`` with prediction ``p`` and ground truth
``t`` in metres:

- ``rmse = sqrt(mean((p - t)^2))``, ``mae = mean(|p - t|)``
- ``abs_rel = mean(|p - t| / t)``, ``sq_rel = mean((p - t)^2 / t)``
- ``log10 = mean(|log10 p - log10 t|)``
- ``delta{k} = fraction of S with max(p / t, t / p) < 1.25 ** k`` for k = 1, 2, 3
- ``n_valid = |S|``; ``n_missing`` = pixels marked valid whose prediction is not finite

``S`` is ``valid`` restricted to pixels where ``t`` is finite and > 0 and ``p`` is
finite: a non-finite prediction (e.g. a :class:`Predictor` NaN outside the model's
range) is not scored but counted in ``n_missing`` so it is never silently lost. For
``log10`` and the ``delta`` ratios the prediction is floored at ``PRED_FLOOR`` metres
so a zero or negative prediction gives a large finite error instead of ``inf``.
When ``S`` is empty every error metric is ``NaN`` (there is nothing to score; callers
check ``n_valid``) and ``n_valid`` is 0. Sums run in float64.

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
    "METRIC_NAMES",
    "POOLED_METRICS",
    "PRED_FLOOR",
    "compute_metrics",
    "MetricAccumulator",
    "pool_frame_metrics",
    "window_metrics",
]

METRIC_NAMES: tuple[str, ...] = ("rmse", "mae", "abs_rel", "sq_rel", "log10", "delta1", "delta2", "delta3")
"""The error metrics every result dict holds, besides ``n_valid`` and ``n_missing``."""

POOLED_METRICS: tuple[str, ...] = ("rmse", "abs_rel", "delta1")
"""The metrics :func:`pool_frame_metrics` pools: RMSE (m), AbsRel, and the share of pixels within 1.25x."""

PRED_FLOOR = 1e-3
"""Metres; predictions below this are raised to it for ``log10`` and the ``delta`` ratios."""

_SUM_KEYS = ("n", "sq", "abs", "abs_rel", "sq_rel", "log10", "d1", "d2", "d3", "missing")


def _as_numpy(x: np.ndarray | torch.Tensor, what: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{what} must be a numpy.ndarray or torch.Tensor, got {type(x).__name__}")


def _sums(pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, valid) -> dict[str, float]:
    """Return the per-pixel sums every metric is derived from."""
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


def _finish(s: dict[str, float]) -> dict[str, float]:
    n = s["n"]
    out: dict[str, float]
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
        }
    out["n_valid"] = int(n)
    out["n_missing"] = int(s["missing"])
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
        ``{"rmse", "mae", "abs_rel", "sq_rel", "log10", "delta1", "delta2",
        "delta3"}`` as floats (NaN when nothing is scored), ``"n_valid"`` and
        ``"n_missing"`` as ints. A batch is pooled over all its pixels.
    """
    return _finish(_sums(pred, target, valid))


class MetricAccumulator:
    """Pool exact per-pixel sums over many frames: a pixel-weighted result, not a mean of means.

    Args:
        keep_per_frame: also keep each update's own metrics in :attr:`per_frame`.
    """

    def __init__(self, *, keep_per_frame: bool = False) -> None:
        self._sums = dict.fromkeys(_SUM_KEYS, 0.0)
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
        self.frames += 1
        own = _finish(s)
        if self._keep:
            self.per_frame.append(own)
        return own

    def result(self) -> dict[str, float]:
        """Return the metrics pooled over every pixel of every update so far (NaN if none)."""
        return _finish(self._sums)

    def reset(self) -> None:
        """Forget every update."""
        self._sums = dict.fromkeys(_SUM_KEYS, 0.0)
        self.per_frame = []
        self.frames = 0


def pool_frame_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Pool per-frame metrics over pixels: RMSE, AbsRel and delta1 weighted by valid pixels.

    The same numbers a :class:`MetricAccumulator` fed with those frames gives, from the
    frames' own results (``compute_metrics``) instead of their pixels.

    Args:
        rows: per-frame dicts with ``rmse``, ``abs_rel``, ``delta1`` and ``n_valid``
            (other keys are ignored).

    Returns:
        ``{"rmse", "abs_rel", "delta1", "n_valid", "frames"}``; the metrics are NaN when
        no pixel was scored.
    """
    scored = [r for r in rows if r["n_valid"] > 0]
    n = float(sum(r["n_valid"] for r in scored))
    if n == 0:
        return {"rmse": math.nan, "abs_rel": math.nan, "delta1": math.nan, "n_valid": 0, "frames": len(rows)}
    return {
        "rmse": math.sqrt(sum(r["rmse"] ** 2 * r["n_valid"] for r in scored) / n),
        "abs_rel": sum(r["abs_rel"] * r["n_valid"] for r in scored) / n,
        "delta1": sum(r["delta1"] * r["n_valid"] for r in scored) / n,
        "n_valid": int(n),
        "frames": len(rows),
    }


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
