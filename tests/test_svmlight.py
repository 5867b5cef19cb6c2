"""svmlight / libsvm files: the reader (fastsoftmax.io.svmlight) and the command lines trained and scored on them."""

import bz2
import gzip
import io
import os
import re

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.datasets import dump_svmlight_file

import fastsoftmax as fs
from fastsoftmax.cli import predict as predict_cli
from fastsoftmax.cli.predict import PROG as PREDICT
from fastsoftmax.cli.predict import main as predict_main
from fastsoftmax.cli.train import PROG as TRAIN
from fastsoftmax.cli.train import main as train_main
from fastsoftmax.io import svmlight
from fastsoftmax.io.svmlight import (
    SvmlightError,
    line_of_row,
    load_svmlight,
    parse_svmlight_name,
    read_svmlight,
    svmlight_name,
)
from fastsoftmax.models.sweep import SHARED

pytestmark = pytest.mark.usefixtures("isolated_data")  # nothing read from, or downloaded to, the real data folders
COMPRESS = {"": lambda b: b, ".gz": gzip.compress, ".bz2": bz2.compress}


def write(path, text: bytes):
    """`text` written to `path`, compressed as its extension says (.gz, .bz2); returns the path."""
    path.write_bytes(COMPRESS.get(path.suffix, COMPRESS[""])(text))
    return path


def dense(x):
    return x.toarray().tolist()


def rows(n, seed, d=12, k=3, zero_based=False) -> bytes:
    """n svmlight lines of k separable classes (labels 1..k) over d features, about half of them zero."""
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(0).normal(size=(k, d)) * 3  # one set of classes for every file
    y = rng.integers(0, k, n)
    X = (centers[y] + rng.normal(size=(n, d))) * (rng.random((n, d)) < 0.6)
    base = 0 if zero_based else 1
    return b"".join(f"{label + 1} {' '.join(f'{j + base}:{v:.4f}' for j, v in enumerate(row) if v)}\n".encode()
                    for label, row in zip(y, X))


def drop_feature(text: bytes, index: int) -> bytes:
    return re.sub(rb" %d:\S+" % index, b"", text)


# ---- the reader ----


@pytest.mark.parametrize("suffix", ["", ".gz", ".bz2"])
def test_plain_gz_and_bz2_files_read_alike(tmp_path, suffix):
    text = b"# a comment line\n1 1:0.5 3:2\n\n-1 2:1.5 # a comment after the row\n+1 qid:7 3:4\n"
    (x, y), = read_svmlight([write(tmp_path / f"f.svm{suffix}", text)])[0]
    assert sp.issparse(x) and x.format == "csr" and x.dtype == np.float32
    assert dense(x) == [[0.5, 0, 2], [0, 1.5, 0], [0, 0, 4]]
    assert y.dtype == np.int64 and y.tolist() == [1, -1, 1]


def test_the_features_are_the_union_of_both_files(tmp_path):
    data = load_svmlight(write(tmp_path / "train.svm", b"1 1:1 2:2\n2 3:3\n"),
                         write(tmp_path / "test.svm", b"1 5:5\n3 1:1\n"))
    assert data.x_train.shape == (2, 5) and data.x_test.shape == (2, 5)
    assert dense(data.x_test) == [[0, 0, 0, 0, 5], [1, 0, 0, 0, 0]]
    assert data.classes.tolist() == [1, 2, 3]  # the test file's label 3 too
    assert data.name == "train.svm (svmlight, one-based)" and not data.zero_based


def test_without_a_test_file(tmp_path):
    data = load_svmlight(write(tmp_path / "train.svm", b"1 1:1\n2 2:2\n"))
    assert data.x_test is None and data.y_test is None and data.x_train.shape == (2, 2)


