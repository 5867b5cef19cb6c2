"""What a model gets right and wrong, in numbers and figures: the confusion matrix, per-class
accuracy and the class pairs mixed up most (printed by ``fastsoftmax.predict``), and the figures,
drawn headless (Agg) and written atomically in the format their file's extension names (PNG,
PDF, SVG, JPEG: common.figure_format), which use the same numbers.

Each plot_* function saves its figure and returns it (closed): tests read what
was drawn from its axes (titles, image data) and the PNG's size from
fig.get_size_inches() * DPI.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")  # never opens a window, never blocks

import matplotlib.pyplot as plt
import numpy as np

from ..io.atomic import atomic_write
from ..ops.validation import check_labels
from .common import figure_format

DPI = 100
CELL = 1.6  # inches per image panel: a 28x28 image at ~5 px per pixel, titles fit the longest class name
MIN_WIDTH = 6.0  # inches
TITLE_LINES = 0.18  # inches per line of a panel title
WRONG = "tab:red"
IMAGES = "gray_r"  # dark item on white paper, as the Fashion-MNIST tutorials show them
DIVERGING = "RdBu_r"  # weights: red for evidence for the class, blue against, white at zero
CLIP_PERCENTILE = 99.5  # of |weight|: the ends of the weights' colour scale
COUNTS = "Blues"


class ConfusedPair(NamedTuple):
    """Classes a and b, mixed up a_as_b + b_as_a times; a is the one mistaken more often."""

    a: int
    b: int
    a_as_b: int
    b_as_a: int

    @property
    def total(self) -> int:
        return self.a_as_b + self.b_as_a


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts: [i, j] is how many of class i were predicted j."""
    y_true = check_labels(y_true, np.size(y_true), n_classes, np)
    y_pred = check_labels(y_pred, y_true.shape[0], n_classes, np)
    # One bincount over the flat cell index: no Python loop over the rows.
    cells = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return cells.reshape(n_classes, n_classes)


def per_class_accuracy(counts: np.ndarray) -> np.ndarray:
    """Each class's fraction of images predicted right (its recall); NaN for a class with none."""
    totals = counts.sum(axis=1)
    right = np.diagonal(counts).astype(np.float64)
    return np.divide(right, totals, out=np.full(len(counts), np.nan), where=totals > 0)


def most_confused(counts: np.ndarray, top: int = 5) -> list[ConfusedPair]:
    """The `top` unordered class pairs mixed up most (both directions counted), most first.

    Pairs never confused are left out, so the list may be shorter than `top`.
    """
    a, b = np.triu_indices(len(counts), k=1)
    a_as_b, b_as_a = counts[a, b], counts[b, a]
    # Stable: ties keep class order, so the printout is the same run to run.
    order = np.argsort(-(a_as_b + b_as_a), kind="stable")[:top]
    pairs = []
    for i in order:
        if a_as_b[i] + b_as_a[i] == 0:
            break
        pair = ConfusedPair(int(a[i]), int(b[i]), int(a_as_b[i]), int(b_as_a[i]))
        pairs.append(pair if pair.a_as_b >= pair.b_as_a else ConfusedPair(pair.b, pair.a, pair.b_as_a, pair.a_as_b))
    return pairs


def save_figure(fig, path):
    """Write fig to path in the format its extension names (a file object gives matplotlib no name to read);
    the figure is closed whether or not the write succeeds."""
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format=figure_format(path), dpi=DPI)
    finally:
        plt.close(fig)


def _finish(fig, path, title):
    """The common ending: one suptitle, saved, closed, returned for the tests."""
    if title:
        fig.suptitle(title, wrap=True)  # wraps rather than clips on a narrow figure
    save_figure(fig, path)
    return fig


def _image_grid(n, title_lines, extra_width=0.0):
    """A figure with n image panels, ceil(sqrt(n)) columns (at least 5 where n allows), no ticks."""
    ncols = min(n, max(5, math.ceil(math.sqrt(n))))
    nrows = math.ceil(n / ncols)
    # At least MIN_WIDTH wide: a figure of one or two panels still has room for its suptitle.
    size = (max(ncols * CELL + extra_width, MIN_WIDTH), nrows * (CELL + title_lines * TITLE_LINES) + 0.4)
    fig, grid = plt.subplots(nrows, ncols, figsize=size, squeeze=False, layout="constrained")
    axes = list(grid.flat)
    for ax in axes[n:]:
        ax.remove()  # the unused panels of the last row
    for ax in axes[:n]:
        ax.set(xticks=[], yticks=[])
    return fig, axes[:n]


def plot_history(history, path, title=""):
    """Training curves: loss (left) and train/test accuracy (right) per epoch."""
    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    ax_loss.plot(epochs, [r["loss"] for r in history], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="train loss (cross-entropy)", title="loss")
    ax_acc.plot(epochs, [r["train_acc"] for r in history], marker="o", label="train")
    if all("test_acc" in r for r in history):
        ax_acc.plot(epochs, [r["test_acc"] for r in history], marker="o", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    return _finish(fig, path, title)


def plot_predictions(images, image_shape, y_true, y_pred, class_names, path, title=""):
    """A grid of images (n, pixels), each titled with its true and predicted class; wrong ones in red."""
    fig, axes = _image_grid(len(images), title_lines=2)
    for ax, image, true, pred in zip(axes, images, y_true, y_pred):
        ax.imshow(np.reshape(image, image_shape), cmap=IMAGES)
        wrong = true != pred
        color = WRONG if wrong else "black"
        ax.set_title(f"true: {class_names[true]}\npred: {class_names[pred]}", fontsize=9, color=color)
        if wrong:  # a red frame too, so the mistakes stand out at a glance
            for spine in ax.spines.values():
                spine.set(color=WRONG, linewidth=3)
    return _finish(fig, path, title)


def plot_weights(coef, image_shape, class_names, path, title=""):
    """Each class's weights (k, pixels) as an image, on one colour scale centred on zero."""
    fig, axes = _image_grid(len(coef), title_lines=1, extra_width=1.0)
    # Symmetric limits shared by all panels: white is zero and colours compare across classes.
    # The 99.5th percentile, not the max: a few border pixels that are rarely inked get
    # extreme weights and would wash the rest out; the colour bar's arrows mark the clipping.
    limit = float(np.percentile(np.abs(coef), CLIP_PERCENTILE)) or 1.0
    for ax, weights, name in zip(axes, coef, class_names):
        drawn = ax.imshow(np.reshape(weights, image_shape), cmap=DIVERGING, vmin=-limit, vmax=limit)
        ax.set_title(name, fontsize=10)
    fig.colorbar(drawn, ax=axes, shrink=0.8, extend="both",
                 label="weight: evidence for (+) or against (−) the class")
    return _finish(fig, path, title)


def plot_confusion(counts, class_names, path, title=""):
    """The confusion matrix (true class by row, predicted by column), each cell's count written in it."""
    k = len(counts)
    fig, ax = plt.subplots(figsize=(2.5 + 0.75 * k, 1.5 + 0.65 * k), layout="constrained")
    drawn = ax.imshow(counts, cmap=COUNTS)
    fig.colorbar(drawn, ax=ax, shrink=0.8, label="test images")
    ticks = np.arange(k)
    ax.set_xticks(ticks, class_names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(ticks, class_names)
    ax.set(xlabel="predicted class", ylabel="true class")
    dark = counts.max() / 2  # white text on the darker half of the colour map
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=9,
                color="white" if count > dark else "black")
    return _finish(fig, path, title)
