"""Recognise the room by appearance alone, for an estimator without sensor depth.

An estimator on a second robot (or one whose depth sensor is gone) receives the trainer's
:class:`~depth_estimator_ros.adaptation.rooms.RoomMemory` as a blob (``rooms`` topic) and
has only RGB. :class:`RoomRecognizer` keeps that memory and a *base* copy of the model's
encoder, turns a frame now and then into an appearance descriptor
(:func:`~depth_estimator_ros.adaptation.rooms.appearance_descriptors` of
:meth:`DepthModel.encode` at the model's input size) and recognises the room from the last
:data:`RECOGNITION_WINDOW` descriptors (:meth:`RoomMemory.recognise`: a threshold and a
margin, else the base). The trainer's keyframes come from the base encoder too as long as
the encoder is not adapted (``scope`` ``decoder``, the default), so the descriptors compare.

ROS-free: the node decides when to call :meth:`RoomRecognizer.observe` and applies the
weights it returns (:meth:`RoomRecognizer.state_for`) through its own weight path.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np
import torch
from torch import Tensor

from depth_estimator_ros.adaptation.rooms import (
    RECOGNITION_MARGIN,
    RECOGNITION_THRESHOLD,
    RoomMemory,
    appearance_descriptors,
)
from depth_estimator_ros.learning.transforms import resize_rgb
from depth_estimator_ros.models.base import DepthModel

__all__ = ["BASE_STATE", "RECOGNITION_WINDOW", "MAX_RECEIVED_ROOMS", "RoomRecognizer"]

#: Descriptors a recognition averages over (as the rooms/ windows the threshold was chosen on).
RECOGNITION_WINDOW = 5
#: What :meth:`RoomRecognizer.state_for` returns for the base: nothing over the base weights.
BASE_STATE: Mapping[str, Tensor] = MappingProxyType({})
#: Most rooms a received memory may hold (the trainer's ``max_rooms`` upper bound).
MAX_RECEIVED_ROOMS = 1000


class RoomRecognizer:
    """Keep a received room memory and recognise the room from recent frames.

    Args:
        model: the base model (deep-copied once: its encoder describes frames).
        device: torch device of the copy.
        window: descriptors kept for one recognition.
        threshold, margin: as in :meth:`RoomMemory.recognise`.
    """

    def __init__(
        self,
        model: DepthModel,
        *,
        device: str | torch.device = "cpu",
        window: int = RECOGNITION_WINDOW,
        threshold: float = RECOGNITION_THRESHOLD,
        margin: float = RECOGNITION_MARGIN,
    ) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._device = torch.device(device)
        self._model = copy.deepcopy(model).to(self._device).eval().requires_grad_(False)
        self._size = tuple(int(v) for v in model.input_size)
        self.memory = RoomMemory(model.state_dict(), model.arch, capacity=MAX_RECEIVED_ROOMS)
        self._queries: deque[Tensor] = deque(maxlen=window)
        self._threshold, self._margin = threshold, margin

    @torch.inference_mode()
    def describe(self, rgb: np.ndarray) -> Tensor:
        """Return the appearance descriptor of one image.

        Args:
            rgb: ``(H, W, 3)`` uint8 RGB, any size (resized to the model's input size).

        Returns:
            ``(1, C)`` float32, unit length.
        """
        small = torch.from_numpy(np.ascontiguousarray(resize_rgb(rgb, self._size)))
        batch = small.permute(2, 0, 1).unsqueeze(0).float().div_(255.0).to(self._device)
        return appearance_descriptors(self._model.encode(batch))

    def observe(self, rgb: np.ndarray) -> tuple[str | None, float]:
        """Add ``rgb``'s descriptor to the window and recognise the room.

        Returns:
            ``(room name, mean similarity)``, or ``(None, best similarity)`` when no room
            is confident (the base); ``(None, nan)`` without rooms.
        """
        self._queries.append(self.describe(rgb))
        return self.memory.recognise(torch.cat(list(self._queries)), threshold=self._threshold, margin=self._margin)

    def state_for(self, name: str | None) -> Mapping[str, Tensor] | None:
        """Return the tensors to load over the base for room ``name``; None when the memory lacks it.

        The same object while the room is unchanged (a received memory or a new round
        replaces it): a caller compares it with ``is`` to know whether to load again.
        :data:`BASE_STATE` for ``name`` None.
        """
        if name is None:
            return BASE_STATE
        room = self.memory.get(name)
        return None if room is None else room.delta
