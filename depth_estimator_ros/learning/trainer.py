"""Offline training of a depth model on RGB-D frames, with validation and early stopping.

One call, :func:`fit`, runs the recipe a model comes with (``model.defaults``: Adam
learning rate and weight decay, the loss, micro-batch size and gradient accumulation)
unless :class:`TrainConfig` overrides it:

- the frames are cropped and resized to the model's input size once and kept in
  memory (``7 * H * W`` bytes per frame, about 0.34 MB at 192x256), then every
  epoch shuffles them, augments them (seed 1's rotation / colour / flip) and feeds
  micro-batches, stepping the optimiser every ``accumulation`` micro-batches;
- the validation set is scored before training (epoch 0) and after every epoch
  (pooled RMSE over valid pixels at the input size); the best model so far is
  written atomically with :func:`~depth_estimator_ros.models.save_checkpoint`, and
  training stops after ``patience`` epochs without improvement;
- ``minutes`` bounds the whole call (loading, training, validation, saving): the
  trainer stops stepping when the time left would not cover the final validation
  (its duration is measured on the epoch-0 pass), then validates the partial epoch;
- every epoch appends to ``train_log.csv``, rewrites ``train_log.json`` and redraws
  ``loss_curve.png`` in ``out_dir``, so an interrupted run keeps its record.

Mixed precision (float16 autocast with a gradient scaler) is used on CUDA only.

Inside, :func:`fit` sets the run up, ``_run_epochs`` is the loop (budgets, stopping),
``_train_epoch`` one epoch of optimiser steps, and :class:`TrainingRecorder` the record:
best weights, checkpoint, CSV, JSON and the loss curve.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from depth_estimator_ros.atomic import write_json
from depth_estimator_ros.data.frame import Frame
from depth_estimator_ros.learning.device import resolve_device
from depth_estimator_ros.learning.losses import LOSSES, model_loss, valid_mask
from depth_estimator_ros.learning.metrics import MetricAccumulator
from depth_estimator_ros.learning.transforms import border_crop, resize_depth, resize_rgb, to_tensor_batch
from depth_estimator_ros.models import DepthModel, save_checkpoint

__all__ = ["TrainConfig", "TrainResult", "TrainingRecorder", "fit", "prepare_frames"]

CHECKPOINT_NAME = "best.safetensors"
LOG_CSV = "train_log.csv"
LOG_JSON = "train_log.json"
CURVE_PNG = "loss_curve.png"

_CSV_FIELDS = (
    "epoch", "partial", "steps", "images", "train_loss",
    "val_rmse", "val_mae", "val_abs_rel", "val_delta1", "improved", "elapsed_s",
)  # fmt: skip


@dataclass
class TrainConfig:
    """Options of :func:`fit`; ``None`` means "the model's own default".

    Attributes:
        epochs: most passes over the training frames.
        minutes: wall-clock budget for the whole :func:`fit` call, or ``None``.
        micro_batch: images per forward/backward pass (``model.defaults.micro_batch``).
        accumulation: micro-batches per optimiser step (``model.defaults.accumulation``).
        lr: Adam learning rate (``model.defaults.lr``).
        weight_decay: Adam weight decay (``model.defaults.weight_decay``).
        scope: trainable parts, passed to ``model.set_trainable``.
        patience: epochs without a better validation RMSE before stopping.
        augment: apply seed 1's augmentation to training batches.
        border_crop: pixels cut from every border before resizing (seed 1: 10).
        max_steps: stop after this many optimiser steps (a budget that does not depend
            on the machine's load, unlike ``minutes``), or ``None``.
        cosine: decay the learning rate along a half cosine to 0 over ``max_steps``.
        encoder_lr_scale: the encoder's learning rate relative to the rest (a pretrained
            encoder fine-tunes more gently than a new decoder learns).
        loss: one of ``learning.losses.LOSSES`` instead of the model's own (``model.defaults.loss``).
        max_zoom: largest random zoom of the augmentation (:func:`random_zoom
            <depth_estimator_ros.learning.transforms.random_zoom>`; 1 = none).
        seed: seed of shuffling, augmentation and torch's initialisation draws.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        amp: float16 autocast; ``None`` = on for CUDA, off for CPU (CUDA only).
        progress: show tqdm progress bars.
    """

    epochs: int = 20
    minutes: float | None = None
    micro_batch: int | None = None
    accumulation: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    scope: str = "default"
    patience: int = 5
    augment: bool = True
    border_crop: int = 0
    max_steps: int | None = None
    cosine: bool = False
    encoder_lr_scale: float = 1.0
    max_zoom: float = 1.0
    loss: str | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.minutes is not None and not self.minutes > 0:
            raise ValueError(f"minutes must be > 0 or None, got {self.minutes}")
        for name in ("micro_batch", "accumulation"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"lr must be > 0 or None, got {self.lr}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0 or None, got {self.weight_decay}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")
        if self.border_crop < 0:
            raise ValueError(f"border_crop must be >= 0, got {self.border_crop}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")
        if self.cosine and self.max_steps is None:
            raise ValueError("cosine=True needs max_steps (the length of the schedule)")
        if not self.encoder_lr_scale > 0:
            raise ValueError(f"encoder_lr_scale must be > 0, got {self.encoder_lr_scale}")
        if not self.max_zoom >= 1.0:
            raise ValueError(f"max_zoom must be >= 1, got {self.max_zoom}")
        if self.loss is not None and self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES} or None, got {self.loss!r}")


@dataclass
class TrainResult:
    """What :func:`fit` did.

    Attributes:
        checkpoint: the best checkpoint written.
        best_epoch: epoch of the best validation RMSE (0 = before training).
        best_metrics: validation metrics of that epoch.
        epochs_run: epochs started (the last may be partial).
        steps: optimiser steps taken.
        stopped: ``"epochs"``, ``"steps"``, ``"early_stopping"`` or ``"time_budget"``.
        seconds: wall time of the call.
        train_mean_depth: mean valid training depth in metres (the mean-depth baseline).
        history: one dict per validated epoch, as in ``train_log.csv``.
    """

    checkpoint: Path
    best_epoch: int
    best_metrics: dict[str, float]
    epochs_run: int
    steps: int
    stopped: str
    seconds: float
    train_mean_depth: float
    history: list[dict[str, Any]] = field(default_factory=list)


def prepare_frames(
    frames: Sequence[Frame],
    input_size: tuple[int, int],
    *,
    crop: int = 0,
    desc: str = "frames",
    progress: bool = True,
) -> list[Frame]:
    """Crop and resize frames to the model's input size once, for in-memory training.

    Args:
        frames: RGB-D frames; each must have depth.
        input_size: ``(H, W)``.
        crop: border crop in pixels before resizing.
        desc: progress-bar label.
        progress: show a progress bar.

    Returns:
        New frames with ``(H, W, 3)`` uint8 RGB, ``(H, W)`` float32 depth (NaN invalid)
        and the intrinsics of the cropped, resized image (when the frame had some).

    Raises:
        ValueError: a frame has no depth.
    """
    prepared = []
    for frame in tqdm(frames, desc=f"loading {desc}", unit="frame", disable=not progress, leave=False):
        if frame.depth is None:
            raise ValueError(f"frame {frame.name!r} has no depth; training needs RGB-D frames")
        rgb, depth = border_crop(frame.rgb, frame.depth, crop)
        k = frame.intrinsics
        if k is not None:
            k = k.cropped(crop, crop, k.width - 2 * crop, k.height - 2 * crop).scaled(input_size[1], input_size[0])
        prepared.append(
            Frame(
                rgb=np.ascontiguousarray(resize_rgb(rgb, input_size)),
                depth=resize_depth(depth, input_size),
                stamp=frame.stamp,
                intrinsics=k,
                name=frame.name,
            )
        )
    return prepared


def _mean_depth(frames: Sequence[Frame], model: DepthModel) -> tuple[float, int]:
    total, count = 0.0, 0
    for frame in frames:
        ok = valid_mask(frame.depth, model.min_depth, model.max_depth)
        total += float(frame.depth[ok].sum(dtype=np.float64))
        count += int(ok.sum())
    return (total / count if count else math.nan), count


def _validate(
    model: DepthModel, frames: Sequence[Frame], device: torch.device, amp: bool, batch: int
) -> dict[str, float]:
    """Return pooled metrics of ``model`` on prepared frames at the input size."""
    was_training = model.training
    model.eval()
    acc = MetricAccumulator()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        for start in range(0, len(frames), batch):
            rgb, depth, focal = to_tensor_batch(frames[start : start + batch], model.input_size)
            pred = model(rgb.to(device, non_blocking=True), focal.to(device)).float()
            acc.update(pred, depth, valid_mask(depth, model.min_depth, model.max_depth))
    model.train(was_training)
    return acc.result()


#: ``plot(path, step_losses, history, title)``: draws the loss curve (the harness's
#: ``depth_estimator_bench.plots.plot_training``); the runtime itself draws nothing.
CurvePlotter = Callable[[Path, list[float], list[dict[str, Any]], str], None]


class TrainingRecorder:
    """Keep the best model of a run and its record in ``out_dir``.

    Every :meth:`record` call (one per validated epoch) appends a row to
    ``train_log.csv``, rewrites ``train_log.json`` and redraws ``loss_curve.png``, so an
    interrupted run keeps its record; when the validation RMSE improves it writes
    ``best.safetensors`` (atomically, with ``provenance`` and the epoch's facts) and keeps
    a CPU copy of the weights for :meth:`restore_best`.

    Args:
        out_dir: output folder (must exist).
        model: the model being trained.
        log: the run's facts, the body of ``train_log.json``; ``epochs`` (the rows) and
            ``step_losses`` (every micro-batch loss) are added and filled here.
        provenance: extra JSON-able facts stored in the checkpoint.
        title: title of the loss curve.
        started: ``time.monotonic()`` at the start of the run (default: now), for ``elapsed_s``.
        plot: draws ``loss_curve.png`` after every epoch (None: no picture).
    """

    def __init__(
        self, out_dir: Path, model: DepthModel, log: dict[str, Any], provenance: dict[str, Any], title: str,
        *, started: float | None = None, plot: CurvePlotter | None = None,
    ) -> None:
        self.out = Path(out_dir)
        self.checkpoint = self.out / CHECKPOINT_NAME
        self.model = model
        self.log = log
        self.provenance = provenance
        self.title = title
        self.plot = plot
        self.started = time.monotonic() if started is None else started
        self.history: list[dict[str, Any]] = log.setdefault("epochs", [])
        self.step_losses: list[float] = log.setdefault("step_losses", [])
        self.best_rmse = math.inf
        self.best_epoch = 0
        self.best_metrics: dict[str, float] = {}
        self.stale = 0  # validated epochs since the best one
        self._best_state: dict[str, torch.Tensor] = {}
        with (self.out / LOG_CSV).open("w", newline="") as handle:
            csv.DictWriter(handle, fieldnames=_CSV_FIELDS).writeheader()

    def elapsed(self) -> float:
        """Return the seconds since the run started, rounded to 10 ms."""
        return round(time.monotonic() - self.started, 2)

    def record(
        self, epoch: int, metrics: dict[str, float], *, partial: bool, images: int, losses: Sequence[float],
        steps: int, skipped_steps: int, stopped: str,
    ) -> bool:
        """Record one validated epoch (0 = before training); return whether it is the best so far.

        Args:
            epoch: the epoch's number.
            metrics: its validation metrics (``compute_metrics`` keys).
            partial: the epoch stopped early (time or step budget).
            images: training images it fed.
            losses: its finite micro-batch losses.
            steps: optimiser steps taken so far in the run.
            skipped_steps: steps dropped so far for a NaN/inf loss.
            stopped: why the run would stop if it ended now.
        """
        improved = metrics["rmse"] < self.best_rmse
        if improved:
            self.best_rmse, self.best_epoch, self.best_metrics, self.stale = metrics["rmse"], epoch, metrics, 0
            self._best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            save_checkpoint(self.checkpoint, self.model, provenance={
                **self.provenance,
                "trainer": "depth_estimator_ros.learning.trainer.fit",
                "epoch": epoch,
                "steps": steps,
                "val_metrics": metrics,
                "train_mean_depth": self.log["train_mean_depth"],
                "n_train": self.log["n_train"],
                "n_val": self.log["n_val"],
                "config": self.log["config"],
            })
        elif epoch > 0:
            self.stale += 1
        row = {
            "epoch": epoch, "partial": partial, "steps": steps, "images": images,
            "train_loss": float(np.mean(losses)) if losses else math.nan,
            "val_rmse": metrics["rmse"], "val_mae": metrics["mae"], "val_abs_rel": metrics["abs_rel"],
            "val_delta1": metrics["delta1"], "improved": improved, "elapsed_s": self.elapsed(),
        }  # fmt: skip
        self.history.append(row)
        with (self.out / LOG_CSV).open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=_CSV_FIELDS).writerow(row)
        self.log.update(best_epoch=self.best_epoch, best_val=self.best_metrics, steps=steps,
                        skipped_steps=skipped_steps, stopped=stopped, seconds=self.elapsed(),
                        checkpoint=str(self.checkpoint))
        write_json(self.out / LOG_JSON, self.log)
        if self.plot is not None:
            self.plot(self.out / CURVE_PNG, self.step_losses, self.history, self.title)
        return improved

    def finish(self, *, stopped: str, epochs_run: int, skipped_steps: int) -> None:
        """Write the final ``train_log.json`` of the run."""
        self.log.update(stopped=stopped, seconds=self.elapsed(), epochs_run=epochs_run, skipped_steps=skipped_steps)
        write_json(self.out / LOG_JSON, self.log)

    def restore_best(self) -> None:
        """Load the best weights recorded so far into the model."""
        self.model.load_state_dict(self._best_state)


@dataclass(frozen=True)
class _Recipe:
    """The model's training recipe (``model.defaults``) with :class:`TrainConfig`'s overrides applied."""

    micro: int  # images per forward/backward pass
    accumulation: int  # micro-batches per optimiser step
    lr: float
    weight_decay: float
    amp: bool  # float16 autocast

    @classmethod
    def resolve(cls, model: DepthModel, config: TrainConfig, device: torch.device) -> "_Recipe":
        """Return the recipe ``model`` trains with under ``config`` on ``device``.

        Raises:
            ValueError: ``amp=True`` off CUDA.
        """
        if config.amp and device.type != "cuda":
            raise ValueError(f"amp=True needs a CUDA device, got {device}")
        defaults = model.defaults
        return cls(
            micro=config.micro_batch or defaults.micro_batch,
            accumulation=config.accumulation or defaults.accumulation,
            lr=config.lr if config.lr is not None else defaults.lr,
            weight_decay=config.weight_decay if config.weight_decay is not None else defaults.weight_decay,
            amp=device.type == "cuda" if config.amp is None else bool(config.amp),
        )


@dataclass
class _Step:
    """What the training loop needs between epochs: the optimiser and its bookkeeping."""

    model: DepthModel
    frames: list[Frame]
    config: TrainConfig
    device: torch.device
    recipe: _Recipe
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler
    rng: np.random.Generator
    steps: int = 0
    skipped_steps: int = 0


@dataclass
class _EpochOutcome:
    images: int = 0
    losses: list[float] = field(default_factory=list)
    partial: bool = False  # stopped before the end of the epoch
    out_of_steps: bool = False  # the ``max_steps`` budget is spent


def _micro_batches(order: np.ndarray, micro: int) -> list[np.ndarray]:
    batches = [order[i : i + micro] for i in range(0, len(order), micro)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        # Batch norm cannot train on one frame whose coarsest feature map is 1x1
        # (small inputs); the lone frame joins the previous micro-batch instead.
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


def _train_epoch(
    run: _Step, epoch: int, *, deadline: float | None, reserve: float, step_losses: list[float]
) -> _EpochOutcome:
    """Run one epoch of optimiser steps, stopping early at the time or step budget.

    Every micro-batch's finite loss is appended to ``step_losses`` as it is computed.
    """
    config, model = run.config, run.model
    batches = _micro_batches(run.rng.permutation(len(run.frames)), run.recipe.micro)
    outcome = _EpochOutcome()
    run.optimizer.zero_grad(set_to_none=True)
    bar = tqdm(total=len(batches), desc=f"epoch {epoch}/{config.epochs}", unit="batch",
               disable=not config.progress, leave=False)
    for group_start in range(0, len(batches), run.recipe.accumulation):
        group = batches[group_start : group_start + run.recipe.accumulation]
        if deadline is not None and time.monotonic() + reserve >= deadline:
            outcome.partial = True
            break
        if config.max_steps is not None and run.steps >= config.max_steps:
            outcome.partial = group_start > 0
            outcome.out_of_steps = True
            break
        finite = True
        for indices in group:
            rgb, depth, focal = to_tensor_batch([run.frames[i] for i in indices], model.input_size,
                                                augment=config.augment, rng=run.rng, max_zoom=config.max_zoom)
            rgb = rgb.to(run.device, non_blocking=True)
            depth = depth.to(run.device, non_blocking=True)
            with torch.autocast(run.device.type, dtype=torch.float16, enabled=run.recipe.amp):
                pred = model(rgb, focal.to(run.device))
            loss = model_loss(model, pred.float(), depth, valid_mask(depth, model.min_depth, model.max_depth),
                              config.loss)
            value = float(loss.detach())
            finite = finite and math.isfinite(value)
            if finite:
                run.scaler.scale(loss / len(group)).backward()
                outcome.losses.append(value)
                step_losses.append(value)
            outcome.images += len(indices)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.3f}")
        if finite:
            run.scaler.step(run.optimizer)
            run.scaler.update()
            run.steps += 1
            if run.schedule is not None:
                run.schedule.step()
        else:
            # A NaN/inf loss would poison the weights (on CPU there is no scaler to
            # catch it): drop the whole accumulated step and count it.
            run.skipped_steps += 1
        run.optimizer.zero_grad(set_to_none=True)
    bar.close()
    return outcome


def _optimizer(
    model: DepthModel, params: list[torch.nn.Parameter], config: TrainConfig, lr: float, weight_decay: float
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]:
    """Return Adam over ``params`` (the encoder's at ``lr * encoder_lr_scale``) and the cosine schedule, if any."""
    encoder_ids = {id(p) for p in model.encoder.parameters()}
    groups = [
        {"params": [p for p in params if id(p) not in encoder_ids], "lr": lr},
        {"params": [p for p in params if id(p) in encoder_ids], "lr": lr * config.encoder_lr_scale},
    ]
    optimizer = torch.optim.Adam([g for g in groups if g["params"]], lr=lr, weight_decay=weight_decay)
    schedule = None
    if config.cosine:
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, config.max_steps) / config.max_steps))
        )
    return optimizer, schedule


