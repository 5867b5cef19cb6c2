"""Read svmlight / libsvm text files, the format text data ships in: ``label index:value ...`` a line.

scikit-learn's ``load_svmlight_files`` parses them (``.gz`` and ``.bz2`` by
their extension). Around it: the sizes are measured from the text before it
is parsed (a small .gz can inflate without end), and a file it refuses, or
one holding what a classifier cannot take (NaN, multi-label lines), is read
again line by line with a strict parser only to name the first bad line as
``FILE:LINE``. Every error is an SvmlightError (a ValueError) of one line.
"""

from __future__ import annotations

import bz2
import gzip
import os
import re
import stat
import zlib
from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np

from .idx import MAX_BYTES
from .modelfile import MAX_CLASSES, MAX_MODEL_BYTES

__all__ = ["SvmlightError", "SvmlightFiles", "line_of_row", "load_svmlight", "parse_svmlight_name", "read_svmlight",
           "svmlight_name"]


class SvmlightError(ValueError):
    """A file that cannot be read, or is not an svmlight file a classifier can take; one line naming it."""


# What sklearn builds from the text: a row is its label (float64, then int64) and its indptr entry (int64),
# 24 bytes; a value is its index (int64, then int32 in the CSR) and its float32 value, 16 bytes (float64:
# 20). Both files' rows and values together may come to MAX_BYTES (1 GiB), as an idx data set's data may;
# the counts come from the text (its lines and colons) before sklearn parses it.
ROW_BYTES = 24
VALUE_BYTES = 20
# The text read to count them: one file at most 4 GiB once decompressed (the count stops there); one
# line at most 64 MiB, since sklearn holds a line and its tokens (~45 bytes each) at once.
MAX_TEXT_BYTES = 4 * MAX_BYTES
MAX_LINE_BYTES = 2**26
MAX_INDEX = 2**31 - 1  # sklearn parses an index into a C int
_CHUNK = 1 << 20
_NAME = re.compile(r"(.*) \(svmlight, (zero|one)-based\)$", re.DOTALL)


@dataclass(frozen=True, eq=False)
class SvmlightFiles:
    """A training file and an optional test file, as train reads them (the fields it shares with
    io.datasets.Dataset). X: scipy.sparse CSR of the union of both files' features; y: int64 labels
    where every label is a whole number, else float64. x_test and y_test are None without a test file."""

    name: str  # the training file's name and its indices' base: what the model file's dataset says
    x_train: object = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: object = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    classes: np.ndarray  # the labels of both files, sorted: the model predicts each of them
    source: str  # the files, as given
    zero_based: bool


def load_svmlight(train, test=None, *, dtype=np.float32, n_features=None, zero_based="auto") -> SvmlightFiles:
    """The training file and an optional test file, read by read_svmlight (the union of their features,
    or n_features: a resumed model's)."""
    paths = [train] + ([test] if test is not None else [])
    read, zero_based = read_svmlight(paths, dtype=dtype, n_features=n_features, zero_based=zero_based)
    (x_train, y_train), (x_test, y_test) = read[0], read[1] if test is not None else (None, None)
    classes = np.unique(np.concatenate([y for _, y in read]))
    return SvmlightFiles(name=svmlight_name(train, zero_based), x_train=x_train, y_train=y_train, x_test=x_test,
                         y_test=y_test, classes=classes, source=", ".join(map(os.fspath, paths)),
                         zero_based=zero_based)


def svmlight_name(path, zero_based: bool) -> str:
    """The name a model trained on `path` keeps as its dataset: the file's name and the base of its indices."""
    return f"{os.path.basename(os.fspath(path))} (svmlight, {'zero' if zero_based else 'one'}-based)"


def parse_svmlight_name(name) -> tuple[str, bool] | None:
    """(the file's name, whether its indices are zero-based) from a model's dataset name (svmlight_name);
    None for a name that is not an svmlight file's (an idx data set's)."""
    found = _NAME.match(name or "")
    return None if found is None else (found.group(1), found.group(2) == "zero")


