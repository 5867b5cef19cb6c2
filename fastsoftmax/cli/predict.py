"""Show what a saved model learned: ``python -m fastsoftmax.predict --model model.npz``.

Prints the test accuracy, each class's accuracy, the classes most confused with
each other and the true vs predicted labels of the first --n test images; writes
predictions.png, weights.png and confusion.png into --out. With --input FILE it
scores the rows of an svmlight file instead, and writes confusion.png alone (its
rows are no images). Bad input ends with one line on stderr and exit status 2
(usage) or 1 (model, data).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

from ..io.atomic import check_apart, check_outputs
from ..io.datasets import DATASET_NAMES, load_dataset
from ..io.svmlight import line_of_row, parse_svmlight_name, read_svmlight
from ..models.estimator import SoftmaxRegression
from ..ops.dispatch import resolve_device
from .common import Explicit, Parser, data_inputs, given, positive_int, run_command
from .report import (
    confusion_matrix,
    most_confused,
    per_class_accuracy,
    plot_confusion,
    plot_predictions,
    plot_weights,
)

PROG = "python -m fastsoftmax.predict"
TOP_PAIRS = 5  # confused pairs printed: enough to see Shirt / T-shirt / Pullover / Coat mix up
# Images drawn at most: a 10x10 grid is 1600 px square; 1,000 images would take 25 s and
# 700 MB to draw into a PNG nobody can read. --n above it still lists them all.
MAX_DRAWN = 100
# An svmlight file's classes: past MAX_LISTED, the per-class lines and the k x k confusion counts are left out
# (8 MB of counts at 1,000 classes); past MAX_DRAWN_CLASSES, the figure (its cells would be unreadable).
MAX_LISTED = 1000
MAX_DRAWN_CLASSES = 30


def build_parser():
    p = Parser(prog=PROG, description="Evaluate a model saved by `fastsoftmax.train --save` and draw what it learned.")
    p.add_argument("--model", metavar="PATH", required=True, help="the .npz file written by train --save")
    p.add_argument("--dataset", choices=DATASET_NAMES, default="fashion-mnist", action=Explicit)
    p.add_argument("--data-dir", metavar="DIR",
                   help="the folder with the four idx files, downloaded there if missing (default: "
                        "$FASTSOFTMAX_DATA, else the cache or /usr/share/datasets)")
    p.add_argument("--input", metavar="FILE",
                   help="score the rows of an svmlight/libsvm file (.gz and .bz2 too) instead of an idx data "
                        "set's test images, its features numbered as the model's training file's")
    p.add_argument("--n", type=positive_int, default=10,
                   help=f"the first N test images (or rows) to list, and images to draw (at most {MAX_DRAWN})")
    p.add_argument("--out", metavar="DIR", default="out", help="folder for the PNGs (default: out)")
    return p


def check_fits(model, data, model_path):
    """ValueError unless the model's weights fit the data set's images and classes."""
    n_classes, n_features = model.coef_.shape
    pixels = math.prod(data.image_shape)
    if n_features != pixels:
        rows, cols = data.image_shape
        raise ValueError(f"{model_path} takes {n_features} features per image, but {data.name} images have "
                         f"{pixels} pixels ({rows}x{cols}); was it trained on another data set?")
    if n_classes != len(data.class_names):
        raise ValueError(f"{model_path} predicts {n_classes} classes, but {data.name} has "
                         f"{len(data.class_names)}; was it trained on another data set?")
    if not np.array_equal(model.classes_, np.arange(n_classes)):  # the data set's labels are 0..k-1
        raise ValueError(f"{model_path} predicts the labels {model.classes_!r:.60}, but {data.name}'s are "
                         f"0..{n_classes - 1}; was it trained on another data set?")


def print_accuracy(counts, names, unit="images"):
    """Test accuracy overall, then per class (the fraction of its images, or rows, predicted right)."""
    right, total = int(np.trace(counts)), int(counts.sum())
    print(f"test accuracy {right / total:.4f} ({right} of {total})")
    print("\naccuracy per class:")
    width = max(map(len, names))
    rows = zip(names, per_class_accuracy(counts), np.diagonal(counts), counts.sum(axis=1))
    for name, accuracy, class_right, class_total in rows:
        result = f"{accuracy:.3f}  ({class_right} of {class_total})" if class_total else f"no test {unit}"
        print(f"  {name:<{width}}  {result}")


def print_confused(counts, names, unit="images"):
    print(f"\nmost confused classes ({unit} taken for the other class, both ways):")
    width = max(map(len, names))
    for pair in most_confused(counts, TOP_PAIRS):
        a, b = names[pair.a], names[pair.b]
        print(f"  {a:>{width}} <-> {b:<{width}}  {pair.total:5d}  ({pair.a_as_b} {a} as {b}, "
              f"{pair.b_as_a} the other way)")


def print_predictions(y_true, y_pred, proba, names, unit="test images"):
    """One line per image (or row): true and predicted class, the predicted class's probability."""
    print(f"\nthe first {len(y_true)} {unit}, true -> predicted (probability):")
    width = max(map(len, names))
    for i, (true, pred) in enumerate(zip(y_true, y_pred)):
        mark = "  wrong" if true != pred else ""
        print(f"  {i:5d}  {names[true]:<{width}} -> {names[pred]:<{width}} ({proba[i, pred]:.2f}){mark}")


