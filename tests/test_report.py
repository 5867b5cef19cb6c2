"""fastsoftmax/cli/report.py: what a model gets right and wrong, in numbers (the confusion matrix,
per-class accuracy, the pairs mixed up most, against plain loops) and in figures, each checked twice:
what was drawn (read back from the returned Figure's axes) and the PNG written (read back with imread:
a valid image of the figure's size)."""

import matplotlib
import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgba

from fastsoftmax.cli import report
from fastsoftmax.cli.report import (
    ConfusedPair,
    confusion_matrix,
    most_confused,
    per_class_accuracy,
)


def naive_confusion(y_true, y_pred, k):
    counts = np.zeros((k, k), np.int64)
    for t, p in zip(y_true, y_pred):
        counts[t, p] += 1
    return counts


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
def test_confusion_matrix_matches_a_loop(dtype):
    rng = np.random.default_rng(0)
    # uint8 labels: true * k + pred overflows uint8 unless widened first.
    y_true, y_pred = (rng.integers(0, 10, 500).astype(dtype) for _ in range(2))
    counts = confusion_matrix(y_true, y_pred, 10)
    np.testing.assert_array_equal(counts, naive_confusion(y_true, y_pred, 10))
    assert counts.dtype == np.int64 and counts.sum() == 500


def test_confusion_matrix_rows_are_true_columns_predicted():
    counts = confusion_matrix([0, 0, 1], [1, 1, 1], 3)
    assert counts[0, 1] == 2 and counts[1, 1] == 1 and counts.sum() == 3


@pytest.mark.parametrize(
    "y_true, y_pred, match",
    [
        ([0, 1, 3], [0, 1, 2], r"outside \[0, 3\)"),
        ([0, 1, 2], [0, 1, 3], r"outside \[0, 3\)"),
        ([0, 1, 2], [0, 1], r"shape \(3,\)"),
        ([[0, 1, 2]], [0, 1, 2], r"shape \(3,\)"),
    ],
)
def test_confusion_matrix_rejects_bad_labels(y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(np.array(y_true), np.array(y_pred), 3)


def test_confusion_matrix_rejects_float_labels():
    with pytest.raises(TypeError, match="integer class labels"):
        confusion_matrix(np.array([0.0, 1.0]), np.array([0, 1]), 2)


def test_per_class_accuracy_is_recall_and_nan_for_an_absent_class():
    counts = np.array([[3, 1, 0], [2, 2, 0], [0, 0, 0]])
    accuracy = per_class_accuracy(counts)
    np.testing.assert_allclose(accuracy[:2], [0.75, 0.5])
    assert np.isnan(accuracy[2])


def test_most_confused_counts_both_ways_and_names_the_worse_direction_first():
    counts = np.array([
        [50, 1, 9],
        [0, 50, 0],
        [12, 3, 50],
    ])
    pairs = most_confused(counts, top=5)
    # (0, 2): 9 + 12 = 21, class 2 taken for 0 more often, so 2 comes first.
    assert pairs[0] == ConfusedPair(a=2, b=0, a_as_b=12, b_as_a=9)
    assert pairs[0].total == 21
    assert pairs[1] == ConfusedPair(a=2, b=1, a_as_b=3, b_as_a=0)
    assert pairs[2] == ConfusedPair(a=0, b=1, a_as_b=1, b_as_a=0)
    assert len(pairs) == 3  # no pair left with a mix-up


def test_most_confused_keeps_top_and_breaks_ties_in_class_order():
    counts = np.full((4, 4), 1)
    pairs = most_confused(counts, top=2)
    assert [(p.a, p.b) for p in pairs] == [(0, 1), (0, 2)]


def test_most_confused_is_empty_for_a_perfect_classifier():
    assert most_confused(np.diag([5, 5, 5])) == []


NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SHAPE = (6, 5)  # not square, so a transposed reshape would show


def assert_png_of(fig, path):
    """path holds a readable RGBA PNG exactly as large as the figure."""
    image = matplotlib.image.imread(path)
    width, height = np.round(fig.get_size_inches() * report.DPI).astype(int)
    assert image.shape == (height, width, 4)
    assert image[..., :3].std() > 0  # something is drawn, not a blank page


def is_red(color):
    return to_rgba(color) == to_rgba(report.WRONG)


@pytest.fixture(autouse=True)
def no_open_figures():
    """Every plot function closes its figure: none pile up, none can block."""
    yield
    assert plt.get_fignums() == []


def test_backend_is_headless():
    assert matplotlib.get_backend().lower() == "agg"


def test_plot_predictions_titles_come_from_the_labels_and_mistakes_are_red(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 30), np.uint8)
    y_true, y_pred = np.array([0, 6, 9, 2]), np.array([0, 0, 9, 4])
    fig = report.plot_predictions(images, SHAPE, y_true, y_pred, NAMES, tmp_path / "p.png", title="grid")
    assert [ax.get_title() for ax in fig.axes] == [
        "true: T-shirt/top\npred: T-shirt/top",
        "true: Shirt\npred: T-shirt/top",
        "true: Ankle boot\npred: Ankle boot",
        "true: Pullover\npred: Coat",
    ]
    wrong = [is_red(ax.title.get_color()) for ax in fig.axes]
    framed = [all(is_red(s.get_edgecolor()) for s in ax.spines.values()) for ax in fig.axes]
    assert wrong == framed == [False, True, False, True]
    for ax, image in zip(fig.axes, images):
        np.testing.assert_array_equal(ax.images[0].get_array(), image.reshape(SHAPE))
    assert fig.get_suptitle() == "grid"
    assert_png_of(fig, tmp_path / "p.png")


