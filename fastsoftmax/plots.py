"""Figures, drawn headless (Agg) and written atomically as PNG."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # never opens a window, never blocks

import matplotlib.pyplot as plt  # noqa: E402

from .atomic import atomic_write  # noqa: E402


def save_figure(fig, path):
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def plot_history(history, path, title=""):
    """Training curves: loss (left) and train/test accuracy (right) per epoch."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    ax_loss.plot(epochs, [r["loss"] for r in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="train loss (cross-entropy)", title="loss")
    ax_acc.plot(epochs, [r["train_acc"] for r in history], marker="o", label="train")
    if all("test_acc" in r for r in history):
        ax_acc.plot(epochs, [r["test_acc"] for r in history], marker="o", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