@pytest.mark.parametrize("train,test,zero_based", [
    (b"1 1:1\n2 3:1\n", b"1 2:1\n2\n", False),  # no index 0 anywhere: one-based, shifted down
    (b"1 0:1\n2 3:1\n", b"1 2:1\n", True),  # an index 0 in one file makes both zero-based
    (b"1 1:1\n2 3:1\n", b"1 0:1\n", True),
    (b"1 1:1\n2 3:1\n", b"1\n2\n", True),  # ... and so does a file without any feature
])
def test_zero_or_one_based_is_scikit_learns_auto_over_both_files(tmp_path, train, test, zero_based):
    from sklearn.datasets import load_svmlight_files

    paths = [write(tmp_path / "a.svm", train), write(tmp_path / "b.svm", test)]
    read, found = read_svmlight(paths)
    assert found is zero_based
    expected = load_svmlight_files([str(p) for p in paths], zero_based="auto")
    for (x, y), x_expected, y_expected in zip(read, expected[::2], expected[1::2]):
        assert x.shape == x_expected.shape and dense(x) == dense(x_expected) and y.tolist() == y_expected.tolist()


def test_an_explicit_base_and_width_are_kept(tmp_path):
    path = write(tmp_path / "f.svm", b"1 1:1\n2 2:1\n")
    (x, _), = read_svmlight([path], n_features=5, zero_based=True)[0]
    assert x.shape == (2, 5) and dense(x)[0] == [0, 1, 0, 0, 0]
    (x, _), = read_svmlight([path], n_features=5, zero_based=False)[0]
    assert x.shape == (2, 5) and dense(x)[0] == [1, 0, 0, 0, 0]


@pytest.mark.parametrize("labels,expected,dtype", [
    (b"1 -1 3", [1, -1, 3], np.int64),
    (b"1.0 2e0 -3.000", [1, 2, -3], np.int64),  # whole numbers written as floats are ints
    (b"0.5 1 1.5", [0.5, 1, 1.5], np.float64),  # others stay as they are
])
def test_labels(tmp_path, labels, expected, dtype):
    text = b"".join(label + b" 1:1\n" for label in labels.split())
    (_, y), = read_svmlight([write(tmp_path / "f.svm", text)])[0]
    assert y.dtype == dtype and y.tolist() == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(X=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6),
                    elements=st.sampled_from([0.0, 0.0, 1.0, -2.5, 0.125, 3e5])),
       suffix=st.sampled_from(["", ".gz", ".bz2"]))
def test_what_scikit_learn_writes_reads_back(tmp_path, X, suffix):
    y = np.arange(len(X)) % 3
    buffer = io.BytesIO()
    dump_svmlight_file(X, y, buffer, zero_based=True)
    (x, labels), = read_svmlight([write(tmp_path / f"f{suffix}", buffer.getvalue())], n_features=X.shape[1],
                                 zero_based=True)[0]
    assert np.array_equal(x.toarray(), X) and np.array_equal(labels, y)


def test_a_model_name_keeps_the_file_and_its_base():
    assert parse_svmlight_name(svmlight_name("/data/news (v2).svm.gz", False)) == ("news (v2).svm.gz", False)
    assert parse_svmlight_name(svmlight_name("a.svm", True)) == ("a.svm", True)
    assert parse_svmlight_name("fashion-mnist") is None and parse_svmlight_name(None) is None


def test_line_of_row_skips_blank_and_comment_lines(tmp_path):
    path = write(tmp_path / "f.svm.gz", b"# header\n1 1:1\n\n   # indented comment\n2 2:1\n")
    assert [line_of_row(path, row) for row in (0, 1)] == [2, 5]


