"""End to end on the real Fashion-MNIST: the defaults must reach 0.84 test accuracy.

Skipped, with the reason, where the files are absent (`make test` installs
Debian's dataset-fashion-mnist first, so they are present there).
"""

import pytest

import fastsoftmax as fs
from fastsoftmax.ops.dispatch import cuda_available


@pytest.fixture
def fashion(fashion_mnist):
    return fashion_mnist


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_defaults_reach_084_test_accuracy(fashion, device):
    if device == "cuda" and not cuda_available():
        pytest.skip("60000 images x 15 epochs need a real GPU; without one the CUDA backend trains a subset "
                    "in emulation (test_cuda.py::test_train_cli_on_cuda_reaches_the_cpu_accuracy)")
    model = fs.SoftmaxRegression(device=device)
    model.fit(fashion.x_train, fashion.y_train, eval_set=(fashion.x_test, fashion.y_test))
    acc = model.history_[-1]["test_acc"]
    print(f"{device}: test accuracy {acc:.4f} after {len(model.history_)} epochs")
    assert acc >= 0.84
    assert model.score(fashion.x_test, fashion.y_test) == pytest.approx(acc)