def _prepare_sets(
    train_frames: Sequence[Frame], val_frames: Sequence[Frame], model: DepthModel, config: TrainConfig
) -> tuple[list[Frame], list[Frame], float]:
    """Crop and resize both sets to the model's input size (:func:`prepare_frames`).

    Returns:
        ``(train, val, train_mean)``: the prepared frames and the mean valid training depth, metres.

    Raises:
        ValueError: no valid depth pixel in the model's range in the validation frames.
    """
    train = prepare_frames(train_frames, model.input_size, crop=config.border_crop, desc="training frames",
                           progress=config.progress)
    val = prepare_frames(val_frames, model.input_size, crop=config.border_crop, desc="validation frames",
                         progress=config.progress)
    train_mean, _ = _mean_depth(train, model)
    if _mean_depth(val, model)[1] == 0:
        raise ValueError("the validation frames have no valid depth pixel in the model's range")
    return train, val, train_mean


def _training_log(
    run: _Step, params: list[torch.nn.Parameter], *, n_val: int, train_mean: float
) -> dict[str, Any]:
    """Return the facts of the run that ``train_log.json`` starts from."""
    model, recipe = run.model, run.recipe
    return {
        "arch": model.arch,
        "config": {**asdict(run.config), "micro_batch": recipe.micro, "accumulation": recipe.accumulation,
                   "lr": recipe.lr, "weight_decay": recipe.weight_decay, "amp": recipe.amp},
        "device": str(run.device),
        "input_size": list(model.input_size),
        "n_train": len(run.frames),
        "n_val": n_val,
        "train_mean_depth": train_mean,
        "trainable_parameters": sum(p.numel() for p in params),
        "skipped_steps": 0,
        "epochs": [],
        "step_losses": [],
    }


