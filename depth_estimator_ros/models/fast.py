"""The real-time default: MobileNet encoder (V2 with ImageNet weights, or V3), skips, light decoder."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import (
    MobileNet_V2_Weights,
    MobileNet_V3_Large_Weights,
    MobileNet_V3_Small_Weights,
    WeightsEnum,
    mobilenet_v2,
    mobilenet_v3_large,
    mobilenet_v3_small,
)

from .base import DepthModel, TrainingDefaults
from .encoders import check_encoder_weights, encoder_state_dict, encoder_weights_provenance, load_encoder_weights

__all__ = ["BACKBONES", "FastDepth", "MobileNetEncoder", "SkipDecoder"]


@dataclass(frozen=True)
class _Backbone:
    """A torchvision MobileNet and where its stride-2/4/8/16/32 features come out."""

    builder: Callable[..., nn.Module]
    weights: WeightsEnum
    taps: tuple[int, ...]  # indices in ``features`` after which each stride's output is taken
    channels: tuple[int, ...]  # channels at those taps


_BACKBONES = {
    # V2 stops at its 320-channel stride-32 block: the 1x1 conv to 1280 channels after it
    # is the classifier's and would cost a third of the encoder.
    "mobilenet_v2": _Backbone(mobilenet_v2, MobileNet_V2_Weights.IMAGENET1K_V1,
                              (1, 3, 6, 13, 17), (16, 24, 32, 96, 320)),
    "mobilenet_v3_small": _Backbone(mobilenet_v3_small, MobileNet_V3_Small_Weights.IMAGENET1K_V1,
                                    (0, 1, 3, 8, 12), (16, 16, 24, 48, 576)),
    "mobilenet_v3_large": _Backbone(mobilenet_v3_large, MobileNet_V3_Large_Weights.IMAGENET1K_V2,
                                    (1, 3, 6, 12, 16), (16, 24, 40, 112, 960)),
}

#: Encoders the ``fast`` model can use; the first is the default (the one with ImageNet
#: weights on these machines: ``../shared/weights/``).
BACKBONES = tuple(_BACKBONES)
#: Decoder widths at strides 32, 16, 8, 4, 2.
_DECODER_CHANNELS = (96, 64, 48, 32, 16)
#: Depth the untrained model predicts everywhere, metres (a typical room distance).
_INIT_DEPTH = 2.5


class MobileNetEncoder(nn.Module):
    """Run a torchvision MobileNet feature extractor, returning five scales."""

    def __init__(self, backbone: str) -> None:
        super().__init__()
        spec = _BACKBONES[backbone]
        self.features = spec.builder().features[: spec.taps[-1] + 1]
        self.taps = spec.taps
        self.channels = spec.channels

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return the features at strides 2, 4, 8, 16 and 32 (``self.channels`` channels)."""
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                outputs.append(x)
        return outputs

    def tail(self) -> nn.Module:
        """Return the last stage (stride 16 to 32)."""
        return self.features[self.taps[-2] + 1:]


