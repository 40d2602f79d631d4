"""Online adaptation engine: learn the current room from live RGB-D frames, safely, off the hot path.

The engine owns a private *training copy* of the model; the caller's model (the one an
estimator predicts with) is never touched. Frames come in through :meth:`offer` (the
trainer's subscription: every frame), are resized once into a bounded
:class:`~depth_estimator_ros.adaptation.buffer.ReplayBuffer`, and a worker thread runs a
*round* whenever ``min_new_frames`` new frames are in:

1. the newest ``holdout_frames`` new frames are held out; the rest of the new frames,
   ``replay_ratio`` times as many frames replayed from the buffer (recent ring and the
   reservoir of older frames) and, per mini-batch, a ``base_replay_fraction`` share of
   base-domain frames form the round's training set;
2. ``epochs_per_round`` epochs (seed 1's "3 epochs on each batch of collected data")
   over it with the model's own loss (:func:`learning.model_loss`) plus an optional
   L2-SP anchor toward the base weights, AdamW, gradient clipping;
3. judge: the held-out RMSE of the candidate against the RMSE of the weights in force
   (measured before training). The round is accepted only when the loss, the gradient
   norm, every parameter and buffer stayed finite, the RMSE after is at most
   ``(1 + accept_tolerance)`` times the RMSE before, and no worse than the base weights'
   on the same frames (so rounds that are each a little worse cannot drift below not
   adapting). Otherwise the weights *and* the
   optimizer state are restored and the rejection is counted with its reason. A round
   that raises (out of memory, a shape or data error) is rolled back the same way and
   counted as ``failed`` with the error as ``last_error``; the next round runs as usual.
   Each frame of a failed round is then run alone, and the ones that fail on their own
   are removed from the buffer (``frames_removed``), so they are never drawn again.
4. test, then train (``select_best``, on by default): before training, the round scores the
   weights in force, the base weights and every room of the :class:`RoomMemory` on
   :data:`SELECT_FRAMES` of its new frames (spread over them, the newest included), which
   nothing has trained on yet; its evidence adds up over rounds. When a candidate beats the weights
   in force by more than ``select_margin``, it is loaded and published at once, in full,
   before the round trains from it (counted as ``rounds_switched``). So adapting is never
   worse than not adapting for longer than about one round's frames, a return visit starts from what
   the room taught last time, and the base weights are never overwritten: each accepted
   round stores the changed tensors as the current room (a new room when the round
   started from the base), with appearance descriptors of its frames for recognising
   the room without sensor depth. Weights of a round that started from the base go in
   force only once the next round's new frames show them better than the base
   (:data:`PROVE_FROM_BASE`); otherwise they are dropped (``rounds_unproven_dropped``).
5. change check (``change_check_frames``, ``change_margin``; with ``select_best``): between
   rounds and between a round's steps, every ``change_check_frames`` kept frames, the
   weights in force, the base and the room appearance names are scored on the newest
   :data:`CHANGE_CHECK_PAIRS` frames (every remembered room when the base is in force or
   one of those wins). One better by more than ``change_margin`` (log RMSE) is put in force and
   published in full at once (a round in progress is abandoned and rolled back; counted
   as ``rounds_switched``), so a room change costs a few frames, not a round. With the
   selection it also bounds where rounds that are each up to ``accept_tolerance`` worse
   can lead over hours: weights that became worse than the base on new frames are left.

With the default ``scope="decoder"`` the encoder never changes, so its features of each
stored frame are computed once and kept (:class:`~depth_estimator_ros.adaptation.features.FeatureCache`,
``feature_cache``); rounds then run only the decoder's forward and backward passes.

Accepted rounds bump :attr:`AdaptationEngine.version` (monotonic) and call
``on_update(version, payload_bytes)`` (a :func:`export_payload` delta against the base
weights under the engine's :attr:`~AdaptationEngine.run_id`, for the ROS ``weights``
topic) and ``on_update_state(version, state_dict)``
(CPU copies of the tensors that differ from the base weights, for an estimator in the
same process: ``Predictor.load_over_base``).

Threading:

- one short lock (``_lock``) guards the shared state (counters, version, callbacks,
  config); it is never held during training compute or callbacks;
- the round lock serialises use of the training copy between the worker and
  :meth:`reset` / :meth:`configure`; inference never takes it;
- disabling adaptation or resetting while a round runs *aborts* the round at its next
  mini-batch boundary and rolls it back (counted as ``rounds_aborted``): when an
  operator turns adaptation off, the weights stop changing at once.

The engine never calls ``torch.set_num_threads``: intra-op threads are process-global.
On a 2-core machine the live process runs best with ``torch.set_num_threads(1)`` so the
estimator thread and the training thread each get one core (see the README).
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from depth_estimator_ros import parameters
from depth_estimator_ros.adaptation.buffer import BufferedFrame, ReplayBuffer, prepare_frame, stack_frames, stack_targets
from depth_estimator_ros.adaptation.config import AdaptationConfig
from depth_estimator_ros.adaptation.features import FeatureCache
from depth_estimator_ros.adaptation.payload import export_payload, new_run_id
from depth_estimator_ros.adaptation.rooms import RoomMemory, appearance_descriptors
from depth_estimator_ros.data.frame import Frame
from depth_estimator_ros.learning.device import prefers_channels_last
from depth_estimator_ros.learning.losses import masked_rmse, model_loss, valid_mask
from depth_estimator_ros.models.base import DepthModel, freeze_batchnorm

__all__ = ["AdaptationEngine", "RoundResult", "ROUND_OUTCOMES", "LIVE_FIELDS", "SHARED_PROCESS_SWITCH_INTERVAL_S"]

SHARED_PROCESS_SWITCH_INTERVAL_S = 0.0005
"""GIL switch interval (``sys.setswitchinterval``) for a process that infers and trains at once.