@pytest.mark.parametrize("n, columns, rows", [(1, 1, 1), (3, 3, 1), (7, 5, 2), (10, 5, 2), (30, 6, 5)])
def test_plot_predictions_lays_out_any_n(tmp_path, n, columns, rows):
    labels = np.arange(n) % 10
    fig = report.plot_predictions(np.zeros((n, 30), np.uint8), SHAPE, labels, labels, NAMES, tmp_path / "p.png")
    assert len(fig.axes) == n  # the unused panels of the last row are gone
    assert fig.axes[0].get_gridspec().get_geometry() == (rows, columns)
    assert [ax.get_subplotspec().num1 for ax in fig.axes] == list(range(n))  # filled in reading order
    assert_png_of(fig, tmp_path / "p.png")


def test_plot_weights_draws_each_class_on_one_zero_centred_scale(tmp_path):
    rng = np.random.default_rng(1)
    coef = rng.normal(size=(10, 30)).astype(np.float32)
    coef[3, 7] = 100.0  # an outlier is clipped, not allowed to wash the rest out
    fig = report.plot_weights(coef, SHAPE, NAMES, tmp_path / "w.png")
    panels, colorbar = fig.axes[:10], fig.axes[10:]
    assert [ax.get_title() for ax in panels] == list(NAMES)
    limits = set()
    for ax, weights in zip(panels, coef):
        image = ax.images[0]
        np.testing.assert_array_equal(image.get_array(), weights.reshape(SHAPE))
        assert image.get_cmap().name == report.DIVERGING
        limits.add(image.get_clim())
    (low, high), = limits  # one scale for all classes
    assert low == -high and 0 < high < 100
    assert len(colorbar) == 1  # the colour bar's axes
    assert_png_of(fig, tmp_path / "w.png")


def test_plot_weights_of_all_zero_weights_still_renders(tmp_path):
    fig = report.plot_weights(np.zeros((2, 30), np.float32), SHAPE, NAMES[:2], tmp_path / "w.png")
    assert fig.axes[0].images[0].get_clim() == (-1.0, 1.0)


def test_plot_confusion_draws_and_writes_the_counts(tmp_path):
    counts = np.arange(100).reshape(10, 10)
    fig = report.plot_confusion(counts, NAMES, tmp_path / "c.png", title="confusion")
    ax, colorbar = fig.axes
    np.testing.assert_array_equal(ax.images[0].get_array(), counts)
    written = np.array([int(t.get_text()) for t in ax.texts]).reshape(10, 10)
    np.testing.assert_array_equal(written, counts)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(NAMES)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(NAMES)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert colorbar.get_ylabel() == "test images"
    assert_png_of(fig, tmp_path / "c.png")


def test_plot_history_keeps_its_signature(tmp_path):
    history = [{"epoch": e, "loss": 1.0 / e, "train_acc": 0.5 + e / 10, "test_acc": 0.5 + e / 20} for e in (1, 2, 3)]
    fig = report.plot_history(history, tmp_path / "h.png", title="curves")
    loss, acc = fig.axes
    np.testing.assert_allclose(loss.lines[0].get_ydata(), [1.0, 0.5, 1 / 3])
    assert [line.get_label() for line in acc.lines] == ["train", "test"]
    assert fig.get_suptitle() == "curves"
    assert_png_of(fig, tmp_path / "h.png")

