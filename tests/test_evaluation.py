import numpy as np
import pytest

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