def figure_paths(out, svmlight=False):
    """The PNGs of a run: an svmlight file's rows are no images, so it gets confusion.png alone."""
    names = ("confusion.png",) if svmlight else ("predictions.png", "weights.png", "confusion.png")
    return [Path(out) / name for name in names]


def draw(model, data, y_pred, counts, n, out):
    """The three PNGs in out; returns their paths."""
    paths = figure_paths(out)
    accuracy = np.trace(counts) / counts.sum()
    n = min(n, MAX_DRAWN)
    images = "the first test image" if n == 1 else f"the first {n} test images"
    plot_predictions(data.x_test[:n], data.image_shape, data.y_test[:n], y_pred[:n], data.class_names,
                     paths[0], title=f"{data.name}: {images}, true vs predicted (wrong in red)")
    plot_weights(model.coef_, data.image_shape, data.class_names, paths[1],
                 title=f"{data.name}: learned weights per class")
    plot_confusion(counts, data.class_names, paths[2],
                   title=f"{data.name}: confusion matrix, test accuracy {accuracy:.4f}")
    return paths


def check_inputs_kept(args):
    """OutputError unless each PNG is a file of its own, none of them the model or a data file that this
    run reads (a symlink or hard link to one included): before any work."""
    data = [("--input", args.input)] if args.input else data_inputs(args.dataset, args.data_dir)
    check_apart([("--out", path) for path in figure_paths(args.out, args.input)], [("--model", args.model), *data])


def check_data_flags(parser, args):
    """--input (an svmlight file) with --dataset or --data-dir (an idx data set): a usage error naming them."""
    idx_flags = [flag for flag, typed in (("--dataset", "dataset" in given(args)), ("--data-dir", args.data_dir))
                 if typed]
    if args.input and idx_flags:
        parser.error(f"--input reads an svmlight file, {' and '.join(idx_flags)} an idx data set: give one or "
                     "the other")


def read_input(args, model):
    """--input's rows (CSR, the model's width) and labels, read with the base of indices of the model's
    training file (its dataset name keeps it; scikit-learn's "auto" for a model trained on idx files).
    ValueError naming the line of a label the model does not predict."""
    trained_on = parse_svmlight_name(model.dataset_)  # (file name, zero-based), or None
    ((x, y),), _ = read_svmlight([args.input], n_features=model.coef_.shape[1],
                                 zero_based=trained_on[1] if trained_on else "auto")
    known = np.isin(y, model.classes_)
    if not known.all():
        row = int(np.argmin(known))
        raise ValueError(f"{args.input}:{line_of_row(args.input, row)}: the label {y[row]} is not one of the "
                         f"{len(model.classes_)} classes of {args.model} ({_listed(model.classes_)}); was it "
                         "trained on other data?")
    return x, y


