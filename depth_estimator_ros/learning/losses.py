"""Masked depth losses: pure functions of ``(pred, target, valid)`` in metres.

Every loss here ignores invalid pixels entirely (they contribute neither value nor
gradient) and, when a batch has no valid pixel at all, returns an exact ``0`` that is
still attached to the autograd graph of ``pred``: a caller may call ``backward()`` on
it (all gradients are zero) or skip the step, and a ``NaN`` never reaches the weights.
None of these functions synchronise with the device (no ``.item()``), so they are
cheap inside a CUDA training loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover - typing only; learning never needs models at import
    from depth_estimator_ros.models import DepthModel

__all__ = ["LOSSES", "SILOG_LAMBDA", "GRADIENT_WEIGHT", "GRADIENT_SCALES", "valid_mask", "gradient_matching", "masked_l1", "masked_mse", "masked_rmse", "head_l2", "model_loss"]

LOSSES: tuple[str, ...] = ("l1", "rmse", "log_l1", "silog", "log_l1_grad")
"""The loss names a model's ``defaults.loss`` may take."""

#: Weight of the squared mean log error that ``"silog"`` subtracts (Eigen et al. 2014 use
#: 0.5, BTS / AdaBins 0.85): the share ``1 - SILOG_LAMBDA`` of an image's global log-scale
#: error still counts, so the loss stays metric while the structure dominates.
SILOG_LAMBDA = 0.85

#: Weight of the multi-scale gradient-matching term in ``"log_l1_grad"`` (MiDaS, Ranftl et
#: al. 2020, use 0.5 with their scale-and-shift-invariant loss).
GRADIENT_WEIGHT = 0.5

#: Pixel steps of the gradient-matching term: neighbours 1, 2, 4 and 8 pixels apart.
GRADIENT_SCALES: tuple[int, ...] = (1, 2, 4, 8)


def valid_mask(target: Tensor | np.ndarray, min_depth: float, max_depth: float) -> Tensor | np.ndarray:
    """Return where a ground-truth depth may be trusted: finite, > 0 and in range.

    Args:
        target: depth in metres of any shape, ``(B, 1, H, W)`` tensor or ``(H, W)``
            array; NaN, 0 and negative values mark invalid pixels.
        min_depth: smallest trusted depth in metres (inclusive).
        max_depth: largest trusted depth in metres (inclusive).

    Returns:
        A boolean tensor (for a tensor input) or array (for an array input) of the
        shape of ``target``.
    """
    if not min_depth < max_depth:
        raise ValueError(f"min_depth must be < max_depth, got {min_depth} and {max_depth}")
    if isinstance(target, np.ndarray):
        with np.errstate(invalid="ignore"):
            return np.isfinite(target) & (target > 0) & (target >= min_depth) & (target <= max_depth)
    if isinstance(target, Tensor):
        return torch.isfinite(target) & (target > 0) & (target >= min_depth) & (target <= max_depth)
    raise TypeError(f"target must be a torch.Tensor or numpy.ndarray, got {type(target).__name__}")


def _check(pred: Tensor, target: Tensor, valid: Tensor) -> None:
    if not (isinstance(pred, Tensor) and isinstance(target, Tensor) and isinstance(valid, Tensor)):
        raise TypeError("pred, target and valid must all be torch.Tensor")
    if pred.shape != target.shape or pred.shape != valid.shape:
        raise ValueError(
            f"pred, target and valid must have one shape, got {tuple(pred.shape)}, "
            f"{tuple(target.shape)} and {tuple(valid.shape)}"
        )
    if valid.dtype != torch.bool:
        raise TypeError(f"valid must be a bool tensor, got {valid.dtype}")


