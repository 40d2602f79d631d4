"""The engine's command-line options, shared by ``adapt_eval`` and ``tour_eval``.

Defaults come from :class:`~depth_estimator_ros.adaptation.AdaptationConfig` (whose
defaults are the trainer parameters' rows), so the harness measures what ``live`` runs.
"""

from __future__ import annotations

import argparse

from depth_estimator_ros import parameters
from depth_estimator_ros.adaptation.config import SCOPES, AdaptationConfig

__all__ = ["add_engine_arguments", "config_from_args", "size_arg"]


def size_arg(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (an argparse ``type``)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 96x128, got {text!r}") from None
    return h, w


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``engine`` option group (one option per setting a run may change)."""
    d = AdaptationConfig()
    e = parser.add_argument_group("engine")
    e.add_argument("--lr", type=float, default=d.lr)
    e.add_argument("--scope", choices=SCOPES, default=None,
                   help=f"trainable parameters (default: {d.scope}; all for a cold start, whose encoder is untrained)")
    e.add_argument("--batch-size", type=int, default=d.batch_size)
    e.add_argument("--epochs", type=int, default=d.epochs_per_round, help="epochs per round")
    e.add_argument("--buffer", type=int, default=d.buffer_capacity, help="replay buffer capacity (frames)")
    e.add_argument("--recent-fraction", type=float, default=d.recent_fraction)
    e.add_argument("--min-new", type=int, default=d.min_new_frames, help="new frames that trigger a round")
    e.add_argument("--max-new", type=int, default=d.max_new_frames, help="most new frames one round trains on")
    e.add_argument("--holdout", type=int, default=d.holdout_frames)
    e.add_argument("--tolerance", type=float, default=d.accept_tolerance)
    e.add_argument("--select", choices=("on", "off"), default="on" if d.select_best else "off",
                   help="test, then train: score in force / base / remembered rooms on each round's new frames")
    e.add_argument("--select-margin", type=float, default=d.select_margin)
    e.add_argument("--change-check", type=int, default=d.change_check_frames,
                   help="change check every N kept pairs on the newest N (0 = only the rounds' selection)")
    e.add_argument("--change-margin", type=float, default=d.change_margin)
    e.add_argument("--max-rooms", type=int, default=d.max_rooms, help="rooms the room memory keeps (0 = none)")
    e.add_argument("--grad-clip", type=float, default=d.grad_clip)
    e.add_argument("--weight-decay", type=float, default=d.weight_decay)
    e.add_argument("--anchor", type=float, default=d.anchor_weight, help="L2-SP weight toward the base weights")
    e.add_argument("--base-replay", type=float, default=d.base_replay_fraction,
                   help="share of each batch from --base-data frames")
    e.add_argument("--replay-ratio", type=float, default=d.replay_ratio)
    e.add_argument("--subsample", type=int, default=d.subsample)
    e.add_argument("--duplicate-threshold", type=float, default=d.duplicate_threshold)
    e.add_argument("--train-size", type=size_arg, default=d.train_size,
                   help="HxW rounds train at (default: model input)")
    e.add_argument("--no-freeze-bn", action="store_true", help="let BatchNorm statistics update during rounds")
    e.add_argument("--no-feature-cache", action="store_true", help="run the encoder on every training step")
    on = parameters.parameter("sensor_scale").default
    e.add_argument("--sensor-scale", choices=("on", "off"), default="on" if on else "off",
                   help="the estimator rescales its output by the sensor's depth ratio of the last frames "
                        "(the estimator's sensor_scale; default: %(default)s)")


def config_from_args(args: argparse.Namespace, *, cold: bool) -> AdaptationConfig:
    """Return the validated engine settings the options describe (``scope="all"`` for a cold start)."""
    return AdaptationConfig(
        lr=args.lr, scope=args.scope or ("all" if cold else AdaptationConfig.scope),
        batch_size=args.batch_size, epochs_per_round=args.epochs,
        buffer_capacity=args.buffer, recent_fraction=args.recent_fraction, min_new_frames=args.min_new,
        max_new_frames=args.max_new, holdout_frames=args.holdout, accept_tolerance=args.tolerance,
        select_best=args.select == "on", select_margin=args.select_margin,
        change_check_frames=args.change_check, change_margin=args.change_margin, max_rooms=args.max_rooms,
        grad_clip=args.grad_clip, weight_decay=args.weight_decay, anchor_weight=args.anchor,
        base_replay_fraction=args.base_replay, replay_ratio=args.replay_ratio, subsample=args.subsample,
        duplicate_threshold=args.duplicate_threshold, train_size=args.train_size,
        freeze_bn=not args.no_freeze_bn, feature_cache=not args.no_feature_cache,
    )
