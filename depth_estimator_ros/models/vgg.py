"""Seed 1: VGG16 coarse depth networks with a fully connected or a convolutional head."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import VGG16_Weights
from torchvision.models.vgg import cfgs, make_layers

from .base import DepthModel, TrainingDefaults
from .encoders import check_encoder_weights, encoder_state_dict, load_encoder_weights

__all__ = ["VGGCoarse", "VGGCoarseConv", "VGGDepthBase"]

#: Side of the coarse depth map the heads predict (seed 1: 24x24).
COARSE_SIDE = 24
#: ``vgg16().features`` up to and including conv5_3 + ReLU (its final max-pool left to the heads).
_CONV5_3_END = 30
#: Index in ``vgg16().features`` of conv4_2, the first of the last five conv layers.
_CONV4_2 = 19
#: Index of conv5_1, the first layer of the last stage.
_CONV5_1 = 24


def _vgg16_conv_layers(encoder_weights: str | None, progress: bool) -> nn.Sequential:
    """Return VGG16's conv1_1..conv5_3 (with ReLUs and the first four max-pools)."""
    features = make_layers(cfgs["D"])[:_CONV5_3_END]
    state = encoder_state_dict(encoder_weights, VGG16_Weights.IMAGENET1K_V1, prefix="features.", progress=progress)
    if state is not None:
        load_encoder_weights(features, state, encoder_weights)  # conv weights only; the dropped max-pool has none
    else:
        for module in features.modules():  # torchvision's own VGG initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
    return features


class VGGDepthBase(DepthModel):
    """VGG16 conv layers (only the last five trainable) feeding a coarse 24x24 head.

    Seed 1 (``001_3233483ab44a625b.txt``): 224x224 input, the head predicts a 24x24
    depth map, which this class upsamples bilinearly to the input size so every
    architecture answers at full resolution. The linear output is clamped to the
    depth range with straight-through gradients (at 0 m this is the seed's ReLU). Training recipe: masked RMSE plus
    L2 0.02 on the head (:meth:`regularized_parameters`), Adam lr 1e-5, batch 10.
    Head weights use Keras' defaults (Glorot uniform, zero bias) as the seed did.
    """

    defaults = TrainingDefaults(lr=1e-5, weight_decay=0.0, loss="rmse", micro_batch=10, accumulation=1,
                                head_l2=0.02)

    def __init__(
        self,
        *,
        input_size: Sequence[int] = (224, 224),
        min_depth: float = 0.0,
        max_depth: float = 10.0,
        encoder_weights: str | None = None,
        progress: bool = True,
    ) -> None:
        """Build the model.

        Args:
            input_size: ``(H, W)`` to feed the model at (seed: 224x224).
            min_depth, max_depth: output range in metres.
            encoder_weights: ``"imagenet"`` for torchvision's VGG16 ImageNet weights
                (read from the torch hub cache, downloaded once if missing), ``None``
                for random initialisation.
            progress: show the download progress bar.
        """
        check_encoder_weights(encoder_weights)
        super().__init__(input_size=input_size, min_depth=min_depth, max_depth=max_depth,
                         encoder_weights=encoder_weights)
        self.encoder = _vgg16_conv_layers(encoder_weights, progress)
        self.decoder = self._build_head()
        for module in self.decoder.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.set_trainable("default")

    def _build_head(self) -> nn.Sequential:
        """Return the head mapping conv5_3 features to ``(B, 1, 24, 24)`` depth at the default size."""
        raise NotImplementedError

    def decode(self, features: list[Tensor], size: tuple[int, int]) -> Tensor:
        """Map conv5_3 features to ``(B, 1, H, W)`` depth in metres."""
        coarse = self.decoder(features[0])
        depth = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
        return self.bound_depth(depth)

    def _scope_modules(self, scope: str) -> list[nn.Module]:
        """Return the modules ``scope`` trains; the seed trains the head and the last five convs."""
        if scope == "default":
            return [self.decoder, self.encoder[_CONV4_2:]]
        if scope == "decoder":
            return [self.decoder]
        if scope == "decoder+tail":
            return [self.decoder, self.encoder[_CONV5_1:]]
        return [self]

    def regularized_parameters(self) -> list[nn.Parameter]:
        """Return the head's weight matrices, which carry the seed's L2 penalty."""
        return [m.weight for m in self.decoder.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


class VGGCoarse(VGGDepthBase):
    """Seed 1 head (a): max-pool, dropout 0.5, FC 4096 + ReLU, dropout 0.5, FC 576 as 24x24.

    The fully connected layers fix the input size: ``forward`` accepts only
    ``input_size``.
    """

    arch = "vgg16_coarse"

    def _build_head(self) -> nn.Sequential:
        """Return the fully connected head for ``input_size``."""
        height, width = self.input_size
        flat = 512 * (height // 32) * (width // 32)  # after five 2x max-pools
        return nn.Sequential(
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.5),
            nn.Linear(flat, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, COARSE_SIDE * COARSE_SIDE),
            nn.Unflatten(1, (1, COARSE_SIDE, COARSE_SIDE)),
        )

    def _check_input(self, rgb: Tensor) -> None:
        """Raise unless ``rgb`` is a float ``(B, 3, *input_size)`` batch."""
        super()._check_input(rgb)
        if tuple(rgb.shape[-2:]) != self.input_size:
            raise ValueError(f"{self.arch} has fully connected layers and needs input of size "
                             f"{self.input_size}, got {tuple(rgb.shape[-2:])}")


class VGGCoarseConv(VGGDepthBase):
    """Seed 1 head (b): 3x upsample, zero-pad 4, one conv3x3 to 1 channel, 2x max-pool.

    At 224x224 input conv5_3 is 14x14, upsampled to 42x42, padded to 50x50,
    convolved to 48x48 and pooled to 24x24: about 8x fewer parameters than (a).
    The convolutional head accepts any input size (its grid scales with it).
    """

    arch = "vgg16_coarse_conv"

    def _build_head(self) -> nn.Sequential:
        """Return the upsample + conv + max-pool head."""
        return nn.Sequential(
            nn.Upsample(scale_factor=3, mode="nearest"),
            nn.ZeroPad2d(4),
            nn.Conv2d(512, 1, 3),
            nn.MaxPool2d(2),
        )