def read_svmlight(paths, *, dtype=np.float32, n_features=None, zero_based="auto"):
    """([(X, y) for each file], zero_based): the files of `paths` as CSR matrices of one width and labels.

    The width is n_features, or the union of the files' features; zero_based "auto" is scikit-learn's rule
    (one-based unless some file has an index 0 or no features), decided over all the files. Labels: int64
    if all are whole numbers, else float64. Raises SvmlightError for a file that is missing, not a regular
    file, empty, too large (checked from its text before parsing), or holds a bad line (named FILE:LINE):
    not "label index:value ...", a label that is not a finite number or is several (multi-label), indices
    negative, out of order or repeated, index 0 in a one-based file, a feature past n_features (or past
    what a model of these classes may hold), a value that is not finite in `dtype`. dtype: the values';
    float32 by default, what SGD computes in, at half float64's memory.
    """
    # sklearn.datasets imported only when a file is read: predict and train on idx files never need it
    from sklearn.datasets import load_svmlight_files

    paths = [os.fspath(p) for p in paths]
    _check_sizes(paths, dtype)
    try:  # zero_based=True: sklearn shifts nothing, so the base is decided (and checked) below
        loaded = load_svmlight_files(paths, dtype=dtype, zero_based=True)
    except (ValueError, OverflowError) as e:  # sklearn's message names no line: find it
        _scan(paths, dtype, zero_based is False, MAX_INDEX, otherwise=f"not an svmlight file ({e})")
    X, y = loaded[::2], loaded[1::2]
    for path, x, labels in zip(paths, X, y):
        if x.shape[0] == 0:
            raise SvmlightError(f"{path}: the file holds no rows (no line with a label); give a file with rows")
        if not (np.isfinite(labels).all() and np.isfinite(x.data).all()) or (
                zero_based is False and x.nnz and x.indices.min() == 0):
            _scan([path], dtype, zero_based is False, MAX_INDEX, otherwise="a label or value is not finite")
    if zero_based == "auto":
        zero_based = not all(x.nnz and x.indices.min() > 0 for x in X)
    if not zero_based:
        for x in X:
            x.indices -= 1
    labels = [_labels(v) for v in y]
    width = _checked_width(paths, X, dtype, zero_based, n_features, labels)
    return [(_widened(x, width), v) for x, v in zip(X, labels)], zero_based


def line_of_row(path, row: int) -> int:
    """The line number (from 1) of row `row` (from 0) of an svmlight file: blank and comment lines hold no row."""
    with _open(os.fspath(path)) as f:
        rows = (number for number, line in enumerate(f, 1) if line.split(b"#", 1)[0].strip())
        return next(number for i, number in enumerate(rows) if i == row)


def _open(path):
    """The file's text, decompressed as sklearn does it: by the extension .gz or .bz2."""
    extension = os.path.splitext(path)[1]
    if extension == ".gz":
        return gzip.open(path, "rb")
    return bz2.open(path, "rb") if extension == ".bz2" else open(path, "rb")


def _check_sizes(paths, dtype):
    """SvmlightError unless each file is a readable regular file within MAX_TEXT_BYTES and MAX_LINE_BYTES,
    and what sklearn builds of all of them (counted from the text: rows, values) within MAX_BYTES."""
    value_bytes = VALUE_BYTES if np.dtype(dtype).itemsize > 4 else VALUE_BYTES - 4
    total = 0
    for path in paths:
        rows, values = _measure(path)
        total += rows * ROW_BYTES + values * value_bytes
        if total > MAX_BYTES:
            raise SvmlightError(f"{path}: {rows:,} lines and up to {values:,} values would take about "
                                f"{total / 2**30:.1f} GiB once parsed, more than the {MAX_BYTES / 2**30:.0f} GiB "
                                "read here; split the file or sample its rows")


def _measure(path) -> tuple[int, int]:
    """(rows at most: the lines, values at most: the colons) of a file's text, read in chunks; SvmlightError
    for a file that cannot be read or is past MAX_TEXT_BYTES or MAX_LINE_BYTES (checked as it is read)."""
    try:
        found = os.stat(path)
        if not stat.S_ISREG(found.st_mode):  # a FIFO or a device would be read without end
            kind = "a folder" if stat.S_ISDIR(found.st_mode) else "not a regular file"
            raise SvmlightError(f"{path} is {kind}; name an svmlight file")
        if found.st_size > MAX_TEXT_BYTES:
            raise SvmlightError(f"{path}: {found.st_size:,} bytes, more than the {MAX_TEXT_BYTES:,} an svmlight "
                                "file may hold here; split the file or sample its rows")
        with _open(path) as f:
            return _count(path, f)
    except FileNotFoundError:
        raise SvmlightError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as e:  # no permission; a corrupt or truncated .gz or .bz2
        reason = getattr(e, "strerror", None) or str(e) or "the compressed data ends early"
        raise SvmlightError(f"{path}: cannot be read: {reason}") from None


def _count(path, f) -> tuple[int, int]:
    """_measure's counts, the text read a chunk at a time (never a whole line, which may have no end)."""
    text = lines = values = 0
    current = 0  # bytes of the line not yet ended
    while chunk := f.read(_CHUNK):
        text += len(chunk)
        if text > MAX_TEXT_BYTES:
            raise SvmlightError(f"{path}: more than {MAX_TEXT_BYTES:,} bytes of text once decompressed, more than "
                                "an svmlight file may hold here; split the file or sample its rows")
        values += chunk.count(b":")
        ends = np.flatnonzero(np.frombuffer(chunk, np.uint8) == ord("\n"))
        lengths = np.diff(ends, prepend=-1 - current)  # of the lines ended in this chunk
        current = len(chunk) - 1 - ends[-1] if ends.size else current + len(chunk)
        long = np.flatnonzero(lengths > MAX_LINE_BYTES)
        if long.size or current > MAX_LINE_BYTES:
            number = lines + 1 + (long[0] if long.size else ends.size)
            raise SvmlightError(f"{path}:{number}: a line longer than {MAX_LINE_BYTES:,} bytes; is it a text file "
                                "with a line break after each row?")
        lines += ends.size
    return lines + (current > 0), values