# Each bad line is named FILE:LINE; the line numbers count comment and blank lines as the file does.
BAD_LINES = [
    (b"1 1:2\ncat 3:4\n", 2, "the label 'cat' is not a number"),
    (b"1 1:2\n1,2 3:4\n", 2, "multi-label line (labels '1,2')"),
    (b"1 1:2\nnan 3:4\n", 2, "the label 'nan' is not a finite number"),
    (b"1 1:2\n-inf 3:4\n", 2, "the label '-inf' is not a finite number"),
    (b"1 1:2\n1:2 3:4\n", 2, "the line starts with '1:2', not a label"),
    (b"1 1:2\n1 3:x\n", 2, "the value 'x' of feature 3 is not a number"),
    (b"1 1:2\n1 3:1e39\n", 2, "the value '1e39' of feature 3 is not a finite float32"),
    (b"1 1:2\n1 3:inf\n", 2, "the value 'inf' of feature 3 is not a finite float32"),
    (b"1 1:2\n1 3:nan\n", 2, "the value 'nan' of feature 3 is not a finite float32"),
    (b"1 1:2\n1 3:1 2:1\n", 2, "the feature indices are not increasing (2 after 3)"),
    (b"1 1:2\n1 3:1 3:1\n", 2, "the feature indices are not increasing (3 after 3)"),
    (b"1 1:2\n1 -3:1\n", 2, "the feature index -3 is negative"),
    (b"1 1:2\n1 a:1\n", 2, "the feature index 'a' is not a whole number"),
    (b"1 1:2\n1 1.5:1\n", 2, "the feature index '1.5' is not a whole number"),
    (b"1 1:2\n1 3\n", 2, "'3' is not index:value"),
    (b"1 1:2\n1 2147483648:1\n", 2, "the feature index 2147483648 is out of range: at most 2,147,483,647"),
    (b"# header\n\n1 1:2\n   \n1 3:1 2:1\n", 5, "not increasing"),
    (b"1 1:2\r\n2 2:1\r\n2 x:1\r\n", 3, "the feature index 'x' is not a whole number"),
]


