"""Settings of online adaptation: one frozen, validated dataclass shared by engine and nodes.

Choices behind the defaults (judged with ``adapt_eval`` on the 7-Scenes kitchen stream
at 30 Hz on a 2-core CPU; the figures are in the README's adaptation section):

- ``epochs_per_round=3`` is the seed's choice (seed 1, section 6.3: "running 3 epochs
  on each batch of collected data");
- short rounds (``min_new_frames=8``, ``max_new_frames=12``: 10 new + 10 replayed
  frames, 15 steps of 4) so improved weights reach the estimator every few seconds; a
  round over many more new frames takes a large part of a half-minute stream;
- BatchNorm layers stay in eval mode (``freeze_bn``): mini-batches of 4 frames from one
  room give unreliable batch statistics, and updating running statistics would shift
  weights outside the trainable scope;
- ``accept_tolerance=0.05``: a round may make the held-out RMSE at most 5 % worse and
  still be accepted. Two held-out frames are a noisy judge; a tolerance of 0 rejects
  useful rounds, while NaN and divergence are caught regardless;
- ``base_replay_fraction=0.5`` (used when the engine is given base-domain frames): of
  the fractions tried on the kitchen stream it forgot least on the base rooms; the price
  is a smaller gain on the kitchen itself;
- ``scope="decoder"``: adapting the decoder alone beat adapting every parameter: no
  encoder backward pass, so several times as many rounds fit in the stream. A *cold start* (no pretrained encoder) needs
  ``scope="all"``; ``adapt_eval --cold-start`` and the benchmark's cold start set it;
- ``train_size`` defaults to the model's input size; a smaller size makes steps cheaper
  (about 4x fewer pixels at half the resolution) (set it per model, e.g. ``(96, 128)`` for 192x256).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["SCOPES", "AdaptationConfig"]

SCOPES: tuple[str, ...] = ("default", "decoder", "decoder+tail", "all")
"""Which parameters a round may change; passed to ``DepthModel.set_trainable``."""


@dataclass(frozen=True)
class AdaptationConfig:
    """Configure the replay buffer, training rounds and the safe-update judge.

    Attributes:
        enabled: run training rounds (frames are still buffered when False).
        buffer_capacity: frames the replay buffer holds, at most.
        recent_fraction: share of the buffer kept as the most recent frames, in
            ``(0, 1]``; the rest is a reservoir-sampled, uniform sample of all older
            frames, so the model keeps seeing the whole room, not the last second.
        min_new_frames: new frames (not yet trained on) that trigger a round; must
            exceed ``holdout_frames``.
        max_new_frames: most new frames one round trains on; older pending frames stay
            in the buffer for replay. Bounds the duration of a round.
        batch_size: frames per mini-batch.
        epochs_per_round: passes over a round's training frames (seed: 3).
        lr: Adam learning rate.
        weight_decay: decoupled weight decay (AdamW).
        scope: trainable parameters, one of :data:`SCOPES`.
        grad_clip: max global gradient norm; 0 disables clipping.
        holdout_frames: newest new frames of a round kept out of training and used to
            judge it (they are trained on by later rounds).
        accept_tolerance: a round is accepted when held-out RMSE after is at most
            ``(1 + accept_tolerance)`` times the RMSE before.
        subsample: offer only every Nth frame to the buffer (1 = all).
        duplicate_threshold: mean absolute RGB difference (0-255 units, at buffer
            size) below which a frame is a near-duplicate of the last kept frame (the
            camera is still) and dropped; 0 disables.
        min_valid_fraction: frames whose valid depth covers less than this share of
            pixels are dropped.
        replay_ratio: replayed (older) frames added to a round per new training frame.
        anchor_weight: weight of the L2-SP term ``sum ||theta - theta_base||^2`` over
            trainable parameters, pulling toward the base weights (limits forgetting).
        base_replay_fraction: share of every mini-batch drawn from base-domain frames
            (e.g. the synthetic pretraining rooms), when the engine has some.
        train_size: ``(H, W)`` at which frames are stored and trained, or ``None`` for
            the model's input size (smaller = cheaper rounds).
        freeze_bn: keep BatchNorm layers in eval mode (running statistics fixed)
            during rounds.
        feature_cache: keep the encoder's features of stored frames while the
            encoder does not train (``scope="decoder"``), so rounds skip the encoder;
            costs memory (``feature_cache_nbytes`` in the stats).
    """

    enabled: bool = True
    buffer_capacity: int = 256
    recent_fraction: float = 0.5
    min_new_frames: int = 8
    max_new_frames: int = 12
    batch_size: int = 4
    epochs_per_round: int = 3
    lr: float = 1e-3
    weight_decay: float = 0.0
    scope: str = "decoder"
    grad_clip: float = 1.0
    holdout_frames: int = 2
    accept_tolerance: float = 0.05
    subsample: int = 1
    duplicate_threshold: float = 1.0
    min_valid_fraction: float = 0.1
    replay_ratio: float = 1.0
    anchor_weight: float = 0.0
    base_replay_fraction: float = 0.5
    train_size: tuple[int, int] | None = None
    freeze_bn: bool = True
    feature_cache: bool = True

    def __post_init__(self) -> None:
        if self.train_size is not None and not isinstance(self.train_size, tuple):
            object.__setattr__(self, "train_size", tuple(self.train_size))
        self.validate()

    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the field and its allowed range."""
        if not isinstance(self.enabled, bool):
            raise ValueError(f"enabled must be a bool, got {self.enabled!r}")
        if not isinstance(self.freeze_bn, bool):
            raise ValueError(f"freeze_bn must be a bool, got {self.freeze_bn!r}")
        if not isinstance(self.feature_cache, bool):
            raise ValueError(f"feature_cache must be a bool, got {self.feature_cache!r}")
        _int_at_least("buffer_capacity", self.buffer_capacity, 2)
        _int_at_least("min_new_frames", self.min_new_frames, 2)
        _int_at_least("max_new_frames", self.max_new_frames, 2)
        _int_at_least("batch_size", self.batch_size, 1)
        _int_at_least("epochs_per_round", self.epochs_per_round, 1)
        _int_at_least("holdout_frames", self.holdout_frames, 1)
        _int_at_least("subsample", self.subsample, 1)
        _float_in("recent_fraction", self.recent_fraction, 0.0, 1.0, low_open=True)
        _float_in("lr", self.lr, 0.0, math.inf, low_open=True)
        _float_in("weight_decay", self.weight_decay, 0.0, math.inf)
        _float_in("grad_clip", self.grad_clip, 0.0, math.inf)
        _float_in("accept_tolerance", self.accept_tolerance, 0.0, math.inf)
        _float_in("duplicate_threshold", self.duplicate_threshold, 0.0, 255.0)
        _float_in("min_valid_fraction", self.min_valid_fraction, 0.0, 1.0)
        _float_in("replay_ratio", self.replay_ratio, 0.0, 16.0)
        _float_in("anchor_weight", self.anchor_weight, 0.0, math.inf)
        _float_in("base_replay_fraction", self.base_replay_fraction, 0.0, 1.0, high_open=True)
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {self.scope!r}")
        if self.min_new_frames <= self.holdout_frames:
            raise ValueError(
                f"min_new_frames must be > holdout_frames ({self.holdout_frames}), got {self.min_new_frames}"
            )
        if self.max_new_frames < self.min_new_frames:
            raise ValueError(
                f"max_new_frames must be >= min_new_frames ({self.min_new_frames}), got {self.max_new_frames}"
            )
        if self.max_new_frames > self.buffer_capacity:
            raise ValueError(
                f"max_new_frames must be <= buffer_capacity ({self.buffer_capacity}), got {self.max_new_frames}"
            )
        if self.train_size is not None:
            size = self.train_size
            if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 8 for v in size):
                raise ValueError(f"train_size must be None or (H, W) with integers >= 8, got {size!r}")

    def replace(self, **changes: Any) -> "AdaptationConfig":
        """Return a validated copy with ``changes`` applied (unknown names raise ``ValueError``)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown AdaptationConfig field(s) {unknown}; allowed: {sorted(names)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-able dict (``train_size`` as a list or None)."""
        out = dataclasses.asdict(self)
        if self.train_size is not None:
            out["train_size"] = list(self.train_size)
        return out


def _int_at_least(name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def _float_in(
    name: str, value: object, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name} must be a finite number in {lo}{low}, {high}{hi}, got {value!r}")
