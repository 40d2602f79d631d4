"""Tests of RoomRecognizer: descriptors of single images, recognition over a window, the base below the threshold."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depth_estimator_ros.adaptation.recognition import BASE_STATE, RoomRecognizer
from depth_estimator_ros.models import build_model


def _rgb(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def test_a_room_is_recognised_from_its_own_images_and_the_base_stays_for_another_appearance() -> None:
    torch.manual_seed(0)
    model = build_model("fast", input_size=(64, 64)).eval()
    recognizer = RoomRecognizer(model, window=2)
    assert recognizer.observe(_rgb(1))[0] is None  # no rooms yet
    keyframes = torch.cat([recognizer.describe(_rgb(1)), recognizer.describe(_rgb(2))])
    assert keyframes.shape[0] == 2 and torch.allclose(keyframes.norm(dim=1), torch.ones(2))
    delta = {k: v * 1.1 for k, v in model.state_dict().items() if k.startswith("decoder.") and v.is_floating_point()}
    recognizer.memory.store("room-a", delta, keyframes)
    assert recognizer.observe(_rgb(1)) == ("room-a", pytest.approx(1.0))
    room_state = recognizer.state_for("room-a")
    assert room_state is recognizer.state_for("room-a") and room_state.keys() == delta.keys()
    red = np.tile(np.array([255, 0, 0], np.uint8), (48, 64, 1))
    recognizer.observe(red)
    name, similarity = recognizer.observe(red)  # the window (2) holds only the red wall now
    assert name is None and similarity < 0.85
    assert recognizer.state_for(None) is BASE_STATE and recognizer.state_for("gone") is None
    with pytest.raises(ValueError, match="window"):
        RoomRecognizer(model, window=0)