@pytest.mark.parametrize("suffix", ["", ".gz", ".bz2"])
@pytest.mark.parametrize("text,line,message", BAD_LINES)
def test_a_bad_line_is_named_by_its_number(tmp_path, suffix, text, line, message):
    path = write(tmp_path / f"bad.svm{suffix}", text)
    with pytest.raises(SvmlightError) as caught:
        read_svmlight([path])
    assert str(caught.value).startswith(f"{path}:{line}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_bad_line_in_the_test_file_names_that_file(tmp_path):
    train, test = write(tmp_path / "train.svm", b"1 1:1\n"), write(tmp_path / "test.svm", b"1 1:1\n\n2 x:1\n")
    with pytest.raises(SvmlightError, match=f"^{test}:3: the feature index 'x'"):
        load_svmlight(train, test)


@pytest.mark.parametrize("text", [b"", b"\n\n", b"# only a comment\n  \n"])
def test_a_file_without_rows_is_refused(tmp_path, text):
    path = write(tmp_path / "empty.svm", text)
    with pytest.raises(SvmlightError, match="the file holds no rows"):
        read_svmlight([path])


def test_unreadable_files_are_one_line(tmp_path):
    os.mkfifo(tmp_path / "fifo")  # opening it would wait for a writer: refused from its mode
    cases = {tmp_path / "nowhere.svm": "no such file", tmp_path: "is a folder",
             tmp_path / "fifo": "is not a regular file",
             tmp_path / "junk.gz": "cannot be read: Not a gzipped file",
             tmp_path / "junk.bz2": "cannot be read: Invalid data stream",
             tmp_path / "cut.svm.gz": "cannot be read: Compressed file ended before"}
    (tmp_path / "junk.gz").write_bytes(b"1 1:1 but not gzip")
    (tmp_path / "junk.bz2").write_bytes(b"1 1:1 but not bzip2")
    (tmp_path / "cut.svm.gz").write_bytes(gzip.compress(rows(50, 1))[:-30])
    for path, message in cases.items():
        with pytest.raises(SvmlightError, match=message):
            read_svmlight([path])


def test_a_file_wider_than_the_model_names_the_first_line_past_it(tmp_path):
    path = write(tmp_path / "f.svm", b"1 1:1\n1 2:1 4:1\n1 9:1\n")
    with pytest.raises(SvmlightError, match=r":2: the feature index 4 is out of range: the model takes 3 features "
                                            r"\(indices 1..3\)"):
        read_svmlight([path], n_features=3, zero_based=False)
    with pytest.raises(SvmlightError, match=r":2: the feature index 4 is out of range: .*\(indices 0..2\)"):
        read_svmlight([path], n_features=3, zero_based=True)
    with pytest.raises(SvmlightError, match=r":1: the feature index 0, but the indices here are one-based"):
        read_svmlight([write(tmp_path / "z.svm", b"1 0:1\n")], zero_based=False)


# ---- sizes: checked from the text before scikit-learn parses it ----


@pytest.fixture
def never_parsed(monkeypatch):
    """scikit-learn's parser made to fail the test: a file refused by its size never reaches it."""
    import sklearn.datasets

    def parse(*args, **kwargs):
        raise AssertionError("the file was parsed")

    monkeypatch.setattr(sklearn.datasets, "load_svmlight_files", parse)


def test_rows_and_values_past_the_limit_are_refused_before_parsing(tmp_path, monkeypatch, never_parsed):
    text = rows(200, 1)
    lines, values = text.count(b"\n"), text.count(b":")
    need = lines * svmlight.ROW_BYTES + values * (svmlight.VALUE_BYTES - 4)  # float32 values
    monkeypatch.setattr(svmlight, "MAX_BYTES", need - 1)
    with pytest.raises(SvmlightError, match=f"{lines:,} lines and up to {values:,} values would take"):
        read_svmlight([write(tmp_path / "f.svm.gz", text)])
    # Both files count: each alone fits, together they do not.
    monkeypatch.setattr(svmlight, "MAX_BYTES", need * 3 // 2)
    with pytest.raises(SvmlightError, match="once parsed"):
        read_svmlight([write(tmp_path / "a.svm", text), write(tmp_path / "b.svm", text)])


def test_a_compressed_file_inflating_past_the_limit_stops_there(tmp_path, monkeypatch, never_parsed):
    monkeypatch.setattr(svmlight, "MAX_TEXT_BYTES", 3 * svmlight._CHUNK)
    bomb = write(tmp_path / "bomb.svm.gz", b"# " + b" " * (10 * svmlight._CHUNK) + b"\n")  # 10 MiB in ~10 kB
    sizes, opened = [], svmlight._open
    monkeypatch.setattr(svmlight, "_open", lambda path: Counted(opened(path), sizes))
    with pytest.raises(SvmlightError, match="more than 3,145,728 bytes of text once decompressed"):
        read_svmlight([bomb])
    assert sum(sizes) <= 4 * svmlight._CHUNK  # inflated up to the limit, not to the end


class Counted:
    """A file whose reads' sizes go into `sizes`."""

    def __init__(self, f, sizes):
        self.f, self.sizes = f, sizes

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def read(self, n):
        data = self.f.read(n)
        self.sizes.append(len(data))
        return data


def test_a_raw_file_past_the_text_limit_is_refused_from_its_size(tmp_path, monkeypatch, never_parsed):
    monkeypatch.setattr(svmlight, "MAX_TEXT_BYTES", 100)
    monkeypatch.setattr(svmlight, "_open", lambda path: pytest.fail("the file was opened"))
    with pytest.raises(SvmlightError, match="bytes, more than the 100 an svmlight file may hold"):
        read_svmlight([write(tmp_path / "f.svm", rows(20, 1))])


@pytest.mark.parametrize("text,line", [
    (b"1 1:1\n1 2:1\n1 " + b"3:1 " * 40 + b"\n1 1:1\n", 3),
    (b"1 1:1\n1 " + b"3:1 " * 40, 2),  # no line break at the end: stopped all the same
    (b"1 " + b"1" * (5 * svmlight._CHUNK), 1),  # no line break at all, over several chunks
])
def test_a_line_past_the_limit_is_named_before_parsing(tmp_path, monkeypatch, never_parsed, text, line):
    monkeypatch.setattr(svmlight, "MAX_LINE_BYTES", 100)
    path = write(tmp_path / "f.svm.gz", text)
    with pytest.raises(SvmlightError, match=f"^{path}:{line}: a line longer than 100 bytes"):
        read_svmlight([path])


def test_features_past_what_a_model_may_hold_name_their_line(tmp_path, monkeypatch):
    monkeypatch.setattr(svmlight, "MAX_MODEL_BYTES", 4 * 2 * 10)  # 2 classes: at most 10 features
    path = write(tmp_path / "f.svm", b"1 1:1 10:1\n2 5:1\n1 11:1\n")
    with pytest.raises(SvmlightError, match=r":3: the feature index 11 is out of range: a model of 2 classes holds "
                                            r"at most 10 features"):
        read_svmlight([path])
    monkeypatch.setattr(svmlight, "MAX_CLASSES", 1)
    with pytest.raises(SvmlightError, match="2 distinct labels, more than the 1 classes"):
        read_svmlight([path])


# ---- the command lines ----


def run(main, capsys, *args):
    """(exit status, stdout, stderr) of a CLI run in-process; argparse's usage errors exit through SystemExit."""
    try:
        status = main([str(a) for a in args])
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def one_line(err, prog, *fragments):
    assert err.startswith(f"{prog}: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture
def files(tmp_path):
    """A training file (gzip) and a test file (bzip2) of three classes; feature 12 is in the test file alone."""
    return (write(tmp_path / "train.svm.gz", drop_feature(rows(240, 1), 12)),
            write(tmp_path / "test.svm.bz2", rows(60, 2)))


def test_train_and_predict_on_svmlight_files(capsys, files, tmp_path):
    train, test = files
    model_path = tmp_path / "m.npz"
    status, out, err = run(train_main, capsys, "--train", train, "--test", test, "--epochs", "3",
                           "--device", "cpu", "--save", model_path)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("train.svm.gz (svmlight, one-based): 240 train / 60 test rows from ")
    assert [line.split()[1] for line in lines if line.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    assert lines[-1].startswith("test accuracy ") and "examples/s" in lines[-1]
    model = fs.SoftmaxRegression.load(model_path)
    assert model.dataset_ == "train.svm.gz (svmlight, one-based)"
    assert model.coef_.shape == (3, 12) and model.classes_.tolist() == [1, 2, 3]
    data = load_svmlight(train, test)
    assert model.history_[-1]["test_acc"] == pytest.approx(model.score(data.x_test, data.y_test))
    assert model.score(data.x_test, data.y_test) > 0.9  # separable classes

    status, out, err = run(predict_main, capsys, "--model", model_path, "--input", test, "--n", "4",
                           "--out", tmp_path / "figs")
    assert status == 0, err
    accuracy = model.score(data.x_test, data.y_test)
    assert f"test accuracy {accuracy:.4f} ({round(accuracy * 60)} of 60)" in out
    assert "accuracy per class:" in out and f"the first 4 rows of {test}" in out
    assert sorted(os.listdir(tmp_path / "figs")) == ["confusion.png"]  # rows are no images: no other figure


def test_train_without_a_test_file_reports_the_training_accuracy(capsys, files):
    status, out, err = run(train_main, capsys, "--train", files[0], "--epochs", "2", "--device", "cpu")
    assert status == 0, err
    assert "240 train rows from" in out and "test acc" not in out
    assert out.splitlines()[-1].startswith("train accuracy ")


def test_train_with_lbfgs(capsys, files):
    status, out, err = run(train_main, capsys, "--train", files[0], "--test", files[1], "--solver", "lbfgs",
                           "--max-iter", "5", "--device", "cpu", "--quiet")
    assert status == 0, err
    assert out.startswith("test accuracy ") and "lbfgs iterations" in out


@pytest.fixture
def model_path(files, tmp_path, capsys):
    """A model trained on the training file alone: 11 features (the 12th is the test file's)."""
    path = tmp_path / "model.npz"
    status, _, err = run(train_main, capsys, "--train", files[0], "--epochs", "2", "--device", "cpu", "--quiet",
                         "--save", path)
    assert status == 0, err
    return path


def test_predict_pads_a_narrower_file_and_refuses_a_wider_one(capsys, model_path, tmp_path):
    narrow = write(tmp_path / "narrow.svm", b"1 1:3\n2 2:1\n")
    status, out, err = run(predict_main, capsys, "--model", model_path, "--input", narrow, "--n", 2,
                           "--out", tmp_path)
    assert status == 0, err
    assert "test accuracy" in out
    wide = write(tmp_path / "wide.svm", b"1 1:3\n2 2:1\n# a comment\n3 12:1\n")  # the model: 11 features
    status, _, err = run(predict_main, capsys, "--model", model_path, "--input", wide, "--out", tmp_path)
    assert status == 1
    one_line(err, PREDICT, f"{wide}:4: the feature index 12 is out of range: the model takes 11 features "
                           "(indices 1..11)")


def test_many_classes_are_scored_without_their_matrix(capsys, model_path, files, tmp_path, monkeypatch):
    monkeypatch.setattr(predict_cli, "MAX_LISTED", 2)  # the model has 3 classes
    monkeypatch.setattr(predict_cli, "MAX_DRAWN_CLASSES", 2)
    status, out, err = run(predict_main, capsys, "--model", model_path, "--input", files[0], "--out", tmp_path / "o")
    assert status == 0, err
    assert "; 3 classes, per class not listed" in out and "accuracy per class" not in out
    assert "confusion.png not drawn: 3 classes, more than the 2 a figure shows" in out
    assert not (tmp_path / "o").exists()


def test_predict_keeps_the_base_of_the_training_file(capsys, tmp_path):
    """A zero-based training file: a file to score without index 0 is read zero-based too, not shifted."""
    train = write(tmp_path / "train.svm", rows(120, 1, zero_based=True))
    model_path = tmp_path / "m.npz"
    assert run(train_main, capsys, "--train", train, "--epochs", "2", "--device", "cpu", "--quiet",
               "--save", model_path)[0] == 0
    model = fs.SoftmaxRegression.load(model_path)
    assert model.dataset_ == "train.svm (svmlight, zero-based)"
    no_zero = write(tmp_path / "score.svm", b"".join(line for line in rows(30, 2, zero_based=True).splitlines(True)
                                                     if b" 0:" not in line))
    assert read_svmlight([no_zero])[1] is False  # scikit-learn's auto would shift its features by one
    (x, y), = read_svmlight([no_zero], n_features=12, zero_based=True)[0]
    status, out, err = run(predict_main, capsys, "--model", model_path, "--input", no_zero, "--out", tmp_path)
    assert status == 0, err
    right = int((model.predict(x) == y).sum())
    assert f"({right} of {len(y)})" in out


def test_predict_refuses_a_label_the_model_does_not_know(capsys, model_path, tmp_path):
    path = write(tmp_path / "f.svm", b"1 1:1\n\n7 2:1\n")
    status, _, err = run(predict_main, capsys, "--model", model_path, "--input", path, "--out", tmp_path)
    assert status == 1
    one_line(err, PREDICT, f"{path}:3: the label 7 is not one of the 3 classes of {model_path} (1, 2, 3)")


@pytest.mark.parametrize("main,prog,args,message", [
    (train_main, TRAIN, ["--train", "T", "--dataset", "mnist"], "--train reads svmlight files, --dataset an idx"),
    (train_main, TRAIN, ["--train", "T", "--data-dir", "D"], "--train reads svmlight files, --data-dir an idx"),
    (train_main, TRAIN, ["--train", "T", "--dask", "local:1"], "--dask an idx data set"),
    (train_main, TRAIN, ["--test", "T"], "--test FILE scores the model of --train FILE; give --train too"),
    (train_main, TRAIN, ["--class-weight", "none"], "argument --class-weight: invalid choice: 'none'"),
    (predict_main, PREDICT, ["--model", "M", "--input", "F", "--dataset", "fashion-mnist"],
     "--input reads an svmlight file, --dataset an idx data set"),
    (predict_main, PREDICT, ["--model", "M", "--input", "F", "--data-dir", "D"], "--data-dir an idx data set"),
])
def test_mixed_flags_are_usage_errors(capsys, main, prog, args, message):
    status, _, err = run(main, capsys, *args)
    assert status == 2
    assert err.startswith(f"{prog}: error: ") and message in err and err.count("\n") == 1


def test_a_sweep_on_svmlight_files_is_refused(capsys, files):
    status, _, err = run(train_main, capsys, "--train", files[0], "--lr", "0.1,0.2", "--device", "cpu")
    assert status == 1
    one_line(err, TRAIN, "a sweep (several --lr or --weight-decay values) trains on an idx data set")


@pytest.mark.skipif("class_weight" in SHARED, reason="sweeps take class_weight")
def test_class_weight_with_a_sweep_is_refused(capsys):
    status, _, err = run(train_main, capsys, "--class-weight", "balanced", "--lr", "0.1,0.2", "--device", "cpu")
    assert status == 1
    one_line(err, TRAIN, "--class-weight trains one model; a sweep")


def test_a_bad_file_is_one_line_with_exit_1(capsys, tmp_path):
    bad = write(tmp_path / "bad.svm.gz", b"1 1:1\n1,3 2:1\n")
    status, out, err = run(train_main, capsys, "--train", bad, "--device", "cpu")
    assert status == 1 and out == ""
    one_line(err, TRAIN, f"{bad}:2: multi-label line")
    status, _, err = run(train_main, capsys, "--train", tmp_path / "nowhere.svm", "--device", "cpu")
    assert status == 1
    one_line(err, TRAIN, "nowhere.svm: no such file")


def test_outputs_over_the_svmlight_files_are_refused(capsys, files, tmp_path):
    train, test = files
    status, _, err = run(train_main, capsys, "--train", train, "--test", test, "--device", "cpu", "--save", test)
    assert status == 1
    one_line(err, TRAIN, f"--save {test} is --test {test}, which this run reads")
    assert bz2.decompress(test.read_bytes())  # untouched


def test_resume_continues_on_the_same_file(capsys, files, tmp_path):
    train, test = files
    part = tmp_path / "part.npz"
    common = ["--train", train, "--test", test, "--device", "cpu", "--quiet", "--schedule", "constant", "--lr", "0.1"]
    assert run(train_main, capsys, *common, "--epochs", "2", "--save", part)[0] == 0
    status, _, err = run(train_main, capsys, "--train", train, "--test", test, "--device", "cpu", "--quiet",
                         "--epochs", "3", "--resume", part, "--save", part)
    assert status == 0, err
    assert [r["epoch"] for r in fs.SoftmaxRegression.load(part).history_] == [1, 2, 3]

    status, _, err = run(train_main, capsys, "--device", "cpu", "--epochs", "4", "--resume", part)
    assert status == 1
    one_line(err, TRAIN, "was trained on the svmlight file train.svm.gz: resume it with --train train.svm.gz")
    other = write(tmp_path / "other.svm", rows(20, 3))
    status, _, err = run(train_main, capsys, "--train", other, "--device", "cpu", "--epochs", "4", "--resume", part)
    assert status == 1
    one_line(err, TRAIN, f"resuming it on --train {other} would change the steps already taken")


def test_class_weight_balanced_reaches_the_model(capsys, files, tmp_path):
    path = tmp_path / "m.npz"
    status, _, err = run(train_main, capsys, "--train", files[0], "--epochs", "1", "--device", "cpu", "--quiet",
                         "--class-weight", "balanced", "--save", path)
    assert status == 0, err
    assert fs.SoftmaxRegression.load(path).get_params()["class_weight"] == "balanced"