The engine trains on a worker thread; an estimator in the same interpreter issues many
small torch ops, and with Python's default 5 ms each of them can wait that long for the
GIL while a round runs, and frames are missed (README, "live"). The process owner
(``live``, the prequential evaluator) sets it; the engine itself does not.
"""

PROVE_FROM_BASE = True
"""Weights of an accepted round that started from the base go in force only once they also
beat the base on the next round's new frames (else they are dropped): a round is judged on
its newest frames, which show the view it trained on; where adapting does not carry to the
next view (a room the base already knows) such rounds were worse than the base a second
later (docs/EXPERIMENTS.md)."""

CHANGE_CHECK_PAIRS = 1
"""Newest pairs a change check scores (every ``change_check_frames`` kept pairs): checking
often on one pair finds a room change sooner than rarely on several, for the same decoder
passes per pair (docs/EXPERIMENTS.md)."""

SELECT_FRAMES = 4
"""New frames of a round the selection scores the candidates on, evenly spread over them."""

ROUND_OUTCOMES: tuple[str, ...] = (
    "accepted", "rejected_nan", "rejected_worse", "aborted", "switched", "failed", "skipped"
)
"""What a round can end as."""

LIVE_FIELDS: frozenset[str] = frozenset(p.field for p in parameters.engine_parameters() if p.live)
"""Config fields :meth:`AdaptationEngine.configure` may change at run time: those whose trainer
parameter is live in :data:`depth_estimator_ros.parameters.PARAMETERS` (the buffer's layout,
size and entry filters are fixed when the engine is built)."""

UpdateCallback = Callable[[int, bytes], None]
StateCallback = Callable[[int, dict[str, Tensor]], None]


@dataclass(frozen=True)
class RoundResult:
    """The outcome of one round.

    Attributes:
        outcome: one of :data:`ROUND_OUTCOMES`.
        version: the weights version in force after the round.
        loss: mean training loss of the round (NaN when none).
        holdout_before: held-out RMSE in metres with the weights in force before.
        holdout_after: held-out RMSE in metres with the candidate weights.
        duration_s: wall time of the round.
        frames: training frames in the round (new + replayed, excluding base frames).
    """

    outcome: str
    version: int
    loss: float = math.nan
    holdout_before: float = math.nan
    holdout_after: float = math.nan
    duration_s: float = 0.0
    frames: int = 0


class _Abort(Exception):
    """Raised inside a round when it must stop (disable, reset, stop)."""


@dataclass
class _Round:
    """One round: its frames, the state it rolls back to, and what it found so far.

    The findings are filled in as the round runs, so a round that raises part way still
    says what it had done (e.g. switched weights) when it is rolled back.
    """

    cfg: AdaptationConfig
    new: list[BufferedFrame]  # the new frames taken from the buffer (selection scores on these)
    holdout: list[BufferedFrame]  # the last new frames, scored before and after training
    train: list[BufferedFrame]  # the other new frames and the replayed ones
    start: float  # time.monotonic() at the start
    snapshot: dict[str, Tensor]  # the training copy's weights before the round
    opt_snapshot: dict[str, Any]  # the optimizer's state before the round
    outcome: str = "failed"  # one of ROUND_OUTCOMES once decided
    error: str = ""  # the exception that failed the round
    cached: bool = False  # decoding from the feature cache
    switched: bool = False  # the selection put other weights in force (published)
    loss: float = math.nan
    before: float = math.nan  # held-out RMSE in metres of the weights in force
    after: float = math.nan  # the same after training
    from_base: bool = False  # the round trains from the base weights (``before`` is the base's score)
    held: bool = False  # accepted from the base: in force only once the next round's frames prove it

    @property
    def changed(self) -> bool:
        """Whether the round changes the weights in force (a new version is published)."""
        return self.outcome == "accepted" and not self.held


class AdaptationEngine:
    """Adapt a copy of ``model`` to the frames offered to it, publishing only improvements.

    Args:
        model: the base model (a ``DepthModel``); it is deep-copied, never modified.
        config: the settings; defaults to :class:`AdaptationConfig` ``()``.
        base_frames: optional base-domain RGB-D frames (e.g. the synthetic pretraining
            rooms) replayed in every mini-batch by ``base_replay_fraction``; they are
            resized once and kept in memory.
        device: torch device of the training copy (``"cpu"``, ``"cuda"``...).
        seed: seed of every random choice of the engine (sampling, shuffling).
        on_update: called as ``on_update(version, payload)`` from the worker thread after
            each accepted round and after :meth:`reset`.
        on_update_state: called as ``on_update_state(version, state)`` likewise, with
            CPU copies of the training model's tensors that differ from the base weights
            (empty after :meth:`reset`): load them over the base.
    """

    def __init__(
        self,
        model: nn.Module,
        config: AdaptationConfig | None = None,
        *,
        base_frames: Sequence[Frame] | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        on_update: UpdateCallback | None = None,
        on_update_state: StateCallback | None = None,
    ) -> None:
        if not isinstance(model, DepthModel):
            raise TypeError(f"model must be a models.DepthModel, got {type(model).__name__}")
        config = AdaptationConfig() if config is None else config
        if not isinstance(config, AdaptationConfig):
            raise TypeError(f"config must be an AdaptationConfig, got {type(config).__name__}")
        self._device = torch.device(device)
        self._model: DepthModel = copy.deepcopy(model).to(self._device)
        self._model.eval()
        self._base_state = {k: v.detach().clone() for k, v in self._model.state_dict().items()}
        # the tensors of the training copy that may differ from the base (a superset): what
        # _load_room_state copies back; training adds _changing_names(), a load sets it
        self._dirty: set[str] = set()
        if prefers_channels_last(self._device):
            self._model.to(memory_format=torch.channels_last)
        # The base on the CPU, for the in-force copies to share (the same tensors on a CPU device).
        self._base_cpu = (
            self._base_state if self._device.type == "cpu" else {k: v.cpu() for k, v in self._base_state.items()}
        )
        # (version, CPU copy) of the weights in force, replaced whole on every update:
        # readers (state_dict, a checkpoint save) never wait for a round in progress.
        self._in_force: tuple[int, dict[str, Tensor]] = (0, self._in_force_copy())
        self._size = tuple(config.train_size) if config.train_size is not None else tuple(model.input_size)
        self._range = (float(model.min_depth), float(model.max_depth))
        self._buffer = ReplayBuffer(
            config.buffer_capacity,
            self._size,
            recent_fraction=config.recent_fraction,
            subsample=config.subsample,
            duplicate_threshold=config.duplicate_threshold,
            min_valid_fraction=config.min_valid_fraction,
            depth_range=self._range,
            seed=seed,
        )
        # Negative indices: base frames never share a feature-cache key with stored frames.
        self._base_frames: list[BufferedFrame] = [
            prepare_frame(f, self._size, -1 - i) for i, f in enumerate(base_frames or ())
        ]
        self._features = FeatureCache()
        self._memory = RoomMemory(self._base_state, model.arch, capacity=config.max_rooms)
        self._room: str | None = None  # the memory's room whose weights are in force; None: the base
        self._switched_state: dict[str, Tensor] = {}  # what a round switched to, for its rollback
        self._evidence: dict[str, float] = {}  # the selection's CUSUM per candidate ("\0base": the base)
        self._checked_at = 0  # the buffer's kept count at the last change check
        self._check_switched = False  # a change check switched since the last round's selection
        self._unproven: tuple[list[BufferedFrame], bool] | None = None  # see _prove: (held-out frames, cached)
        self._rng = np.random.default_rng(seed)
        self._config = config
        self._applied: AdaptationConfig | None = None
        self._params: list[nn.Parameter] = []
        self._optimizer: torch.optim.Optimizer | None = None
        self._lock = threading.Lock()
        self._round_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._enabled = config.enabled
        self._version = 0
        self._run_id = new_run_id()
        self.on_update = on_update
        self.on_update_state = on_update_state
        self._counts = dict.fromkeys(ROUND_OUTCOMES, 0)
        self._rounds_run = self._switches = self._unproven_dropped = 0
        self._round_started: float | None = None
        self._last: RoundResult | None = None
        self._last_update: float | None = None
        self._last_error = ""
        with self._round_lock:
            self._apply_config()

    # ----------------------------------------------------------------- properties
    @property
    def version(self) -> int:
        """The weights version in force (0 = base; +1 per accepted round and per reset)."""
        with self._lock:
            return self._version

    @property
    def run_id(self) -> str:
        """This engine's run id, in every payload it publishes: receivers order versions per run."""
        return self._run_id

    @property
    def config(self) -> AdaptationConfig:
        """The current settings (``enabled`` reflects :attr:`enabled`)."""
        with self._lock:
            return self._config.replace(enabled=self._enabled)

    @property
    def enabled(self) -> bool:
        """Whether rounds run; setting False aborts a running round and rolls it back."""
        with self._lock:
            return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise TypeError(f"enabled must be a bool, got {type(value).__name__}")
        with self._lock:
            self._enabled = value
        if value:
            self._wake.set()
        else:
            self._abort.set()

    @property
    def buffer(self) -> ReplayBuffer:
        """The replay buffer (thread-safe)."""
        return self._buffer

    @property
    def training_model(self) -> DepthModel:
        """The engine's private training copy, for diagnostics; do not modify it while rounds run."""
        return self._model

    @property
    def memory(self) -> RoomMemory:
        """The room memory (thread-safe): what each room taught, apart from the base."""
        return self._memory

    @property
    def room(self) -> str | None:
        """The remembered room whose weights are in force, or None (the base, or a room not yet stored)."""
        with self._lock:
            return self._room

    @property
    def adapted(self) -> bool:
        """Whether the weights in force differ from the base weights."""
        with self._lock:
            _, state = self._in_force
        return bool(self._changes(state))

    def _changes(self, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Return the tensors of an in-force copy that differ from the base.

        Tensors equal to the base are the base's own CPU tensors (:meth:`_in_force_copy`),
        so this compares identities, not values.
        """
        return {k: v for k, v in state.items() if v is not self._base_cpu[k]}

    def forget(self, name: str | None = None) -> list[str]:
        """Forget room ``name`` (every room when None) from the memory; the weights in force stay.

        When the room in force is forgotten, :attr:`room` becomes None and the next
        accepted round stores the weights in force as a new room (:meth:`reset` first
        to drop them too). Never waits for a round in progress.

        Returns:
            The names forgotten.
        """
        with self._lock:  # _remember stores under this lock: a forgotten room is never stored again
            names = self._memory.forget(name)
            if self._room in names:
                self._room = None
        return names

    @property
    def base_state(self) -> dict[str, Tensor]:
        """The base weights (the model's state dict at construction), on the engine's device."""
        return self._base_state

    # ------------------------------------------------------------------- frames in
    def offer(self, frame: Frame) -> bool:
        """Offer one RGB-D frame to the buffer; never waits for a round.

        The frame is resized to the training size in the caller's thread (about a
        millisecond for 640x480 on a CPU core) and stored; the worker is woken once
        enough new frames are in.

        Args:
            frame: a frame with sensor depth.

        Returns:
            Whether the frame was kept (False: sub-sampled, near-duplicate or too
            little valid depth; see ``stats()``).
        """
        kept = self._buffer.add(frame)
        if kept and (self._buffer.new_count >= self._config.min_new_frames or self._change_check_due(self._config)):
            self._wake.set()
        return kept

    # ---------------------------------------------------------------------- thread
    def start(self) -> None:
        """Start the worker thread (daemon); a second call while it runs does nothing."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="adaptation-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the worker (a running round is aborted and rolled back) and join it.

        Args:
            timeout: seconds to wait for the thread to end.

        Returns:
            True when the worker has ended (or never ran).
        """
        with self._lock:
            thread = self._thread
        if thread is None:
            return True
        self._stop.set()
        self._abort.set()
        self._wake.set()
        thread.join(timeout)
        alive = thread.is_alive()
        if not alive:
            with self._lock:
                self._thread = None
        return not alive

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive."""
        with self._lock:
            return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                if self.enabled and self._buffer.new_count >= self._config.min_new_frames:
                    self.run_round()
                else:
                    self.check_change()
            except Exception as exc:  # outside a round's training (it rolls itself back): keep the worker alive
                with self._lock:
                    self._last_error = f"{type(exc).__name__}: {exc}"

    # ---------------------------------------------------------------------- config
    def configure(self, **changes: Any) -> AdaptationConfig:
        """Change live settings (see :data:`LIVE_FIELDS`); applied from the next round.

        A new ``scope`` restarts the optimizer state (other parameters train now);
        ``lr`` and ``weight_decay`` keep it.

        Args:
            **changes: ``AdaptationConfig`` fields and new values.

        Returns:
            The new configuration.

        Raises:
            ValueError: an unknown field, a field fixed at construction, or an invalid value.
        """
        fixed = sorted(set(changes) - LIVE_FIELDS)
        if fixed:
            raise ValueError(f"{fixed} cannot change while the engine runs; live fields: {sorted(LIVE_FIELDS)}")
        with self._lock:
            new = self._config.replace(**changes)
            self._config = new
        if "enabled" in changes:
            self.enabled = bool(changes["enabled"])
        return self.config

    def _apply_config(self) -> None:
        """Bring trainable scope, BN mode and optimizer in line with the config; round lock held."""
        with self._lock:
            cfg = self._config
        old = self._applied
        if old is not None and (old.scope, old.freeze_bn, old.lr, old.weight_decay) == (
            cfg.scope, cfg.freeze_bn, cfg.lr, cfg.weight_decay
        ):
            self._applied = cfg
            return
        if old is None or old.scope != cfg.scope or self._optimizer is None:
            self._params = self._model.set_trainable(cfg.scope)
            self._optimizer = torch.optim.AdamW(self._params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            for group in self._optimizer.param_groups:
                group["lr"] = cfg.lr
                group["weight_decay"] = cfg.weight_decay
        freeze_batchnorm(self._model, cfg.freeze_bn)
        self._model.eval()
        self._applied = cfg

    # ---------------------------------------------------------------------- rounds
    def run_round(self) -> RoundResult:
        """Run one round now in the calling thread (the worker calls this too).

        Returns:
            The :class:`RoundResult`; ``"skipped"`` when adaptation is disabled or
            fewer than ``holdout_frames + 1`` new frames are buffered.
        """
        with self._round_lock:
            self._abort.clear()
            if not self.enabled:
                return RoundResult("skipped", self.version)
            self._apply_config()
            cfg = self._applied
            assert cfg is not None
            frames = self._take_round_frames(cfg)
            if frames is None:
                return RoundResult("skipped", self.version)
            rnd = self._begin_round(cfg, *frames)
            try:
                self._evaluate_and_train(rnd)
            except _Abort as exc:
                rnd.outcome = str(exc)
                rnd.switched = rnd.switched or rnd.outcome == "switched"  # a change check switched mid-round (published)
            except Exception as exc:  # a failed round is rolled back and counted, never kept
                rnd.error = f"{type(exc).__name__}: {exc}"
            except BaseException as exc:  # interrupted: rolled back and counted below, then raised
                rnd.error = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                # Every exit restores the weights and optimizer state unless the round
                # was accepted, including exceptions that propagate (KeyboardInterrupt).
                self._keep_or_roll_back(rnd)
                result, state = self._record_round(rnd)
            if rnd.error:
                self._remove_failing([*rnd.holdout, *rnd.train])
            if rnd.changed:
                self._publish(result.version, state, full=False)
            return result

    def _take_round_frames(
        self, cfg: AdaptationConfig
    ) -> tuple[list[BufferedFrame], list[BufferedFrame], list[BufferedFrame]] | None:
        """Take the new frames and draw the replayed ones; round lock held.

        Returns:
            ``(new, holdout, train)``: the new frames, the last ``holdout_frames`` of them, and
            the others with ``replay_ratio`` times as many stored frames; None when there are
            too few new frames for a held-out set and training.
        """
        new = self._buffer.take_new(cfg.max_new_frames)
        if len(new) <= cfg.holdout_frames:
            return None
        holdout, fresh = new[-cfg.holdout_frames :], new[: -cfg.holdout_frames]
        replay = self._buffer.sample(
            round(len(fresh) * cfg.replay_ratio), self._rng, exclude=[f.index for f in new]
        )
        return new, holdout, fresh + replay

    def _begin_round(
        self,
        cfg: AdaptationConfig,
        new: list[BufferedFrame],
        holdout: list[BufferedFrame],
        train: list[BufferedFrame],
    ) -> _Round:
        """Count the round as started and snapshot the weights and optimizer it may roll back to."""
        start = time.monotonic()
        with self._lock:
            self._round_started = start
            self._rounds_run += 1
        snapshot = self._snapshot()
        opt_snapshot = copy.deepcopy(self._optimizer.state_dict())
        return _Round(cfg, new, holdout, train, start, snapshot, opt_snapshot)

    def _evaluate_and_train(self, rnd: _Round) -> None:
        """Select the weights, score them on the held-out frames, then train and judge; round lock held.

        Fills ``rnd`` as it goes: the outcome is ``"rejected_nan"``, ``"rejected_worse"`` or
        ``"accepted"`` after training.
        """
        cfg = rnd.cfg
        self._model.train()
        rnd.cached = cfg.feature_cache and self._model.encoder_is_frozen()
        self._model.eval()
        if rnd.cached:
            self._features.retain([*self._buffer.indices(), *(f.index for f in self._base_frames)])
        else:
            self._features.clear()
        # a change check that switched since the last round chose on the newest frames; the
        # round's new frames may still hold the room before, so the round does not choose again
        checked, self._check_switched = self._check_switched, False
        if self._unproven is not None:
            rnd.switched = True  # the training copy changes either way: a rollback returns to what _prove left
            self._prove(rnd.new, rnd.cached)
        if cfg.select_best and not checked and self._select(rnd.new, cfg, rnd.cached):
            # published now, before training: what the new frames showed is in force
            # one hand-over later, not a round later
            rnd.switched = True
            self._publish_in_force(full=True)
        rnd.before = self._holdout_rmse(rnd.holdout, rnd.cached)
        rnd.from_base = not self._changed_from_base()
        rnd.loss = self._train(rnd.train, cfg, rnd.cached)
        rnd.after = self._holdout_rmse(rnd.holdout, rnd.cached)
        if not (math.isfinite(rnd.loss) and math.isfinite(rnd.after) and self._state_finite()):
            rnd.outcome = "rejected_nan"
        elif math.isfinite(rnd.before) and rnd.after > rnd.before * (1.0 + cfg.accept_tolerance):
            rnd.outcome = "rejected_worse"
        elif self._worse_than_base(rnd):
            rnd.outcome = "rejected_worse"
        else:
            rnd.outcome = "accepted"

    def _keep_or_roll_back(self, rnd: _Round) -> None:
        """Keep an accepted round's weights; otherwise put back what it started from; round lock held.

        A round whose selection switched weights rolls back to those (they were published),
        not past them; any other round to its snapshot, optimizer state included.
        """
        if rnd.outcome != "accepted" and not rnd.switched:
            with torch.no_grad():
                self._model.load_state_dict(rnd.snapshot)
            self._optimizer.load_state_dict(rnd.opt_snapshot)
        elif rnd.outcome != "accepted":
            self._load_room_state(self._switched_state)
            self._optimizer = None
            self._applied = None
            self._apply_config()
        self._model.eval()

    def _record_round(self, rnd: _Round) -> tuple[RoundResult, dict[str, Tensor]]:
        """Remember an accepted round's room, count the round and put a changed state in force.

        Returns:
            ``(result, state)``: the round's :class:`RoundResult` and, when it changed the
            weights in force, their CPU copy (else ``{}``).
        """
        if rnd.outcome == "accepted" and rnd.from_base and rnd.cfg.select_best and PROVE_FROM_BASE:
            rnd.held = True
            self._unproven = (rnd.holdout, rnd.cached)
        elif rnd.outcome == "accepted":
            self._remember(rnd.holdout, rnd.cached)
        state = self._in_force_copy() if rnd.changed else {}
        with self._lock:
            if rnd.changed:
                self._version += 1
                self._in_force = (self._version, state)
                self._last_update = time.monotonic()
            if rnd.error:
                self._last_error = rnd.error
            self._counts[rnd.outcome] += 1
            self._round_started = None
            result = RoundResult(
                rnd.outcome, self._version, rnd.loss, rnd.before, rnd.after, time.monotonic() - rnd.start,
                len(rnd.train),
            )
            self._last = result
        return result, state

    def _remove_failing(self, frames: list[BufferedFrame]) -> int:
        """After a failed round, remove the stored frames that fail on their own; round lock held.

        Each of the round's frames is run alone (forward and loss, no gradient). A frame
        that raises would fail every round that draws it, so it leaves the buffer. When
        every frame fails, the fault is not in the frames (the model, the device) and
        none is removed. Returns how many were removed.
        """
        failing = []
        self._model.eval()
        for frame in frames:
            try:
                with torch.no_grad():
                    pred, depth = self._predict([frame], cached=False)
                    model_loss(self._model, pred, depth, valid_mask(depth, *self._range))
            except Exception:  # the probe looks for exactly the frames that raise
                failing.append(frame.index)
        if not failing or len(failing) == len(frames):
            return 0
        return self._buffer.remove(failing)

    @torch.no_grad()
    def _worse_than_base(self, rnd: _Round) -> bool:
        """Whether the trained weights score worse than the base on the round's held-out frames; round lock held.

        Rounds judged only against the weights they started from can each be a little worse
        (``accept_tolerance``) and drift below the base over a few rounds in a room the base
        already knows; this keeps every accepted round at least as good as not adapting on
        frames it never trained on.
        """
        if rnd.from_base:
            return rnd.after > rnd.before
        trained = self._copy_changes()
        try:
            self._load_room_state({})
            base = self._holdout_rmse(rnd.holdout, rnd.cached)
        finally:
            self._load_room_state(trained)
        return math.isfinite(base) and rnd.after > base

    @torch.no_grad()
    def _prove(self, frames: list[BufferedFrame], cached: bool) -> None:
        """Put the unproven weights in force if they beat the base on ``frames``, else drop them; round lock held.

        In force they are remembered as a new room and published; dropped, the training
        copy returns to the base (already in force) and the optimizer restarts. Either
        way :attr:`_switched_state` is what a rollback of the round returns to.
        """
        holdout, was_cached = self._unproven or ([], False)
        self._unproven = None
        candidate = self._copy_changes()
        frames = _spread(frames, SELECT_FRAMES)
        score = self._holdout_rmse(frames, cached)
        self._load_room_state({})
        base = self._holdout_rmse(frames, cached)
        if math.isfinite(score) and math.isfinite(base) and score < base:
            self._load_room_state(candidate)
            self._switched_state = candidate
            self._remember(holdout, was_cached)
            self._publish_in_force(full=False)
            return
        self._switched_state = {}
        self._optimizer = None
        self._applied = None
        self._apply_config()
        with self._lock:
            self._unproven_dropped += 1

    @torch.no_grad()
    def _select(self, frames: list[BufferedFrame], cfg: AdaptationConfig, cached: bool) -> bool:
        """Score the weights in force, the base and the remembered rooms on ``frames``; load the best.

        Round lock held. Returns whether other weights were loaded (the optimizer restarts).
        """
        current = self._copy_changes()
        frames = _spread(frames, SELECT_FRAMES)
        in_force = self._holdout_rmse(frames, cached)
        if not math.isfinite(in_force):
            return False
        # Evidence over rounds, not one window: for each candidate a CUSUM of the log ratio of
        # the in-force RMSE to its RMSE on each round's new frames, less a drift; it switches
        # when the sum passes the margin. A room change (in force 2x worse) switches at once;
        # a small, steady advantage within a few rounds; noise of a few percent never. The
        # base, the safe default, has half the drift of a room: adapted weights that are
        # steadily a little worse than it do not stay.
        m = cfg.select_margin
        recognised = self._recognise(frames, cached)
        scores: list[tuple[float, str | None, dict[str, Tensor]]] = []
        candidates: list[tuple[float, str | None, dict[str, Tensor]]] = []
        if current:
            candidates.append((m / 4, None, {}))
        candidates += [
            (m / 2, name, room.delta)
            for name in self._memory.names()
            if name != self._room and (room := self._memory.get(name)) is not None
        ]
        try:
            for drift, name, delta in candidates:
                self._load_room_state(delta)
                encoder = any(k.startswith("encoder.") for k in (*delta, *current))
                score = self._holdout_rmse(frames, cached and not encoder)
                if math.isfinite(score) and score > 0:
                    key = "\0base" if name is None else name
                    # a room the new frames look like (appearance keyframes) starts with half the margin
                    bonus = m / 2 if name is not None and name == recognised else 0.0
                    evidence = max(0.0, self._evidence.get(key, 0.0) + math.log(in_force / score) - drift + bonus)
                    self._evidence[key] = evidence
                    scores.append((evidence, name, delta))
        finally:
            self._load_room_state(current)
        self._evidence = {k: v for k, v in self._evidence.items() if k in {"\0base", *self._memory.names()}}
        ready = [c for c in scores if c[0] > m]
        if not ready:  # the weights in force stay
            return False
        _, name, delta = max(ready, key=lambda c: c[0])
        self._switch_to(name, delta, current)
        return True

    def _switch_to(self, name: str | None, delta: dict[str, Tensor], current: dict[str, Tensor]) -> None:
        """Load the base with ``delta`` (room ``name``; None: the base) as the weights in force; round lock held.

        ``current``: the changes from the base the training copy had, for the feature cache.
        The optimizer restarts and the selection's evidence starts again.
        """
        self._evidence.clear()
        self._unproven = None  # weights not yet in force are left with the training copy
        if any(k.startswith("encoder.") for k in (*delta, *current)):
            self._features.clear()
        self._load_room_state(delta)
        self._switched_state = delta
        self._optimizer = None
        self._applied = None
        self._apply_config()
        with self._lock:
            self._room = name
            self._switches += 1
        if name is not None:
            self._memory.touch(name)

    def check_change(self) -> bool:
        """Switch at once when the newest frames show the weights in force far worse than another candidate.

        Every ``change_check_frames`` kept frames the weights in force, the base and the
        room appearance names are scored on the newest :data:`CHANGE_CHECK_PAIRS` frames
        (every remembered room when the base is in force or one of those wins); when the
        best is better by more than ``change_margin`` (log RMSE) it is loaded and published
        in full. The worker calls it between rounds and between a round's steps (then
        the round is abandoned and rolled back); a stream-time evaluation calls it after
        each frame. Does nothing before enough new frames were kept.

        Returns:
            Whether it switched.
        """
        with self._round_lock:
            if self._check_change():
                self._publish_in_force(full=True)
                return True
            return False

    def _change_check_due(self, cfg: AdaptationConfig) -> bool:
        n = cfg.change_check_frames
        return self.enabled and cfg.select_best and n > 0 and self._buffer.kept - self._checked_at >= n

    @torch.no_grad()
    def _check_change(self) -> bool:
        """The check of :meth:`check_change` without publishing; round lock held."""
        with self._lock:
            cfg = self._config
        if not self._change_check_due(cfg):
            return False
        self._checked_at = self._buffer.kept
        # the newest pair(s), not every pair since the last check: at 30 Hz the encoder
        # features of every pair would cost the trainer a third of its rounds in one room
        frames = self._buffer.newest(min(CHANGE_CHECK_PAIRS, cfg.change_check_frames))
        training = self._copy_changes()
        frozen = cfg.feature_cache and self._model.encoder_is_frozen()
        # The base and, when the frames look like another remembered room, that room: a check
        # costs three decoder passes over a few frames whatever the memory holds. Only when
        # one of them beats the weights in force (a switch: rare) or the base is in force (a
        # new room's first pairs, or after a switch to the base) are the other remembered
        # rooms scored too, so a return visit lands on its room even when appearance is unsure.
        candidates: list[tuple[str | None, dict[str, Tensor]]] = [(None, {})]
        recognised = self._recognise(frames, frozen)
        if recognised is not None and recognised != self._room and (room := self._memory.get(recognised)) is not None:
            candidates.append((recognised, room.delta))
        was_training = self._model.training
        best: tuple[float, str | None, dict[str, Tensor]] = (math.inf, None, {})
        try:
            self._model.eval()
            in_force_changes = self._changes(self._in_force[1])
            self._load_room_state(in_force_changes)
            in_force = self._holdout_rmse(frames, frozen)
            if math.isfinite(in_force):
                best = self._best_of(candidates, frames, frozen, best)
            if not in_force_changes or (math.isfinite(best[0]) and math.log(in_force / best[0]) > cfg.change_margin):
                others = [(name, room.delta) for name in self._memory.names()
                          if name not in (self._room, recognised) and (room := self._memory.get(name)) is not None]
                best = self._best_of(others, frames, frozen, best)
        finally:
            self._load_room_state(training)
            self._model.train(was_training)
        if not (math.isfinite(best[0]) and math.log(in_force / best[0]) > cfg.change_margin):
            return False
        self._switch_to(best[1], best[2], training)
        self._check_switched = True
        return True

    def _best_of(
        self,
        candidates: list[tuple[str | None, dict[str, Tensor]]],
        frames: list[BufferedFrame],
        cached: bool,
        best: tuple[float, str | None, dict[str, Tensor]],
    ) -> tuple[float, str | None, dict[str, Tensor]]:
        """Score each ``(name, delta)`` on ``frames``; return the lowest of them and ``best``; round lock held."""
        for name, delta in candidates:
            self._load_room_state(delta)
            score = self._holdout_rmse(frames, cached and not any(k.startswith("encoder.") for k in delta))
            if math.isfinite(score) and 0 < score < best[0]:
                best = (score, name, delta)
        return best

    @torch.no_grad()
    def _recognise(self, frames: list[BufferedFrame], cached: bool) -> str | None:
        """Return the remembered room ``frames`` look like (appearance only), or None.

        Only with cached encoder features (they are computed for the round anyway).
        """
        if not cached or len(self._memory) == 0:
            return None
        features = self._features.features(self._model, frames, [f.index for f in frames], self._device)
        return self._memory.recognise(appearance_descriptors(features))[0]

    def _publish_in_force(self, *, full: bool) -> int:
        """Make the training copy's weights the new version in force, publish them, return the version.

        Round lock held.
        """
        state = self._in_force_copy()
        with self._lock:
            self._version += 1
            self._in_force = (self._version, state)
            self._last_update = time.monotonic()
            version = self._version
        self._publish(version, state, full=full)
        return version

    def _load_room_state(self, delta: Mapping[str, Tensor]) -> None:
        """Load the base weights with ``delta`` over them into the training copy; round lock held.

        Copies only the tensors that may differ from the base (:attr:`_dirty`) and ``delta``'s:
        checks and selections load several candidates per round, and a full
        ``load_state_dict`` holds the GIL from an estimator in the same process for
        milliseconds each time.
        """
        with torch.no_grad():
            own = self._model.state_dict()
            for name in self._dirty - delta.keys():
                own[name].copy_(self._base_state[name])
            for name, value in delta.items():
                own[name].copy_(value)
        self._dirty = set(delta)

    @torch.no_grad()
    def _remember(self, frames: list[BufferedFrame], cached: bool) -> None:
        """Store the weights in force as the current room (a new one when it has none)."""
        if self._memory.capacity == 0 or not frames:
            return
        if cached:
            features = self._features.features(self._model, frames, [f.index for f in frames], self._device)
        else:
            features = self._model.encode(stack_frames(frames)[0].to(self._device))
        descriptors = appearance_descriptors(features)
        changed = self._changed_from_base()
        with self._lock:  # with forget(): the room in force is stored only while it is remembered
            name = self._room
            if name is None or self._memory.get(name) is None:
                name = self._memory.new_name()
            self._memory.store(name, changed, descriptors)
            self._room = name

    def _restore_base(self) -> None:
        """Load the base weights and restart the optimizer; round lock held.

        Cached features stay valid unless the encoder had left the base weights.
        """
        if any(k.startswith("encoder.") for k in self._changed_from_base()):
            self._features.clear()
        self._unproven = None
        self._load_room_state({})
        self._optimizer = None
        self._applied = None
        self._apply_config()

    def _train(self, frames: list[BufferedFrame], cfg: AdaptationConfig, cached: bool) -> float:
        """Run the round's epochs; return the mean loss (NaN as soon as one step is non-finite).

        ``cached``: decode from the feature cache (the encoder is frozen) instead of
        running the encoder on every step.
        """
        n_base = 0
        if self._base_frames and cfg.base_replay_fraction > 0:
            n_base = min(cfg.batch_size - 1, max(1, round(cfg.batch_size * cfg.base_replay_fraction)))
        n_live = cfg.batch_size - n_base
        anchor = [(p, self._base_state[name]) for name, p in self._model.named_parameters() if p.requires_grad]
        self._dirty |= self._changing_names()
        total, steps = 0.0, 0
        self._model.train()
        for _ in range(cfg.epochs_per_round):
            order = self._rng.permutation(len(frames))
            for lo in range(0, len(order), n_live):
                if self._abort.is_set() or self._stop.is_set() or not self.enabled:
                    raise _Abort("aborted")
                if self._check_change():
                    self._publish_in_force(full=True)
                    raise _Abort("switched")
                batch = [frames[int(i)] for i in order[lo : lo + n_live]]
                if n_base:
                    n_pick = min(n_base, len(self._base_frames))
                    picks = self._rng.choice(len(self._base_frames), size=n_pick, replace=False)
                    batch += [self._base_frames[int(i)] for i in picks]
                pred, depth = self._predict(batch, cached)
                loss = model_loss(self._model, pred, depth, valid_mask(depth, *self._range))
                if cfg.anchor_weight > 0:
                    loss = loss + cfg.anchor_weight * torch.stack([(p - p0).square().sum() for p, p0 in anchor]).sum()
                value = float(loss.detach())
                if not math.isfinite(value):
                    return math.nan
                self._optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    norm = torch.nn.utils.clip_grad_norm_(self._params, cfg.grad_clip)
                    if not bool(torch.isfinite(norm)):
                        return math.nan
                self._optimizer.step()
                total += value
                steps += 1
        return total / steps if steps else math.nan

    def _predict(self, frames: list[BufferedFrame], cached: bool) -> tuple[Tensor, Tensor]:
        """Return the training copy's prediction for ``frames`` and their sensor depth."""
        if not cached:
            rgb, depth, focal = stack_frames(frames)
            depth, focal = depth.to(self._device), focal.to(self._device)
            return self._model(rgb.to(self._device), focal), depth
        depth, focal = (t.to(self._device) for t in stack_targets(frames))
        features = self._features.features(self._model, frames, [f.index for f in frames], self._device)
        return self._model.forward_features(features, self._size, focal), depth

    @torch.no_grad()
    def _holdout_rmse(self, frames: list[BufferedFrame], cached: bool) -> float:
        self._model.eval()
        pred, depth = self._predict(frames, cached)
        return float(masked_rmse(pred, depth, valid_mask(depth, *self._range)))

    def _changed_from_base(self) -> dict[str, Tensor]:
        """Return the training copy's tensors that differ from the base weights (not copies)."""
        own = self._model.state_dict()
        return {k: own[k] for k in self._dirty if not torch.equal(own[k], self._base_state[k])}

    def _copy_changes(self) -> dict[str, Tensor]:
        """Return copies of :meth:`_changed_from_base`, to load back after scoring other weights."""
        return {k: v.detach().clone() for k, v in self._changed_from_base().items()}

    def _snapshot(self) -> dict[str, Tensor]:
        """Return the state a round restores on rollback: copies of what the round can change.

        Only trainable parameters and buffers (batch-norm statistics) can change in a round;
        frozen parameters enter the snapshot as themselves, so a decoder round copies the
        decoder, not the encoder.
        """
        changing = self._changing_names()
        return {k: v.detach().clone() if k in changing else v for k, v in self._model.state_dict().items()}

    def _changing_names(self) -> set[str]:
        """``state_dict`` names of the tensors training can change: the trainable parameters and every buffer."""
        trainable = {name for name, p in self._model.named_parameters() if p.requires_grad}
        return (trainable | {name for name, _ in self._model.named_buffers()}) & self._base_state.keys()

    def _in_force_copy(self) -> dict[str, Tensor]:
        """Return a CPU copy of the training copy's state for readers and the callbacks.

        Tensors equal to the base weights are the base's own CPU tensors (shared, never
        written: every reader copies), so after a decoder round the copy holds one new
        decoder, not a second encoder. Copies are in the contiguous layout whatever the
        training copy's (channels-last on a CPU).
        """
        state = {}
        for name, value in self._model.state_dict().items():
            if torch.equal(value, self._base_state[name]):
                state[name] = self._base_cpu[name]
            else:
                state[name] = value.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
        return state

    def _state_finite(self) -> bool:
        return all(
            bool(torch.isfinite(t).all()) for t in self._model.state_dict().values() if t.is_floating_point()
        )

    def _publish(self, version: int, state: dict[str, Tensor], *, full: bool) -> None:
        """Hand the new weights in force (``state``, a CPU copy) to the callbacks, outside the lock."""
        with self._lock:
            on_update, on_state = self.on_update, self.on_update_state
        if on_state is not None:  # the tensors that differ from the base; the rest are the base's own
            on_state(version, self._changes(state))
        if on_update is not None:
            on_update(version, export_payload(self._model, version, base_state=None if full else self._base_state,
                                              run_id=self._run_id))

    def reset(self, *, clear_buffer: bool = False) -> int:
        """Restore the base weights, clear the optimizer state and publish them as a new version.

        A running round is aborted first (waits at most one mini-batch step). The
        payload sent to ``on_update`` holds every tensor, so receivers that applied
        earlier deltas return to the base weights exactly.

        Args:
            clear_buffer: also drop every buffered frame (e.g. after moving rooms).

        Returns:
            The new version.
        """
        self._abort.set()
        with self._round_lock:
            self._restore_base()
            self._room = None
            self._evidence.clear()
            self._features.clear()
            if clear_buffer:
                self._buffer.clear()
            version = self._publish_in_force(full=True)
            self._abort.clear()
        return version

    def state_dict(self) -> tuple[int, dict[str, Tensor]]:
        """Return ``(version, CPU copy of the state dict)`` of the weights in force.

        Never waits for a round in progress: the weights in force are the last ones
        handed to the callbacks (the training copy is mid-update during a round).
        """
        with self._lock:
            version, state = self._in_force
        return version, {k: v.clone() for k, v in state.items()}

    # ----------------------------------------------------------------- diagnostics
    def stats(self) -> dict[str, Any]:
        """Return a snapshot of the engine's diagnostics.

        Returns:
            A JSON-able dict: ``version``, ``enabled``, ``round_in_progress``,
            ``rounds_run``, ``rounds_accepted``, ``rounds_rejected_nan``,
            ``rounds_rejected_worse``, ``rounds_aborted``, ``rounds_failed``, ``rounds_switched``,
            ``rounds_unproven_dropped`` (accepted rounds from the base whose weights lost to
            the base on the next round's frames and never went in force),
            ``last_loss``, ``last_holdout_rmse_before``/``_after`` (m), ``round_duration_s``,
            ``last_update_age_s`` (None before the first update), ``buffer_fill``,
            ``buffer_capacity``, ``buffer_nbytes``, ``buffer_capacity_nbytes``,
            ``frames_offered``/``_kept``/``_dropped_<reason>``, ``frames_pending``,
            ``frames_removed`` (frames that failed a round on their own, taken out),
            ``last_error``.
        """
        counters = self._buffer.counters()
        now = time.monotonic()
        with self._lock:
            last = self._last
            out: dict[str, Any] = {
                "version": self._version,
                "enabled": self._enabled,
                "round_in_progress": self._round_started is not None,
                "round_elapsed_s": None if self._round_started is None else now - self._round_started,
                "rounds_run": self._rounds_run,
                "rounds_accepted": self._counts["accepted"],
                "rounds_rejected_nan": self._counts["rejected_nan"],
                "rounds_rejected_worse": self._counts["rejected_worse"],
                "rounds_aborted": self._counts["aborted"],
                "rounds_failed": self._counts["failed"],
                "rounds_switched": self._switches,
                "rounds_unproven_dropped": self._unproven_dropped,
                "room": self._room,
                "last_outcome": None if last is None else last.outcome,
                "last_loss": math.nan if last is None else last.loss,
                "last_holdout_rmse_before": math.nan if last is None else last.holdout_before,
                "last_holdout_rmse_after": math.nan if last is None else last.holdout_after,
                "round_duration_s": math.nan if last is None else last.duration_s,
                "last_update_age_s": None if self._last_update is None else now - self._last_update,
                "last_error": self._last_error,
            }
        out.update(
            buffer_fill=len(self._buffer),
            buffer_capacity=self._buffer.capacity,
            buffer_nbytes=self._buffer.nbytes,
            buffer_capacity_nbytes=self._buffer.capacity * self._buffer.frame_nbytes,
            feature_cache_nbytes=self._features.nbytes,
            rooms=len(self._memory),
            frames_offered=counters["offered"],
            frames_kept=counters["kept"],
            frames_pending=counters["pending"],
            frames_removed=counters["removed"],
        )
        out.update({f"frames_{k}": v for k, v in counters.items() if k.startswith("dropped_")})
        return out



def _spread(frames: list[BufferedFrame], count: int) -> list[BufferedFrame]:
    """Return ``count`` of ``frames`` evenly spread over them, the newest included (all when no more)."""
    if len(frames) <= count:
        return frames
    step = len(frames) / count
    return [frames[len(frames) - 1 - int(i * step)] for i in reversed(range(count))]
