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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from depth_estimator_ros import parameters
from depth_estimator_ros.parameters import SCOPES

__all__ = ["SCOPES", "AdaptationConfig", "config_fields"]

# The trainer's parameters that set a field, by field name (depth_estimator_ros/parameters.py:
# defaults, ranges and choices live there, once).
_ROWS: dict[str, parameters.ParameterSpec] = {p.field: p for p in parameters.engine_parameters()}


def _default(field: str) -> Any:
    """Return the field default of ``field`` from its parameter row (``[0, 0]`` sizes as ``None``)."""
    return _field_value(field, _ROWS[field].default)


def _field_value(field: str, value: Any) -> Any:
    if field == "train_size":
        size = tuple(int(v) for v in value)
        return None if size == (0, 0) else size
    return value


def config_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """Return the ``AdaptationConfig`` fields that node parameter values set.

    Args:
        values: ``{parameter name: value}``, e.g. every parameter of the trainer or only
            the changed ones; names that set no field are left out.

    Returns:
        ``{field: value}``: ``adaptation_enabled`` becomes ``enabled``, a ``train_size`` of
        ``[0, 0]`` becomes ``None`` and others a tuple.
    """
    names = {row.name: field for field, row in _ROWS.items()}
    return {names[name]: _field_value(names[name], value) for name, value in values.items() if name in names}


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
        select_best: test, then train: each round first scores the weights in force, the
            base and every remembered room on the round's new frames (none trained on
            yet) and continues from the best; the room memory keeps what each room taught.
        select_margin: the evidence a candidate needs to replace the weights in force: a
            CUSUM over rounds of ``log(RMSE in force / RMSE candidate)`` on each round's new
            frames, less a drift of ``select_margin / 2`` per round (``/ 4`` for the base, the
            safe default), must pass ``select_margin``. A room change switches at once, a small
            steady advantage within a few rounds, noise never.
        change_check_frames: every this many kept frames (between and during rounds) the
            weights in force, the base and the remembered room the newest frame looks like
            are scored on the newest frame (``engine.CHANGE_CHECK_PAIRS``), and the other
            remembered rooms when the base is in force or one of those wins; 0 = only the
            rounds' selection.
        change_margin: log RMSE advantage on those frames that switches at once.
        max_rooms: rooms the room memory keeps (least recently used forgotten); 0 = none.
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

    enabled: bool = _default("enabled")
    buffer_capacity: int = _default("buffer_capacity")
    recent_fraction: float = _default("recent_fraction")
    min_new_frames: int = _default("min_new_frames")
    max_new_frames: int = _default("max_new_frames")
    batch_size: int = _default("batch_size")
    epochs_per_round: int = _default("epochs_per_round")
    lr: float = _default("lr")
    weight_decay: float = _default("weight_decay")
    scope: str = _default("scope")
    grad_clip: float = _default("grad_clip")
    holdout_frames: int = _default("holdout_frames")
    accept_tolerance: float = _default("accept_tolerance")
    select_best: bool = _default("select_best")
    select_margin: float = _default("select_margin")
    change_check_frames: int = _default("change_check_frames")
    change_margin: float = _default("change_margin")
    max_rooms: int = _default("max_rooms")
    subsample: int = _default("subsample")
    duplicate_threshold: float = _default("duplicate_threshold")
    min_valid_fraction: float = _default("min_valid_fraction")
    replay_ratio: float = _default("replay_ratio")
    anchor_weight: float = _default("anchor_weight")
    base_replay_fraction: float = _default("base_replay_fraction")
    train_size: tuple[int, int] | None = _default("train_size")
    freeze_bn: bool = _default("freeze_bn")
    feature_cache: bool = _default("feature_cache")

    def __post_init__(self) -> None:
        if self.train_size is not None and not isinstance(self.train_size, tuple):
            object.__setattr__(self, "train_size", tuple(self.train_size))
        self.validate()

    def validate(self) -> None:
        """Check every field; raise ``ValueError`` naming the field and its allowed range.

        Types, ranges and choices are the trainer parameters' (:mod:`depth_estimator_ros.parameters`);
        the checks between fields are here.
        """
        for field, row in _ROWS.items():
            if field != "train_size":  # a field value (None or a tuple), checked below
                problem = row.problem(getattr(self, field), name=field)
                if problem:
                    raise ValueError(problem)
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

    @classmethod
    def from_parameters(cls, values: Mapping[str, Any]) -> "AdaptationConfig":
        """Return the validated configuration node parameter values describe (:func:`config_fields`)."""
        return cls(**config_fields(values))

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

