"""The common depth-model interface: normalisation, bounded output, trainable scopes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from depth_estimator_ros import parameters

from .encoders import encoder_weights_provenance

__all__ = [
    "CANONICAL_FOCAL",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SCOPES",
    "DepthModel",
    "TrainingDefaults",
    "freeze_batchnorm",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Focal length of the canonical camera every model predicts for, in units of the image's
#: geometric-mean side, ``sqrt(fx * fy / (W * H))`` (see :func:`camera_scale`): a Kinect v1
#: with ROS's default calibration, fx = fy = 525 px at 640x480 (62.7 degrees horizontal
#: field of view). Depth for another camera is the canonical prediction times
#: ``focal / CANONICAL_FOCAL`` (Metric3D's canonical camera space, label-scale form): the
#: same scene seen through a longer lens looks closer, and the scale undoes that.
CANONICAL_FOCAL = 525.0 / math.sqrt(640.0 * 480.0)

#: Names accepted by :meth:`DepthModel.set_trainable` (defined with the parameters that take them).
SCOPES = parameters.SCOPES

#: Smallest image side every architecture accepts (one cell at stride 32).
MIN_INPUT_SIDE = 32

_LOSSES = ("l1", "rmse")


@dataclass(frozen=True)
class TrainingDefaults:
    """Hold the offline training recipe an architecture comes with.

    Attributes:
        lr: Adam learning rate.
        weight_decay: Adam weight decay (L2 on every trainable parameter).
        loss: ``"l1"`` (masked L1) or ``"rmse"`` (masked RMSE), both in metres.
        micro_batch: images per forward/backward pass.
        accumulation: micro-batches accumulated per optimiser step
            (effective batch = ``micro_batch * accumulation``).
        head_l2: weight of the extra L2 penalty on :meth:`DepthModel.regularized_parameters`.
    """

    lr: float
    weight_decay: float
    loss: str
    micro_batch: int
    accumulation: int
    head_l2: float = 0.0

    def __post_init__(self) -> None:
        if self.loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}, got {self.loss!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not (self.weight_decay >= 0 and self.head_l2 >= 0):
            raise ValueError("weight_decay and head_l2 must be >= 0")
        if self.micro_batch < 1 or self.accumulation < 1:
            raise ValueError("micro_batch and accumulation must be >= 1")

    @property
    def effective_batch(self) -> int:
        """Return the number of images per optimiser step."""
        return self.micro_batch * self.accumulation


def _check_size(input_size: Sequence[int]) -> tuple[int, int]:
    """Return ``input_size`` as an ``(H, W)`` tuple of ints or raise ValueError."""
    if not isinstance(input_size, Sequence) or isinstance(input_size, (str, bytes)) or len(input_size) != 2:
        raise ValueError(f"input_size must be (height, width), got {input_size!r}")
    height, width = (int(v) for v in input_size)
    if (height, width) != tuple(input_size) or min(height, width) < MIN_INPUT_SIDE:
        raise ValueError(f"input_size must be two integers >= {MIN_INPUT_SIDE}, got {input_size!r}")
    return height, width


def _check_range(min_depth: float, max_depth: float, *, positive: bool) -> tuple[float, float]:
    """Return the depth range as floats or raise ValueError."""
    lo, hi = float(min_depth), float(max_depth)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo < hi):
        raise ValueError(f"need finite 0 <= min_depth < max_depth, got {min_depth!r}, {max_depth!r}")
    if positive and lo <= 0.0:
        raise ValueError(f"min_depth must be > 0 for this architecture (log-depth output), got {min_depth!r}")
    return lo, hi


class DepthModel(nn.Module):
    """Map an RGB batch in ``[0, 1]`` to metric depth at the same resolution.

    Subclasses build ``encoder`` and ``decoder``, implement :meth:`predict_depth`
    on ImageNet-normalised input and :meth:`_scope_modules`, and set the class
    attributes ``arch`` and ``defaults``. Construction leaves the model with the
    ``"default"`` trainable scope. Batch-norm layers whose parameters are all frozen
    keep their running statistics frozen too (they stay in eval mode under
    ``train()``), so a frozen encoder really is frozen.

    Attributes:
        arch: registry name.
        config: JSON-able keyword arguments; ``build_model(arch, **config)`` rebuilds
            the same architecture (weights are not part of it).
        input_size: ``(H, W)`` the model is meant to be fed at.
        min_depth, max_depth: output range in metres.
        defaults: the training recipe for this architecture.
        encoder_weights: ``"imagenet"`` or ``None``, how the encoder was initialised at
            construction (a model rebuilt from a checkpoint says ``None``).
    """

    arch: ClassVar[str]
    defaults: ClassVar[TrainingDefaults]
    #: Whether ``min_depth`` may be 0 m (not for log-depth outputs).
    allows_zero_depth: ClassVar[bool] = True

    def __init__(
        self,
        *,
        input_size: Sequence[int],
        min_depth: float,
        max_depth: float,
        encoder_weights: str | None,
    ) -> None:
        super().__init__()
        self.input_size = _check_size(input_size)
        self.min_depth, self.max_depth = _check_range(min_depth, max_depth, positive=not self.allows_zero_depth)
        self.encoder_weights = encoder_weights
        #: Which encoder weights were loaded at construction (for checkpoint provenance).
        self.encoder_provenance = encoder_weights_provenance(encoder_weights, None)
        self.frozen_batchnorm = False
        # Constants, not learned: kept out of state_dict so checkpoints hold weights only.
        self.register_buffer("rgb_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def config(self) -> dict[str, Any]:
        """Return the JSON-able keyword arguments that rebuild this architecture."""
        return {
            "input_size": list(self.input_size),
            "min_depth": self.min_depth,
            "max_depth": self.max_depth,
        }

    def forward(self, rgb: Tensor, focal: Tensor | float | None = None) -> Tensor:
        """Predict metric depth for the camera that took ``rgb``.

        Args:
            rgb: ``(B, 3, H, W)`` float RGB in ``[0, 1]``.
            focal: the camera's normalised focal length ``sqrt(fx * fy / (W * H))``
                (:meth:`Intrinsics.normalized_focal
                <depth_estimator_ros.data.frame.Intrinsics.normalized_focal>`), one
                number or ``(B,)``; ``None`` = the canonical camera (:data:`CANONICAL_FOCAL`).
                It does not depend on the image's resolution, only on its field of view.

        Returns:
            ``(B, 1, H, W)`` depth in metres within ``[min_depth, max_depth]``.
        """
        self._check_input(rgb)
        depth = self.predict_depth((rgb - self.rgb_mean) / self.rgb_std)
        if focal is None:
            return depth
        return self.bound_depth(depth * camera_scale(focal, depth))

    def forward_unchecked(self, rgb: Tensor, focal: Tensor) -> Tensor:
        """Compute :meth:`forward` without its argument checks, for graph export (ONNX).

        Args:
            rgb: ``(B, 3, H, W)`` float RGB in ``[0, 1]``.
            focal: ``(B,)`` normalised focal lengths (finite, > 0: the caller checks).

        Returns:
            ``(B, 1, H, W)`` depth in metres, equal to ``forward(rgb, focal)`` in eval mode.
        """
        depth = self.predict_depth((rgb - self.rgb_mean) / self.rgb_std)
        return self.bound_depth(depth * (focal.reshape(-1, 1, 1, 1) / CANONICAL_FOCAL))

    def encode(self, rgb: Tensor) -> list[Tensor]:
        """Return the encoder's features of ``rgb`` (``(B, 3, H, W)`` in ``[0, 1]``).

        ``forward(rgb, focal)`` equals ``forward_features(encode(rgb), rgb.shape[-2:], focal)``.
        While :meth:`encoder_is_frozen` holds, the features of an image do not change,
        so a caller that trains only the decoder may compute them once per image.
        """
        self._check_input(rgb)
        return self._encode((rgb - self.rgb_mean) / self.rgb_std)

    def forward_features(
        self, features: Sequence[Tensor], size: Sequence[int], focal: Tensor | float | None = None
    ) -> Tensor:
        """Predict metric depth from :meth:`encode` features of images of ``size`` ``(H, W)``.

        Returns:
            ``(B, 1, H, W)`` depth in metres, as :meth:`forward` returns it.
        """
        depth = self.decode(list(features), (int(size[0]), int(size[1])))
        if focal is None:
            return depth
        return self.bound_depth(depth * camera_scale(focal, depth))

    def encoder_is_frozen(self) -> bool:
        """Whether :meth:`encode` is a fixed function in the model's current mode.

        True when no encoder parameter requires a gradient and no encoder layer
        behaves differently in training mode right now (batch norm updating its
        statistics, dropout with ``p > 0``).
        """
        if any(p.requires_grad for p in self.encoder.parameters()):
            return False
        for module in self.encoder.modules():
            if not module.training:
                continue
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                return False
            if isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
                return False
        return True

    def predict_depth(self, x: Tensor) -> Tensor:
        """Map normalised ``(B, 3, H, W)`` input to ``(B, 1, H, W)`` depth in metres."""
        return self.decode(self._encode(x), (int(x.shape[-2]), int(x.shape[-1])))

    def _encode(self, x: Tensor) -> list[Tensor]:
        """Run the encoder on normalised input; always a list of feature maps."""
        features = self.encoder(x)
        return list(features) if isinstance(features, (list, tuple)) else [features]

    def decode(self, features: list[Tensor], size: tuple[int, int]) -> Tensor:
        """Map encoder features of images of ``size`` ``(H, W)`` to ``(B, 1, H, W)`` depth in metres."""
        raise NotImplementedError

    def _check_input(self, rgb: Tensor) -> None:
        """Raise TypeError/ValueError unless ``rgb`` is a float ``(B, 3, H, W)`` batch."""
        if not isinstance(rgb, Tensor) or not rgb.is_floating_point():
            raise TypeError(f"rgb must be a floating point tensor, got {type(rgb).__name__} "
                            f"{getattr(rgb, 'dtype', '')}".rstrip())
        if rgb.dim() != 4 or rgb.shape[1] != 3:
            raise ValueError(f"rgb must have shape (B, 3, H, W), got {tuple(rgb.shape)}")
        if min(rgb.shape[-2:]) < MIN_INPUT_SIDE:
            raise ValueError(f"rgb height and width must be >= {MIN_INPUT_SIDE}, got {tuple(rgb.shape[-2:])}")

    def bound_depth(self, depth: Tensor) -> Tensor:
        """Clamp a linear depth output to the range, letting gradients pass unchanged.

        A plain clamp would zero the gradient of every pixel outside the range and
        could strand them there; the straight-through form keeps them learning.

        Args:
            depth: any-shape tensor in metres.

        Returns:
            Same shape, values in ``[min_depth, max_depth]``, gradient of identity.
        """
        clamped = depth.clamp(self.min_depth, self.max_depth)
        return depth + (clamped - depth).detach()

    def _scope_modules(self, scope: str) -> list[nn.Module]:
        """Return the modules whose parameters ``scope`` trains (scope already validated)."""
        raise NotImplementedError

    def set_trainable(self, scope: str = "default") -> list[nn.Parameter]:
        """Choose which parameters train and return them.

        Args:
            scope: ``"default"`` (the architecture's own recipe), ``"decoder"``,
                ``"decoder+tail"`` (decoder plus the last encoder stage) or ``"all"``.

        Returns:
            The trainable parameters, in ``parameters()`` order; every other
            parameter gets ``requires_grad=False``.
        """
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        chosen = {id(p) for module in self._scope_modules(scope) for p in module.parameters()}
        chosen -= {id(p) for module in self._frozen_modules() for p in module.parameters()}
        trainable = []
        for param in self.parameters():
            param.requires_grad_(id(param) in chosen)
            if id(param) in chosen:
                trainable.append(param)
        self.train(self.training)
        return trainable

    def _frozen_modules(self) -> list[nn.Module]:
        """Return modules that never train, whatever the scope (none by default)."""
        return []

    def regularized_parameters(self) -> list[nn.Parameter]:
        """Return the parameters under the extra head L2 penalty (``[]`` when none)."""
        return []

    def train(self, mode: bool = True) -> DepthModel:
        """Set training mode, keeping frozen batch-norm statistics frozen.

        Args:
            mode: ``True`` for training, ``False`` for evaluation.

        Returns:
            ``self``.
        """
        super().train(mode)
        if mode:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    params = list(module.parameters())
                    if self.frozen_batchnorm or (params and not any(p.requires_grad for p in params)):
                        module.eval()
        return self


def camera_scale(focal: Tensor | float, like: Tensor) -> Tensor:
    """Return ``focal / CANONICAL_FOCAL`` shaped ``(B, 1, 1, 1)`` (or ``(1, 1, 1, 1)``) like ``like``.

    Raises:
        ValueError: a focal length that is not finite and positive, or a batch size
            that does not match ``like``.
    """
    value = torch.as_tensor(focal, dtype=like.dtype, device=like.device).reshape(-1, 1, 1, 1)
    if value.shape[0] not in (1, like.shape[0]):
        raise ValueError(f"focal must be one number or one per image ({like.shape[0]}), got {value.shape[0]}")
    if not bool(torch.isfinite(value).all() and (value > 0).all()):
        raise ValueError(f"focal must be finite and > 0, got {value.flatten().tolist()[:4]}")
    return value / CANONICAL_FOCAL


def freeze_batchnorm(model: DepthModel, frozen: bool = True) -> int:
    """Keep (or stop keeping) every batch-norm layer on its running statistics.

    Online fine-tuning uses batches of 4-8 frames of one room; batch statistics
    from so few correlated images are noisy and would overwrite the running
    statistics learned offline. Frozen layers still train their affine parameters.
    The setting survives later ``model.train()`` calls.

    Args:
        model: the model to change.
        frozen: ``True`` to freeze the statistics, ``False`` to let them update again.

    Returns:
        The number of batch-norm layers in the model.
    """
    if not isinstance(model, DepthModel):
        raise TypeError(f"model must be a DepthModel, got {type(model).__name__}")
    model.frozen_batchnorm = bool(frozen)
    model.train(model.training)
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
