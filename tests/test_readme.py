"""The README's Python examples run as the reader would run them, and what its prose claims of them checked.

Every ```python block of README.md runs here (test_every_readme_block_is_run keeps it so), in the
README's order, each in a fresh namespace that holds `fs` and `data`: the names the examples share,
defined at the top of "The kernel API" and used undefined by the sweep's example (earlier in the file)
and the estimator's. Each block runs in a temporary working folder (its save() calls write there). The
blocks train on the full Fashion-MNIST, as written: the longest (the estimator's, lbfgs on 60000
images) takes ~10 s on 2 cores, so no block needs a smaller slice. The Dask example cannot reach its
scheduler's address here: its Client is given a LocalCluster in this process instead (as its comment
offers), and the raw idx files it names are the first 2000 training images, written where it reads them.
The package docstring's example (fastsoftmax/__init__.py) runs as a doctest.
"""

import doctest
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from idxdata import write_idx
from sklearn.exceptions import ConvergenceWarning

import fastsoftmax as fs
from fastsoftmax.reference import kernels as ref

README = Path(__file__).resolve().parents[1] / "README.md"
DASK, SWEEP, TEXT, KERNELS, ESTIMATOR, TORCH, JAX = "dask", "sweep", "text", "kernels", "estimator", "torch", "jax"
# Each block by its section's heading and its place there: a new block fails test_every_readme_block_is_run
# until it is named here and run.
BLOCKS = {("More than one machine: Dask", 0): DASK, ("Many models in one pass: sweeps", 0): SWEEP,
          ("Text and other sparse data", 0): TEXT,
          ("The kernel API", 0): KERNELS, ("The kernel API", 1): ESTIMATOR,
          ("Inside PyTorch and JAX", 0): TORCH, ("Inside PyTorch and JAX", 1): JAX}
DASK_ROWS = 2000