def _width(x) -> int:
    return int(x.indices.max()) + 1 if x.nnz else 0


def _labels(y):
    """int64 labels where all are whole numbers (the usual 1, -1, 3.0), else the float64 ones as given."""
    whole = np.all(np.abs(y) < 2**53) and np.all(y == np.round(y))
    return y.astype(np.int64) if whole else y


def _checked_width(paths, X, dtype, zero_based, n_features, labels) -> int:
    """The width of the matrices: n_features, or the union of the files' features. SvmlightError naming
    the first line with a feature past n_features, or past the most features a model of these classes
    may hold (io.modelfile.MAX_MODEL_BYTES of float32 weights)."""
    n_classes = len(np.unique(np.concatenate(labels)))
    if n_classes > MAX_CLASSES:
        raise SvmlightError(f"{paths[0]}: {n_classes:,} distinct labels, more than the {MAX_CLASSES:,} classes a "
                            "model may have; is the first column of each line a class?")
    first = 0 if zero_based else 1
    if n_features is not None:
        limit = n_features
        why = f"the model takes {n_features:,} features (indices {first}..{n_features - 1 + first})"
    else:
        limit = MAX_MODEL_BYTES // (4 * n_classes)
        why = (f"a model of {n_classes:,} class{'es' * (n_classes != 1)} holds at most {limit:,} features "
               f"({MAX_MODEL_BYTES / 2**30:.0f} GiB of float32 weights)")
    wide = [path for path, x in zip(paths, X) if _width(x) > limit]
    if wide:
        _scan(wide, dtype, not zero_based, limit - 1 + first, why, otherwise=why)
    return n_features or max(map(_width, X))


def _scan(paths, dtype, one_based, largest, why="", *, otherwise) -> NoReturn:
    """Read the files again line by line and raise SvmlightError at the first bad line (FILE:LINE: the
    problem); where none is found, SvmlightError naming the first file and `otherwise`.
    largest: the largest index a line may hold, `why` says why."""
    for path in paths:
        with _open(path) as f:
            for number, line in enumerate(f, 1):
                parts = line.split(b"#", 1)[0].split()
                if parts and (problem := _line_problem(parts, dtype, one_based, largest, why)):
                    raise SvmlightError(f"{path}:{number}: {problem}")
    raise SvmlightError(f"{paths[0]}: {otherwise}; each line must be 'label index:value index:value ...'")


def _line_problem(parts, dtype, one_based, largest, why) -> str | None:
    """What is wrong with one line's tokens, or None: the strict form of what sklearn parses."""
    label, features = parts[0], parts[1:]
    if b"," in label:
        return (f"multi-label line (labels {_shown(label)}); a softmax classifier takes one label a line: "
                "keep one, or write a line for each")
    if b":" in label:
        return f"the line starts with {_shown(label)}, not a label; each line is 'label index:value ...'"
    if (value := _number(label)) is None:
        return f"the label {_shown(label)} is not a number"
    if not np.isfinite(value):
        return f"the label {_shown(label)} is not a finite number"
    if features and features[0].startswith(b"qid"):  # a ranking file's query id: sklearn skips it
        features = features[1:]
    previous = -1
    for token in features:
        index, colon, text = token.partition(b":")
        if not colon:
            return f"{_shown(token)} is not index:value; each line is 'label index:value ...'"
        try:
            index = int(index)
        except ValueError:
            return f"the feature index {_shown(index)} is not a whole number"
        if index < 0:
            return f"the feature index {index} is negative"
        if one_based and index == 0:
            return "the feature index 0, but the indices here are one-based (the model's training file's were)"
        if index <= previous:
            return f"the feature indices are not increasing ({index} after {previous}); sort them, without repeats"
        if index > largest:
            return f"the feature index {index} is out of range: {why or f'at most {MAX_INDEX:,}'}"
        value = _number(text)
        if value is None:
            return f"the value {_shown(text)} of feature {index} is not a number"
        with np.errstate(over="ignore"):
            if not np.isfinite(np.asarray(value, dtype)):
                return f"the value {_shown(text)} of feature {index} is not a finite {np.dtype(dtype).name}"
        previous = index
    return None


def _number(text: bytes) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _shown(token: bytes) -> str:
    """A token as text for a message, cut to 40 characters: a bad line may hold anything."""
    text = token.decode("utf-8", "replace")
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _widened(x, width):
    """x as a CSR matrix of `width` columns (its own data, no copy): the union of the files' features."""
    import scipy.sparse as sp

    return sp.csr_matrix((x.data, x.indices, x.indptr), shape=(x.shape[0], width), copy=False)
