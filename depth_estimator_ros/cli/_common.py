"""Shared pieces of the offline command-line tools: argument types, torch set-up, error exit."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import numpy as np
import torch

from depth_estimator_ros.learning.device import DEVICE_CHOICES

__all__ = ["add_runtime_arguments", "apply_runtime", "positive_float", "positive_int", "run_main"]


def positive_int(text: str) -> int:
    """Parse an integer >= 1 (an argparse ``type``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """Parse a finite number > 0 (an argparse ``type``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and np.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--device``, ``--seed``, ``--threads`` and ``--quiet`` to ``parser``."""
    parser.add_argument("--device", default="auto", help=f"{' | '.join(DEVICE_CHOICES)} | cuda:N (default auto)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="CPU threads torch may use (default: torch's choice)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def apply_runtime(args: argparse.Namespace) -> None:
    """Apply ``--threads`` and seed torch and numpy's legacy global generator with ``--seed``."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed % 2**32)


def run_main(prog: str, body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Run a command's body, turning bad-input errors into a message and exit status 2.

    Args:
        prog: the command's name, used in the message.
        body: the command; returns its exit status.
        argv: arguments (``None`` = ``sys.argv[1:]``).

    Returns:
        ``body``'s status, 2 for a ``ValueError`` or ``OSError``
        (bad data, checkpoint or path), 130 on Ctrl-C.
    """
    try:
        return body(argv)
    except (ValueError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