def _run_epochs(
    run: _Step, recorder: TrainingRecorder, val: list[Frame], *, deadline: float | None
) -> tuple[str, int]:
    """Validate the model before training (epoch 0), then train and validate epoch by epoch.

    Every validated epoch is recorded. Training stops after ``config.epochs``, at the step or
    time budget (the partial epoch is validated), or after ``config.patience`` epochs
    without improvement.

    Returns:
        ``(stopped, epochs_run)``: why it stopped (``"epochs"``, ``"steps"``, ``"time_budget"``
        or ``"early_stopping"``) and how many epochs were begun.
    """
    config, model = run.config, run.model
    stopped = "epochs"

    def validate_and_record(epoch: int, outcome: _EpochOutcome, stopped: str) -> None:
        recorder.record(epoch, _validate(model, val, run.device, run.recipe.amp, run.recipe.micro),
                        partial=outcome.partial, images=outcome.images, losses=outcome.losses, steps=run.steps,
                        skipped_steps=run.skipped_steps, stopped=stopped)

    tic = time.monotonic()
    validate_and_record(0, _EpochOutcome(), stopped)
    # Reserve one validation pass plus a checkpoint write at the end of a time budget.
    reserve = 1.5 * (time.monotonic() - tic) + 1.0

    epochs_run = 0
    for epoch in range(1, config.epochs + 1):
        epochs_run = epoch
        outcome = _train_epoch(run, epoch, deadline=deadline, reserve=reserve, step_losses=recorder.step_losses)
        if outcome.out_of_steps:
            stopped = "steps"
        elif outcome.partial:
            stopped = "time_budget"
        if outcome.images:
            validate_and_record(epoch, outcome, stopped)
        if outcome.partial or outcome.out_of_steps:
            break
        if recorder.stale >= config.patience:
            stopped = "early_stopping"
            break
    return stopped, epochs_run


