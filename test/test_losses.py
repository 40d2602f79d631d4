"""Masked losses against hand-computed values, including all-invalid masks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from depth_estimator_ros.learning.losses import (
    GRADIENT_WEIGHT,
    SILOG_LAMBDA,
    gradient_matching,
    head_l2,
    masked_l1,
    masked_mse,
    masked_rmse,
    model_loss,
    valid_mask,
)

NAN = float("nan")


def _case():
    # Valid pixels: errors +1, -2, +0.5 -> L1 3.5/3, MSE 5.25/3.
    pred = torch.tensor([[[[2.0, 1.0], [3.5, 7.0]]]], requires_grad=True)
    target = torch.tensor([[[[1.0, 3.0], [3.0, NAN]]]])
    valid = torch.tensor([[[[True, True], [True, False]]]])
    return pred, target, valid


class _HeadModel(nn.Module):
    """The two attributes ``model_loss`` reads from a DepthModel, on a real module."""

    def __init__(self, loss: str, weight: float) -> None:
        super().__init__()
        self.head = nn.Parameter(torch.tensor([1.0, 2.0]))  # ||W||^2 = 5
        self.defaults = SimpleNamespace(loss=loss, head_l2=weight)

    def regularized_parameters(self) -> list[nn.Parameter]:
        return [self.head]


def test_valid_mask_rules_tensor_and_array():
    depth = np.array([[NAN, 0.0, -1.0, 0.2], [0.5, 5.0, 10.0, 10.5]], dtype=np.float32)
    expected = np.array([[False, False, False, False], [True, True, True, False]])
    np.testing.assert_array_equal(valid_mask(depth, 0.5, 10.0), expected)
    mask = valid_mask(torch.from_numpy(depth), 0.5, 10.0)
    assert mask.dtype == torch.bool
    np.testing.assert_array_equal(mask.numpy(), expected)
    inf = valid_mask(np.array([np.inf], dtype=np.float32), 0.0, math.inf)
    assert not inf.any()


def test_valid_mask_rejects_bad_range_and_type():
    with pytest.raises(ValueError, match="min_depth"):
        valid_mask(torch.ones(1), 5.0, 1.0)
    with pytest.raises(TypeError, match="numpy"):
        valid_mask([1.0], 0.0, 10.0)


def test_masked_l1_and_rmse_hand_computed():
    pred, target, valid = _case()
    assert masked_l1(pred, target, valid).item() == pytest.approx(3.5 / 3)
    assert masked_mse(pred, target, valid).item() == pytest.approx(5.25 / 3)
    rmse = masked_rmse(pred, target, valid)
    assert rmse.item() == pytest.approx(math.sqrt(5.25 / 3))
    rmse.backward()
    # d rmse / d p_i = e_i / (n * rmse); the invalid pixel gets exactly 0.
    r = math.sqrt(5.25 / 3)
    expected = torch.tensor([[[[1.0, -2.0], [0.5, 0.0]]]]) / (3 * r)
    torch.testing.assert_close(pred.grad, expected)


def test_l1_gradient_is_sign_over_count_and_zero_where_invalid():
    pred, target, valid = _case()
    masked_l1(pred, target, valid).backward()
    torch.testing.assert_close(pred.grad, torch.tensor([[[[1.0, -1.0], [1.0, 0.0]]]]) / 3)


@pytest.mark.parametrize("loss_fn", [masked_l1, masked_mse, masked_rmse])
def test_all_invalid_gives_zero_with_finite_grad(loss_fn):
    pred = torch.full((2, 1, 3, 3), 4.0, requires_grad=True)
    target = torch.full((2, 1, 3, 3), NAN)
    valid = torch.zeros((2, 1, 3, 3), dtype=torch.bool)
    loss = loss_fn(pred, target, valid)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_perfect_prediction_rmse_is_zero_without_nan_grad():
    pred = torch.tensor([1.0, 2.0], requires_grad=True)
    target = torch.tensor([1.0, 2.0])
    loss = masked_rmse(pred, target, torch.tensor([True, True]))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(pred.grad).all()


def test_shape_and_dtype_errors():
    pred, target, valid = _case()
    with pytest.raises(ValueError, match="one shape"):
        masked_l1(pred, target[..., :1], valid)
    with pytest.raises(TypeError, match="bool"):
        masked_l1(pred, target, valid.float())


def test_head_l2():
    w = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    assert head_l2(w, 0.02).item() == pytest.approx(0.02 * 14)
    assert head_l2([], 0.02).item() == 0.0
    assert head_l2(w, 0.0).item() == 0.0
    with pytest.raises(ValueError, match=">= 0"):
        head_l2(w, -1.0)


def test_model_loss_rmse_puts_penalty_inside_the_root():
    pred, target, valid = _case()
    model = _HeadModel("rmse", 0.02)
    loss = model_loss(model, pred, target, valid)
    assert loss.item() == pytest.approx(math.sqrt(5.25 / 3 + 0.02 * 5))
    loss.backward()
    assert model.head.grad is not None and torch.all(model.head.grad > 0)


def test_model_loss_l1_adds_penalty():
    pred, target, valid = _case()
    loss = model_loss(_HeadModel("l1", 0.1), pred, target, valid)
    assert loss.item() == pytest.approx(3.5 / 3 + 0.1 * 5)


def test_model_loss_log_l1_weighs_relative_errors_and_overrides_the_model_default():
    pred, target, valid = _case()
    loss = model_loss(_HeadModel("rmse", 0.0), pred, target, valid, kind="log_l1")
    expected = (abs(math.log(2.0)) + abs(math.log(1 / 3)) + abs(math.log(3.5 / 3))) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.isfinite(pred.grad).all() and pred.grad[0, 0, 1, 1] == 0  # the invalid NaN pixel adds nothing
    # the same relative error costs the same near and far
    near = model_loss(_HeadModel("l1", 0.0), torch.full((1, 1, 1, 1), 1.1), torch.ones((1, 1, 1, 1)),
                      torch.ones((1, 1, 1, 1), dtype=torch.bool), kind="log_l1")
    far = model_loss(_HeadModel("l1", 0.0), torch.full((1, 1, 1, 1), 5.5), torch.full((1, 1, 1, 1), 5.0),
                     torch.ones((1, 1, 1, 1), dtype=torch.bool), kind="log_l1")
    assert near.item() == pytest.approx(far.item(), rel=1e-5)  # float32: log(5.5) - log(5) carries ~1e-7 m of rounding


def test_model_loss_silog_counts_a_global_scale_error_only_in_part_and_per_image():
    ones = torch.ones((2, 1, 2, 2), dtype=torch.bool)
    target = torch.stack([torch.full((1, 2, 2), 1.5), torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])])
    # image 0 twice too far everywhere (scale only), image 1 exact
    pred = (target * torch.tensor([2.0, 1.0]).reshape(2, 1, 1, 1)).requires_grad_(True)
    loss = model_loss(_HeadModel("l1", 0.0), pred, target, ones, kind="silog")
    assert loss.item() == pytest.approx(math.sqrt(1 - SILOG_LAMBDA) * math.log(2.0) / 2, rel=1e-5)
    # a structure error of the same mean size costs more than the scale error
    bent = target.clone()
    bent[0] = target[0] * torch.tensor([[2.0, 0.5], [2.0, 0.5]])
    structure = model_loss(_HeadModel("l1", 0.0), bent, target, ones, kind="silog")
    assert structure.item() == pytest.approx(math.log(2.0) / 2, rel=1e-5)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    # an image without valid pixels is left out of the mean, not counted as 0
    valid = ones.clone()
    valid[1] = False
    only_first = model_loss(_HeadModel("l1", 0.0), pred.detach(), target, valid, kind="silog")
    assert only_first.item() == pytest.approx(math.sqrt(1 - SILOG_LAMBDA) * math.log(2.0), rel=1e-5)


def _step_scene(width: int = 16) -> torch.Tensor:
    """A wall at 2 m with a box at 1 m in its left half: one vertical depth edge."""
    depth = torch.full((1, 1, 12, width), 2.0)
    depth[..., : width // 2] = 1.0
    return depth


def test_gradient_matching_ignores_a_global_scale_and_sees_a_smeared_edge():
    target = _step_scene()
    valid = torch.ones_like(target, dtype=torch.bool)
    scaled = (target * 1.7).log() - target.log()  # right shape, wrong scale
    assert gradient_matching(scaled, valid).item() == pytest.approx(0.0, abs=1e-6)
    # the same edge smeared over 4 columns: every horizontal step across it errs
    smeared = target.clone()
    smeared[..., 6:10] = torch.linspace(1.0, 2.0, 6)[1:5]
    sharp_err = gradient_matching(smeared.log() - target.log(), valid)
    assert sharp_err.item() > 0.05
    # an edge one column off errs too; nothing flat errs
    moved = torch.roll(target, 1, dims=3)
    moved[..., 0] = 1.0
    assert gradient_matching(moved.log() - target.log(), valid).item() > 0.0


def test_gradient_matching_counts_only_pairs_valid_at_both_ends():
    target = _step_scene()
    pred = target.clone()
    pred[..., 8] = 5.0  # a wild column...
    valid = torch.ones_like(target, dtype=torch.bool)
    assert gradient_matching(pred.log() - target.log(), valid).item() > 0
    valid[..., 8] = False  # ...that the sensor did not measure costs nothing
    err = torch.where(valid, pred.log() - target.log(), torch.zeros(()))
    assert gradient_matching(err, valid).item() == pytest.approx(0.0, abs=1e-6)
    none = torch.zeros_like(valid)
    zero = gradient_matching(torch.zeros_like(target, requires_grad=True), none)
    assert zero.item() == 0.0 and zero.requires_grad


def test_model_loss_log_l1_grad_is_log_l1_plus_the_weighted_edge_term():
    target = _step_scene()
    valid = torch.ones_like(target, dtype=torch.bool)
    pred = target.clone()
    pred[..., 6:10] = 1.5  # a blurred edge, right on average
    pred.requires_grad_(True)
    log_l1 = model_loss(_HeadModel("l1", 0.0), pred, target, valid, kind="log_l1")
    both = model_loss(_HeadModel("l1", 0.0), pred, target, valid, kind="log_l1_grad")
    edge = gradient_matching(pred.log() - target.log(), valid)
    assert both.item() == pytest.approx(log_l1.item() + GRADIENT_WEIGHT * edge.item(), rel=1e-5)
    both.backward()
    assert torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("kind", ["l1", "rmse", "log_l1", "silog", "log_l1_grad"])
def test_model_loss_all_invalid_is_zero_and_leaves_weights_alone(kind):
    model = _HeadModel("l1" if kind.startswith(("log_l1", "silog")) else kind, 0.02)
    pred = torch.ones((1, 1, 2, 2), requires_grad=True)
    loss = model_loss(model, pred, torch.full((1, 1, 2, 2), NAN), torch.zeros((1, 1, 2, 2), dtype=torch.bool),
                      kind=kind)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(model.head.grad, torch.zeros(2))


def test_model_loss_unknown_kind():
    pred, target, valid = _case()
    with pytest.raises(ValueError, match="'l1', 'rmse'"):
        model_loss(_HeadModel("huber", 0.0), pred, target, valid)