def _masked_error(pred: Tensor, target: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``pred - target`` with 0 at invalid pixels (gradient-safe) and the valid count."""
    _check(pred, target, valid)
    # Replacing the invalid targets *before* subtracting keeps NaN out of the graph:
    # where(valid, pred - target, 0) would still back-propagate 0 * NaN = NaN through
    # a square.
    safe_target = torch.where(valid, target, pred.detach()).to(pred.dtype)
    err = torch.where(valid, pred - safe_target, torch.zeros((), dtype=pred.dtype, device=pred.device))
    return err, valid.sum()


def _safe_sqrt(x: Tensor) -> Tensor:
    """Return ``sqrt(x)`` for ``x >= 0`` whose value and gradient are 0 (not NaN) at ``x == 0``."""
    positive = x > 0
    root = torch.where(positive, x, torch.ones_like(x)).sqrt()
    return torch.where(positive, root, x * 0)


def masked_l1(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Return the mean absolute error over valid pixels (seed 0's L1 loss).

    Args:
        pred: predicted depth in metres, e.g. ``(B, 1, H, W)``.
        target: ground-truth depth in metres, same shape; may hold NaN where invalid.
        valid: bool mask, same shape, True where ``target`` counts.

    Returns:
        A scalar tensor in metres; exactly 0 (with grad) when nothing is valid.
    """
    err, n = _masked_error(pred, target, valid)
    return err.abs().sum() / n.clamp_min(1)


def masked_mse(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Return the mean squared error over valid pixels.

    Args:
        pred: predicted depth in metres, e.g. ``(B, 1, H, W)``.
        target: ground-truth depth in metres, same shape; may hold NaN where invalid.
        valid: bool mask, same shape.

    Returns:
        A scalar tensor in square metres; exactly 0 (with grad) when nothing is valid.
    """
    err, n = _masked_error(pred, target, valid)
    return err.square().sum() / n.clamp_min(1)


def masked_rmse(pred: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Return the root mean squared error over valid pixels (seed 1, eq. 2).

    The mean runs over all valid pixels of the whole batch, ``sqrt(sum e^2 / |T*|)``.

    Args:
        pred: predicted depth in metres, e.g. ``(B, 1, H, W)``.
        target: ground-truth depth in metres, same shape; may hold NaN where invalid.
        valid: bool mask, same shape.

    Returns:
        A scalar tensor in metres; exactly 0 (with a finite, zero grad) when nothing
        is valid or the prediction is perfect.
    """
    return _safe_sqrt(masked_mse(pred, target, valid))


def head_l2(params: Iterable[Tensor], weight: float) -> Tensor:
    """Return ``weight * sum ||p||^2`` over ``params`` (the L2 penalty of seed 1, eq. 4).

    Args:
        params: the regularized tensors (e.g. ``model.regularized_parameters()``).
        weight: the regularization constant (seed 1 uses 0.02); must be >= 0.

    Returns:
        A scalar tensor; a plain 0-dim zero when ``params`` is empty or ``weight`` is 0.
    """
    if weight < 0:
        raise ValueError(f"head L2 weight must be >= 0, got {weight}")
    params = list(params)
    if weight == 0 or not params:
        return torch.zeros(())
    return weight * torch.stack([p.square().sum() for p in params]).sum()


def gradient_matching(log_err: Tensor, valid: Tensor, scales: Iterable[int] = GRADIENT_SCALES) -> Tensor:
    """Return the multi-scale gradient-matching term of a log-depth error image.

    For every step ``s`` in ``scales``, the difference of ``log_err`` between pixels ``s``
    apart horizontally and vertically, where both are valid: zero wherever the prediction's
    depth *ratio* between the two pixels equals the sensor's, whatever the global scale.
    A depth edge the prediction smears or misplaces costs here, a global scale error does
    not (the log-L1 term carries that). Large steps see edges smeared over many pixels.

    Args:
        log_err: ``log pred - log target`` ``(B, 1, H, W)``, 0 where invalid.
        valid: bool mask, same shape.
        scales: pixel steps.

    Returns:
        The mean absolute difference over every valid pair of every scale, averaged over
        the scales that have a valid pair; a 0 attached to the graph when none has.
    """
    terms = []
    for s in scales:
        for dim in (2, 3):
            if log_err.shape[dim] <= s:
                continue
            a, b = log_err.narrow(dim, s, log_err.shape[dim] - s), log_err.narrow(dim, 0, log_err.shape[dim] - s)
            both = valid.narrow(dim, s, valid.shape[dim] - s) & valid.narrow(dim, 0, valid.shape[dim] - s)
            n = both.sum()
            diff = torch.where(both, (a - b).abs(), torch.zeros((), dtype=log_err.dtype, device=log_err.device))
            terms.append(torch.where(n > 0, diff.sum() / n.clamp_min(1), diff.sum() * 0))
    if not terms:
        return log_err.sum() * 0
    return torch.stack(terms).mean()


def model_loss(
    model: "DepthModel", pred: Tensor, target: Tensor, valid: Tensor, kind: str | None = None
) -> Tensor:
    """Return the loss the model was designed to be trained with.

    ``model.defaults.loss`` picks the data term and ``model.defaults.head_l2`` weighs
    the squared norm of ``model.regularized_parameters()``:

    - ``"l1"``: ``masked_l1 + head_l2 * sum ||W||^2`` (seed 0; its head weight is 0).
    - ``"rmse"``: ``sqrt(masked_mse + head_l2 * sum ||W||^2)``, the penalty *inside*
      the square root exactly as seed 1's eq. 4 writes it.
    - ``"log_l1"``: mean ``|log pred - log target|`` (+ the penalty): every pixel's
      *relative* error counts alike, near or far (the AbsRel / delta view of depth).
    - ``"silog"``: the scale-invariant log error, per image
      ``sqrt(mean(d^2) - SILOG_LAMBDA * mean(d)^2)`` with ``d = log pred - log target``,
      averaged over the images with valid pixels (+ the penalty): one image's global
      scale error counts only ``sqrt(1 - SILOG_LAMBDA)`` as much as a structure error.
    - ``"log_l1_grad"``: ``"log_l1"`` + ``GRADIENT_WEIGHT`` x :func:`gradient_matching`
      of the log error: depth edges where the sensor has them (issue 24).

    Args:
        model: a ``DepthModel`` (anything with ``defaults`` and
            ``regularized_parameters()``).
        pred: predicted depth in metres ``(B, 1, H, W)``.
        target: ground-truth depth in metres, same shape, NaN where invalid.
        valid: bool mask, same shape.
        kind: one of :data:`LOSSES` instead of ``model.defaults.loss``.

    Returns:
        A scalar tensor; exactly 0 (with grad) when no pixel is valid, so a batch
        without supervision never moves the weights through the penalty alone.
    """
    kind = model.defaults.loss if kind is None else kind
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")
    if kind in ("log_l1", "silog", "log_l1_grad"):
        _check(pred, target, valid)
        safe = torch.where(valid, target, pred.detach()).to(pred.dtype).clamp_min(1e-3)
        log_err = torch.where(valid, pred.clamp_min(1e-3).log() - safe.log(), torch.zeros((), dtype=pred.dtype,
                                                                                              device=pred.device))
        err, n = log_err, valid.sum()
    else:
        err, n = _masked_error(pred, target, valid)
    penalty = head_l2(model.regularized_parameters(), float(model.defaults.head_l2)).to(pred.device)
    if kind == "silog":
        per_image = valid.flatten(1).sum(dim=1)
        mean_sq = err.square().flatten(1).sum(dim=1) / per_image.clamp_min(1)
        mean = err.flatten(1).sum(dim=1) / per_image.clamp_min(1)
        image_loss = _safe_sqrt((mean_sq - SILOG_LAMBDA * mean.square()).clamp_min(0))
        has = per_image > 0
        loss = (image_loss * has).sum() / has.sum().clamp_min(1) + penalty
    elif kind in ("l1", "log_l1"):
        loss = err.abs().sum() / n.clamp_min(1) + penalty
    elif kind == "log_l1_grad":
        loss = err.abs().sum() / n.clamp_min(1) + GRADIENT_WEIGHT * gradient_matching(err, valid) + penalty
    else:
        loss = _safe_sqrt(err.square().sum() / n.clamp_min(1) + penalty)
    return torch.where(n > 0, loss, loss * 0)
