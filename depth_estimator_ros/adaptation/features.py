"""Encoder features of buffered frames, kept for rounds that train only the decoder.

With the default ``scope="decoder"`` the encoder of the training copy never changes and
runs in evaluation mode during rounds (no gradient, batch norm on running statistics),
so the features of a stored frame are the same every time the frame is trained on or
held out. A frame is used several times: ``epochs_per_round`` epochs in its own round,
then replayed in later rounds. :class:`FeatureCache` computes its features once and
rounds decode from them; the encoder's share of a training step is saved.

The engine owns one cache, uses it only under its round lock, checks before every round
that the encoder is frozen (:meth:`DepthModel.encoder_is_frozen
<depth_estimator_ros.models.base.DepthModel.encoder_is_frozen>`) and clears it whenever
the encoder may have changed (a round that trained it, a reset).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import torch
from torch import Tensor

from depth_estimator_ros.adaptation.buffer import BufferedFrame, stack_frames
from depth_estimator_ros.models.base import DepthModel

__all__ = ["FeatureCache"]

#: Storage type of cached features: float32, so a cached round computes exactly what the
#: encoder path computes (half precision halved the memory but moved held-out RMSEs by up
#: to 0.7 % after six rounds in the engine's tests). MobileNetV2 at 144x192: 0.74 MB a frame.
STORAGE_DTYPE = torch.float32


class FeatureCache:
    """Map frame keys to the encoder features of their RGB, computed on first use.

    Not thread-safe: one owner (the engine's round) uses it at a time.
    """

    def __init__(self) -> None:
        self._entries: dict[Hashable, list[Tensor]] = {}
        self._nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes of stored features."""
        return self._nbytes

    def clear(self) -> None:
        """Forget every entry (the encoder changed, or caching was turned off)."""
        self._entries.clear()
        self._nbytes = 0

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Drop entries whose key is not in ``keys`` (frames that left the buffer)."""
        keep = set(keys)
        for key in [k for k in self._entries if k not in keep]:
            self._nbytes -= _nbytes(self._entries.pop(key))

    @torch.no_grad()
    def features(
        self, model: DepthModel, frames: Sequence[BufferedFrame], keys: Sequence[Hashable], device: torch.device
    ) -> list[Tensor]:
        """Return the batched float32 encoder features of ``frames`` on ``device``.

        Frames without an entry are encoded in one batch and stored. The caller must
        know the encoder is frozen (see the module docstring).

        Args:
            model: the model whose :meth:`~DepthModel.encode` defines the features.
            frames: the batch's frames, all of one size.
            keys: one key per frame (unique per stored frame).
            device: where the returned tensors live.

        Returns:
            One ``(B, C, h, w)`` tensor per feature map, in ``frames`` order.
        """
        if len(frames) != len(keys):
            raise ValueError(f"got {len(frames)} frames but {len(keys)} keys")
        missing = [i for i, key in enumerate(keys) if key not in self._entries]
        if missing:
            rgb = stack_frames([frames[i] for i in missing])[0].to(device)
            maps = model.encode(rgb)
            for row, i in enumerate(missing):
                entry = [m[row].to("cpu", STORAGE_DTYPE, copy=True) for m in maps]
                self._entries[keys[i]] = entry
                self._nbytes += _nbytes(entry)
        entries = [self._entries[key] for key in keys]
        return [
            torch.stack([entry[level] for entry in entries]).to(device, torch.float32)
            for level in range(len(entries[0]))
        ]


def _nbytes(entry: list[Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in entry)