def fit(
    model: DepthModel,
    train_frames: Sequence[Frame],
    val_frames: Sequence[Frame],
    out_dir: str | Path,
    config: TrainConfig | None = None,
    *,
    provenance: dict[str, Any] | None = None,
    plot: CurvePlotter | None = None,
) -> TrainResult:
    """Train ``model`` on ``train_frames``, keeping the best checkpoint by validation RMSE.

    On return ``model`` holds the best weights (in training mode, on the training
    device) and ``out_dir`` holds ``best.safetensors``, ``train_log.csv``,
    ``train_log.json`` and ``loss_curve.png``.

    Args:
        model: the model to train, e.g. from ``build_model`` or ``load_checkpoint``.
        train_frames: RGB-D frames to learn from (each with depth).
        val_frames: RGB-D frames to select the best epoch on (at least one valid pixel).
        out_dir: output folder (created).
        config: options; ``TrainConfig()`` when ``None``.
        provenance: extra JSON-able facts stored in the checkpoint (e.g. the data spec).
        plot: draws ``loss_curve.png`` after every epoch (:data:`CurvePlotter`; None: none).

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: empty frame lists, frames without depth, a validation set
            without valid pixels, or ``amp=True`` off CUDA.
    """
    config = config or TrainConfig()
    started = time.monotonic()
    deadline = None if config.minutes is None else started + 60.0 * config.minutes
    if len(train_frames) == 0 or len(val_frames) == 0:
        raise ValueError(f"need training and validation frames, got {len(train_frames)} and {len(val_frames)}")
    device = resolve_device(config.device)
    recipe = _Recipe.resolve(model, config, device)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    train, val, train_mean = _prepare_sets(train_frames, val_frames, model, config)

    model.to(device)
    params = model.set_trainable(config.scope)
    optimizer, schedule = _optimizer(model, params, config, recipe.lr, recipe.weight_decay)
    run = _Step(model=model, frames=train, config=config, device=device, recipe=recipe, optimizer=optimizer,
                schedule=schedule, scaler=torch.amp.GradScaler(device.type, enabled=recipe.amp), rng=rng)
    model.train()

    log = _training_log(run, params, n_val=len(val), train_mean=train_mean)
    recorder = TrainingRecorder(out, model, log, provenance or {}, f"{model.arch}: {len(train)} training frames",
                                started=started, plot=plot)
    stopped, epochs_run = _run_epochs(run, recorder, val, deadline=deadline)
    recorder.finish(stopped=stopped, epochs_run=epochs_run, skipped_steps=run.skipped_steps)
    recorder.restore_best()
    return TrainResult(
        checkpoint=recorder.checkpoint,
        best_epoch=recorder.best_epoch,
        best_metrics=recorder.best_metrics,
        epochs_run=epochs_run,
        steps=run.steps,
        stopped=stopped,
        seconds=log["seconds"],
        train_mean_depth=train_mean,
        history=recorder.history,
    )