def _listed(classes) -> str:
    shown = ", ".join(map(str, classes[:10]))
    return shown + (", ..." if len(classes) > 10 else "")


def run_svmlight(args, model):
    """--input: the model's predictions on an svmlight file's rows, scored against its labels, and
    confusion.png (up to MAX_DRAWN_CLASSES classes)."""
    x, y = read_input(args, model)
    if args.n > x.shape[0]:
        raise ValueError(f"--n {args.n} is more than the {x.shape[0]} rows of {args.input}")
    print(f"{args.input}: {x.shape[0]} rows; model {args.model}")
    proba = model.predict_proba(x)
    y_pred, y_true = proba.argmax(axis=1), np.searchsorted(model.classes_, y)  # indices into classes_
    names, k = [str(c) for c in model.classes_], len(model.classes_)
    if k > MAX_LISTED:
        right = int((y_pred == y_true).sum())
        print(f"test accuracy {right / len(y):.4f} ({right} of {len(y)}); {k:,} classes, per class not listed")
    else:
        counts = confusion_matrix(y_true, y_pred, k)
        print_accuracy(counts, names, "rows")
        print_confused(counts, names, "rows")
    print_predictions(y_true[:args.n], y_pred[:args.n], proba, names, f"rows of {args.input}")
    print()
    if k > MAX_DRAWN_CLASSES:  # below it, k <= MAX_LISTED: the counts were made
        print(f"confusion.png not drawn: {k:,} classes, more than the {MAX_DRAWN_CLASSES} a figure shows")
        return
    path, = figure_paths(args.out, svmlight=True)
    plot_confusion(counts, names, path, title=f"{args.input}: confusion matrix, test accuracy "
                                              f"{np.trace(counts) / counts.sum():.4f}")
    print(f"wrote {path}")


def run(args):
    # An unwritable --out fails before any work.
    check_outputs(("--out", path) for path in figure_paths(args.out, args.input))
    check_inputs_kept(args)
    resolve_device("cpu")  # the model predicts on the CPU: fail where its kernels cannot run before any work
    model = SoftmaxRegression.load(args.model)  # a bad model file fails before the data loads
    if args.input:
        run_svmlight(args, model)
        return
    data = load_dataset(args.dataset, args.data_dir)
    check_fits(model, data, args.model)
    if args.n > len(data.x_test):
        raise ValueError(f"--n {args.n} is more than the {len(data.x_test)} test images of {data.name}")
    print(f"{data.name}: {len(data.x_test)} test images from {data.source}; model {args.model}")
    proba = model.predict_proba(data.x_test)  # columns in the order of classes_, 0..k-1 (check_fits)
    y_pred = proba.argmax(axis=1)
    counts = confusion_matrix(data.y_test, y_pred, len(data.class_names))
    print_accuracy(counts, data.class_names)
    print_confused(counts, data.class_names)
    print_predictions(data.y_test[:args.n], y_pred[:args.n], proba, data.class_names)
    print()
    paths = draw(model, data, y_pred, counts, args.n, args.out)
    drawn = f" (the first {MAX_DRAWN} of the {args.n} images)" if args.n > MAX_DRAWN else ""
    print(f"wrote {paths[0]}{drawn}")
    for path in paths[1:]:
        print(f"wrote {path}")


def main(argv=None, *, exiting=False):
    """The command line; `exiting`: the process exits with the status it returns (run_command)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_data_flags(parser, args)
    return run_command(PROG, run, args, exiting=exiting)


if __name__ == "__main__":
    sys.exit(main(exiting=True))
