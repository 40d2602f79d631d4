"""Plots of the offline tools (matplotlib lives in the harness, never in the runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_training"]


def plot_training(path: Path, step_losses: list[float], history: list[dict[str, Any]], title: str) -> None:
    """Draw a training run's loss per micro-batch and validation RMSE per epoch, atomically, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_steps, ax_epochs) = plt.subplots(1, 2, figsize=(11, 4))
    if step_losses:
        steps = np.arange(1, len(step_losses) + 1)
        ax_steps.plot(steps, step_losses, color="tab:blue", alpha=0.3, lw=0.8, label="micro-batch")
        window = max(1, len(step_losses) // 25)
        if window > 1:
            smooth = np.convolve(step_losses, np.ones(window) / window, mode="valid")
            ax_steps.plot(steps[window - 1 :], smooth, color="tab:blue", label=f"mean of {window}")
        ax_steps.legend()
    ax_steps.set_xlabel("micro-batch")
    ax_steps.set_ylabel("training loss")
    ax_steps.set_title("training loss")
    ax_steps.grid(alpha=0.3)
    epochs = [row["epoch"] for row in history]
    ax_epochs.plot(epochs, [row["val_rmse"] for row in history], "o-", color="tab:red", label="validation RMSE (m)")
    trained = [row for row in history if row["epoch"] > 0]
    if trained:
        ax_epochs.plot([r["epoch"] for r in trained], [r["train_loss"] for r in trained], "s--",
                       color="tab:blue", label="mean training loss")
    ax_epochs.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_epochs.set_xlabel("epoch (0 = before training)")
    ax_epochs.set_title("per epoch")
    ax_epochs.grid(alpha=0.3)
    ax_epochs.legend()
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