def readme_blocks():
    """{name in BLOCKS or the block's (heading, place): (first line in README.md, code)}, in README order."""
    text = README.read_text()
    blocks, heading, place = {}, None, 0
    # Every fence is matched whole, so that a "# comment" line inside one is never taken for a heading.
    for match in re.finditer(r"^(#+) ([^\n]*)$|^```(\w*)\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL):
        if match[1]:
            heading, place = match[2].strip(), 0
        elif match[3] == "python":
            line = text.count("\n", 0, match.start(4)) + 1
            blocks[BLOCKS.get((heading, place), (heading, place))] = (line, match[4])
            place += 1
    return blocks


def run_block(name, namespace):
    """Run the block in `namespace`; a traceback names README.md and the line that failed."""
    line, code = readme_blocks()[name]
    exec(compile("\n" * (line - 1) + code, str(README), "exec"), namespace)  # noqa: S102 - running the README is the job
    return namespace


@pytest.fixture
def namespace(fashion_mnist, tmp_path, monkeypatch):
    """What a block starts from: `fs` and `data`, in a working folder of its own, no downloads."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FASTSOFTMAX_NO_DOWNLOAD", "1")
    return {"__name__": "readme", "fs": fs, "data": fashion_mnist}


def test_every_readme_block_is_run():
    assert list(readme_blocks()) == [DASK, SWEEP, TEXT, KERNELS, ESTIMATOR, TORCH, JAX]


def test_the_text_example_classifies_as_its_comment_says(namespace, capsys):
    run_block(TEXT, namespace)
    assert capsys.readouterr().out.strip() == "['spam' 'ham']"


def test_the_package_docstring_example_runs():
    failed, attempted = doctest.testmod(fs)
    assert attempted >= 1 and failed == 0


def test_the_kernel_example_computes_what_its_comments_say(namespace):
    """softmax_cross_entropy takes logits: its loss is the fused kernel's and the float64 reference's
    (given the probabilities P, as the example once did, it says 2.03 where these weights' loss is 4.30)."""
    ns = run_block(KERNELS, namespace)
    X, y, W, b, P, Z = (ns[k] for k in ("X", "y", "W", "b", "P", "Z"))
    assert X.dtype == np.uint8 and W.dtype == np.float32 and np.abs(W).max() > 0  # trained in place
    logits = ref.linear_logits(X, W, b, x_scale=1 / 255)
    np.testing.assert_allclose(Z, logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(P, ref.linear_softmax(X, W, b, x_scale=1 / 255), atol=1e-6)
    true_loss, true_dlogits = ref.softmax_cross_entropy(logits, y)
    fused_loss = fs.linear_softmax_cross_entropy(X, W, b, y, x_scale=1 / 255)[0]
    assert float(ns["loss"]) == pytest.approx(true_loss, rel=1e-5)
    assert float(ns["loss"]) == pytest.approx(float(fused_loss), rel=1e-5)
    np.testing.assert_allclose(ns["dlogits"], true_dlogits, atol=1e-6)
    assert ns["acc"] == ref.accuracy(logits, y)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # lbfgs at max_iter=100, as said
def test_the_estimator_example(namespace):
    """The model saved and loaded is the one fitted (its last epoch's test accuracy is the loaded
    model's score); the grid search chooses from its grid; lbfgs runs LogisticRegression's iterations."""
    ns = run_block(ESTIMATOR, namespace)
    data, model = ns["data"], ns["model"]  # model: the one loaded from model.npz
    assert model.coef_.shape == (10, 784) and len(model.history_) == 15
    assert model.score(data.x_test, data.y_test) == pytest.approx(model.history_[-1]["test_acc"])
    best = ns["grid"].best_params_
    assert best["softmaxregression__lr"] in (0.05, 0.5) and best["softmaxregression__weight_decay"] in (0, 1e-4)
    assert 1 <= ns["exact"].n_iter_ <= 100 and ns["exact"].coef_.dtype == np.float64  # uint8 X: float64


@pytest.mark.slow
def test_the_sweep_example(namespace):
    """One model per (lr, weight decay), each with val_acc per epoch; the best is the highest validation
    accuracy, an ordinary SoftmaxRegression that saves and loads."""
    ns = run_block(SWEEP, namespace)
    sweep, model = ns["sweep"], ns["model"]
    scores = sweep.cv_results_["mean_test_score"]
    assert len(scores) == 6 and sweep.best_score_ == np.nanmax(scores)
    assert set(sweep.best_params_) == {"lr", "weight_decay"} and isinstance(model, fs.SoftmaxRegression)
    assert all("val_acc" in record for m in sweep.estimators_ for record in m.history_)
    loaded = fs.SoftmaxRegression.load("best.npz")
    np.testing.assert_array_equal(loaded.predict(ns["data"].x_test), model.predict(ns["data"].x_test))


@pytest.fixture
def local_client(monkeypatch, fashion_mnist):
    """The Dask example's Client("tcp://scheduler:8786") as a 2-worker LocalCluster in this process, and
    its raw idx files as the first DASK_ROWS training images, in the working folder."""
    distributed = pytest.importorskip("distributed")
    write_idx("train-images-idx3-ubyte", fashion_mnist.x_train[:DASK_ROWS].reshape(-1, 28, 28))
    write_idx("train-labels-idx1-ubyte", fashion_mnist.y_train[:DASK_ROWS])
    opened = []

    def client(address):
        assert address == "tcp://scheduler:8786", address  # the README's placeholder, nothing else
        opened.append(distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                               dashboard_address=None))
        opened.append(distributed.Client(opened[-1]))
        return opened[-1]

    monkeypatch.setattr("dask.distributed.Client", client)
    yield
    for thing in reversed(opened):
        thing.close()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # lbfgs at max_iter=100
def test_the_dask_example(namespace, local_client):
    """lbfgs on the chunks reaches the in-memory lbfgs's model (both stop at max_iter=100, short of the
    optimum, where the chunks' other order of sums has moved the path by ~1e-5); predict is lazy, score
    computed."""
    import dask.array as da

    ns = run_block(DASK, namespace)
    X, y, model = ns["X"], ns["y"], ns["model"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        expected = fs.SoftmaxRegression(solver="lbfgs").fit(X.compute(), y.compute())
    np.testing.assert_allclose(model.coef_, expected.coef_, atol=1e-4 * np.abs(expected.coef_).max())
    assert model.history_[-1]["loss"] == pytest.approx(expected.history_[-1]["loss"], rel=1e-5)
    assert isinstance(model.predict(X), da.Array)
    assert model.score(X, y) == pytest.approx(expected.score(X.compute(), y.compute()), abs=2 / DASK_ROWS)


def test_the_pytorch_loop_trains_through_the_fused_head(namespace):
    torch = pytest.importorskip("torch")
    ns = run_block(TORCH, namespace)
    with torch.no_grad():
        logits = ns["head"](ns["body"](ns["x"]))
        assert float((logits.argmax(1) == ns["y"]).float().mean()) > 0.75  # 3 epochs of 4096 images


def test_the_jax_loop_trains(namespace):
    pytest.importorskip("jax")
    ns = run_block(JAX, namespace)
    params, x, y = ns["params"], ns["x"], ns["y"]
    assert float(ns["loss"]) < 0.9 and float(((x @ params["w"].T + params["b"]).argmax(1) == y).mean()) > 0.7