def _separable(in_channels: int, out_channels: int) -> nn.Sequential:
    """Return depthwise 3x3 + BN + ReLU, pointwise 1x1 + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SkipDecoder(nn.Module):
    """Upsample bilinearly, concatenate the skip, fuse with a depthwise-separable conv."""

    def __init__(self, tap_channels: Sequence[int]) -> None:
        super().__init__()
        self.bottleneck = nn.Sequential(
            nn.Conv2d(tap_channels[-1], _DECODER_CHANNELS[0], 1, bias=False),
            nn.BatchNorm2d(_DECODER_CHANNELS[0]),
            nn.ReLU(inplace=True),
        )
        skips = tap_channels[-2::-1]
        self.fuse = nn.ModuleList(
            _separable(cin + skip, cout)
            for cin, skip, cout in zip(_DECODER_CHANNELS[:-1], skips, _DECODER_CHANNELS[1:])
        )
        self.head = nn.Conv2d(_DECODER_CHANNELS[-1], 1, 3, padding=1)

    def forward(self, features: list[Tensor]) -> Tensor:
        """Map encoder features (strides 2..32) to ``(B, 1, H/2, W/2)`` depth logits."""
        x = self.bottleneck(features[-1])
        for fuse, skip in zip(self.fuse, reversed(features[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = fuse(torch.cat((x, skip), dim=1))
        return self.head(x)


class FastDepth(DepthModel):
    """Real-time monocular depth for CPUs and Jetson-class boards.

    A torchvision MobileNet encoder (V2 by default, V3 Small / Large as options) with
    skips at strides 2-32 and a decoder of bilinear upsampling + depthwise-separable
    fusion. Depth logits are predicted at half resolution, upsampled bilinearly to
    the input size and mapped to ``[min_depth, max_depth]`` through a sigmoid in
    log-depth, so relative precision is the same near and far and the output is
    bounded by construction. At initialisation the output is ``_INIT_DEPTH``
    everywhere, well inside the sigmoid's linear range. BN follows every conv; all
    layers train by default (from scratch or fine-tuned), except the encoder's
    batch norms when the encoder starts from pretrained weights (``freeze_encoder_bn``):
    they keep ImageNet's statistics (in the MobileNetV2 file of ``../shared/weights`` they
    are folded into the convolutions and must stay the identity). For online
    fine-tuning with small batches see :func:`~depth_estimator_ros.models.base.freeze_batchnorm`.
    """

    arch = "fast"
    defaults = TrainingDefaults(lr=1e-3, weight_decay=1e-4, loss="l1", micro_batch=8, accumulation=1)
    allows_zero_depth = False

    def __init__(
        self,
        *,
        input_size: Sequence[int] = (192, 256),
        min_depth: float = 0.1,
        max_depth: float = 10.0,
        backbone: str = BACKBONES[0],
        encoder_weights: str | None = None,
        freeze_encoder_bn: bool | None = None,
        progress: bool = True,
    ) -> None:
        """Build the model.

        Args:
            input_size: ``(H, W)`` to feed the model at; 192x256 keeps the 4:3 aspect of
                Kinect-class cameras and runs in real time on two CPU cores.
            min_depth, max_depth: output range in metres (``min_depth > 0``).
            backbone: one of :data:`BACKBONES`. ``"mobilenet_v2"`` (default) has
                ImageNet weights on these machines; ``"mobilenet_v3_small"`` is lighter;
                ``"mobilenet_v3_large"`` is slower and stronger, for GPUs and Jetson boards.
            encoder_weights: ``"imagenet"`` for torchvision's ImageNet weights of the
                backbone (read from the torch hub cache, downloaded once if missing),
                a path to a local safetensors state dict of the torchvision model,
                or ``None`` for random initialisation.
            freeze_encoder_bn: keep the encoder's batch norms fixed (statistics and
                affine); ``None`` = when ``encoder_weights`` is given.
            progress: show the download progress bar.
        """
        check_encoder_weights(encoder_weights)
        if backbone not in _BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
        super().__init__(input_size=input_size, min_depth=min_depth, max_depth=max_depth,
                         encoder_weights=encoder_weights)
        self.backbone = backbone
        self.freeze_encoder_bn = encoder_weights is not None if freeze_encoder_bn is None else bool(freeze_encoder_bn)
        self.encoder = MobileNetEncoder(backbone)
        spec = _BACKBONES[backbone]
        state = encoder_state_dict(encoder_weights, spec.weights, prefix="features.", progress=progress)
        if state is not None:
            load_encoder_weights(self.encoder.features, state, encoder_weights)
            self.encoder_provenance = encoder_weights_provenance(encoder_weights, spec.weights)
        self.decoder = SkipDecoder(self.encoder.channels)
        self._init_decoder()
        self.set_trainable("default")

    @property
    def config(self) -> dict:
        """Return the JSON-able keyword arguments that rebuild this architecture."""
        return {**super().config, "backbone": self.backbone, "freeze_encoder_bn": self.freeze_encoder_bn}

    def _frozen_modules(self) -> list[nn.Module]:
        """Return the encoder's batch norms when they are kept fixed."""
        if not self.freeze_encoder_bn:
            return []
        return [m for m in self.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def _init_decoder(self) -> None:
        """Initialise convs He-style and start the output at ``_INIT_DEPTH`` metres."""
        for module in self.decoder.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        head = self.decoder.head
        nn.init.normal_(head.weight, std=1e-3)
        log_lo, log_hi = math.log(self.min_depth), math.log(self.max_depth)
        init = min(max(_INIT_DEPTH, self.min_depth), self.max_depth)
        fraction = min(max((math.log(init) - log_lo) / (log_hi - log_lo), 0.05), 0.95)
        nn.init.constant_(head.bias, math.log(fraction / (1.0 - fraction)))

    def decode(self, features: list[Tensor], size: tuple[int, int]) -> Tensor:
        """Map encoder features (strides 2..32) to ``(B, 1, H, W)`` depth in metres."""
        logits = self.decoder(features)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        log_lo, log_hi = math.log(self.min_depth), math.log(self.max_depth)
        depth = torch.exp(log_lo + (log_hi - log_lo) * torch.sigmoid(logits))
        return depth.clamp(self.min_depth, self.max_depth)  # exp() may round a hair outside

    def _scope_modules(self, scope: str) -> list[nn.Module]:
        """Return the modules ``scope`` trains; the default trains everything."""
        if scope == "decoder":
            return [self.decoder]
        if scope == "decoder+tail":
            return [self.decoder, self.encoder.tail()]
        return [self]

