"""Seed 0: frozen DenseNet-201 encoder with a five-block upsampling decoder."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import DenseNet201_Weights, densenet201

from .base import DepthModel, TrainingDefaults
from .encoders import check_encoder_weights, encoder_state_dict, load_encoder_weights

__all__ = ["DenseNetDepth", "UpBlock"]

#: The decoder's channel progression (seed 0): 1920 -> 1024 -> 1024 -> ... -> 64 -> 1.
_CHANNELS = (1920, 1024, 1024, 512, 512, 256, 256, 128, 128, 64, 1)

# torchvision's published DenseNet file predates its module names ("norm.1" for "norm1");
# this is the rename torchvision itself applies when loading it.
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


class UpBlock(nn.Sequential):
    """2x nearest upsample, conv3x3, BN, ReLU, conv3x3 (+ BN, ReLU unless ``last``)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, *, last: bool = False) -> None:
        layers: list[nn.Module] = [
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_channels, mid_channels, 3, padding=1),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, 3, padding=1),
        ]
        if not last:
            layers += [nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class DenseNetDepth(DepthModel):
    """DenseNet-201 encoder-decoder of seed 0 (``000_817d9d2612a909ef.txt``).

    Encoder: torchvision DenseNet-201 ``features`` (1920 channels at stride 32),
    frozen by default. Decoder: four blocks of [2x nearest upsample, conv3x3, BN,
    ReLU, conv3x3, BN, ReLU] and a last [2x nearest upsample, conv3x3, BN, ReLU,
    conv3x3], channels 1920→1024→1024→512→512→256→256→128→128→64→1; conv weights
    ~N(0, 1/sqrt(5·C_in)), biases 0. The linear output is clamped to 0–10 m
    (gradients pass straight through). Training recipe: L1, Adam lr 1e-4, weight
    decay 1e-4, micro-batches of 8 accumulated 8 times (effective batch 64).

    The default input is 480x640, NYU Depth v2's native resolution the seed trained
    on: five 2x upsamplings bring the stride-32 features back exactly to the input
    size, so the network predicts at full resolution as the paper did. The network
    is fully convolutional; ``input_size=(240, 320)`` runs the same weights at a
    quarter of the cost where that matters more than fidelity to the paper.
    """

    arch = "densenet201"
    defaults = TrainingDefaults(lr=1e-4, weight_decay=1e-4, loss="l1", micro_batch=8, accumulation=8)

    def __init__(
        self,
        *,
        input_size: Sequence[int] = (480, 640),
        min_depth: float = 0.0,
        max_depth: float = 10.0,
        encoder_weights: str | None = None,
        progress: bool = True,
    ) -> None:
        """Build the model.

        Args:
            input_size: ``(H, W)`` to feed the model at; multiples of 32 give an exact
                full-resolution output, other sizes are resized bilinearly at the end.
            min_depth, max_depth: output range in metres (seed: 0-10 m).
            encoder_weights: ``"imagenet"`` for torchvision's DenseNet-201 ImageNet
                weights (read from the torch hub cache, downloaded once if missing),
                ``None`` for random initialisation.
            progress: show the download progress bar.
        """
        check_encoder_weights(encoder_weights)
        super().__init__(input_size=input_size, min_depth=min_depth, max_depth=max_depth,
                         encoder_weights=encoder_weights)
        self.encoder = densenet201().features
        state = encoder_state_dict(encoder_weights, DenseNet201_Weights.IMAGENET1K_V1, prefix="features.",
                                   progress=progress)
        if state is not None:
            state = {_LEGACY_KEY.sub(r"\1\2", key): value for key, value in state.items()}
            load_encoder_weights(self.encoder, state, encoder_weights)
        c = _CHANNELS
        self.decoder = nn.Sequential(
            *(UpBlock(c[i], c[i + 1], c[i + 2]) for i in range(0, 8, 2)),
            UpBlock(c[8], c[9], c[10], last=True),
        )
        for module in self.decoder.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=1.0 / math.sqrt(5 * module.in_channels))
                nn.init.zeros_(module.bias)
        self.set_trainable("default")

    def decode(self, features: list[Tensor], size: tuple[int, int]) -> Tensor:
        """Map the encoder's features to ``(B, 1, H, W)`` depth in metres."""
        depth = self.decoder(features[0])
        if tuple(depth.shape[-2:]) != tuple(size):
            depth = F.interpolate(depth, size=size, mode="bilinear", align_corners=False)
        return self.bound_depth(depth)

    def _scope_modules(self, scope: str) -> list[nn.Module]:
        """Return the modules ``scope`` trains; the seed trains the decoder only."""
        if scope in ("default", "decoder"):
            return [self.decoder]
        if scope == "decoder+tail":
            return [self.decoder, self.encoder.transition3, self.encoder.denseblock4, self.encoder.norm5]
        return [self]
