"""fastsoftmax.torch: linear_cross_entropy against PyTorch's own unfused ops, its gradients by gradcheck, under
torch.compile, and the public kernels taking tensors through DLPack."""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fastsoftmax as fs  # noqa: E402
from fastsoftmax.backends import cpu  # noqa: E402
from fastsoftmax.backends.cpu import cross_entropy as cpu_cross_entropy  # noqa: E402
from fastsoftmax.torch import LinearCrossEntropyLoss, linear_cross_entropy  # noqa: E402

REDUCTIONS = ("mean", "sum", "none")


def problem(n, d, k, dtype=torch.float64, seed=0, ignored=True, bias=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype).requires_grad_()
    weight = (torch.randn(k, d, generator=g, dtype=dtype) / d**0.5).requires_grad_()
    b = torch.randn(k, generator=g, dtype=dtype).requires_grad_() if bias else None
    target = torch.randint(0, k, (n,), generator=g)
    if ignored:
        target[::4] = -100
    return x, weight, target, b


def unfused(x, weight, target, bias, **options):
    return F.cross_entropy(F.linear(x, weight, bias), target, **options)


@pytest.fixture
def chunks_of_five(monkeypatch):
    """Rows in chunks of 5, so that every case crosses chunk boundaries (and ends on a shorter chunk)."""
    monkeypatch.setattr(cpu_cross_entropy, "chunk_rows", lambda n, *shape: 5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("n,d,k", [(1, 1, 2), (13, 4, 3), (12, 3, 37)])
def test_gradcheck(chunks_of_five, n, d, k, reduction, smoothing):
    x, weight, target, bias = problem(n, d, k, ignored=n > 1)
    assert torch.autograd.gradcheck(
        lambda x, w, b: linear_cross_entropy(x, w, target, b, reduction=reduction, label_smoothing=smoothing),
        (x, weight, bias))


@pytest.mark.parametrize("k", [257, 4096])
def test_gradcheck_many_classes(chunks_of_five, k):
    """fast_mode: gradcheck along random directions, where k x d weights are too many to perturb one by one."""
    x, weight, target, bias = problem(11, 3, k, seed=k)
    for reduction in REDUCTIONS:
        assert torch.autograd.gradcheck(
            lambda x, w, b: linear_cross_entropy(x, w, target, b, reduction=reduction, label_smoothing=0.1),
            (x, weight, bias), fast_mode=True)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("n,d,k", [(1, 7, 2), (37, 16, 10), (300, 64, 1000), (5, 8, 131072)])
def test_float32_matches_the_unfused_ops(n, d, k, reduction):
    """Within 1e-5 (relative to the largest value) of the unfused ops run on the same float32 values in float64;
    the unfused float32 ops themselves are off by up to 3e-5 at k = 131072 (their grad_input sums k float32
    products; ours sums a row's softmax in float64), so against them the bound is 1e-4."""
    x, weight, target, bias = problem(n, d, k, dtype=torch.float32, ignored=n > 1)
    options = {"reduction": reduction, "label_smoothing": 0.05}
    cotangent = torch.linspace(0.5, 1.5, n) if reduction == "none" else torch.tensor(1.0)
    ours = linear_cross_entropy(x, weight, target, bias, **options)
    results = [ours, *torch.autograd.grad(ours, (x, weight, bias), cotangent)]
    for dtype, tolerance in ((torch.float64, 1e-5), (torch.float32, 1e-4)):
        inputs = [a.detach().to(dtype).requires_grad_() for a in (x, weight, bias)]
        theirs = unfused(inputs[0], inputs[1], target, inputs[2], **options)
        expected = [theirs, *torch.autograd.grad(theirs, inputs, cotangent.to(dtype))]
        for got, want in zip(results, expected):
            torch.testing.assert_close(got.to(dtype), want, rtol=tolerance, atol=tolerance * float(want.detach().abs().max()))


def test_leading_dimensions_no_bias_and_frozen_input():
    x, weight, target, _ = problem(24, 5, 6, ignored=True, bias=False)
    x3, t3 = x.detach().reshape(2, 3, 4, 5), target.reshape(2, 3, 4)  # a frozen input: no grad_input computed
    loss = linear_cross_entropy(x3, weight, t3, reduction="none")
    assert loss.shape == (2, 3, 4)
    loss.sum().backward()
    expected = unfused(x.detach(), weight.detach().requires_grad_(), target, None, reduction="sum")
    torch.testing.assert_close(loss.sum(), expected)
    assert weight.grad is not None and x.grad is None


def test_no_grad_computes_the_loss_alone(monkeypatch):
    x, weight, target, bias = problem(9, 4, 3)
    seen = []
    real = cpu.linear_cross_entropy
    monkeypatch.setattr(cpu, "linear_cross_entropy", lambda *a: seen.append(a[5]) or real(*a))
    with torch.no_grad():
        loss = linear_cross_entropy(x, weight, target, bias)
    assert seen == [None]  # no row scales: no gradient computed
    torch.testing.assert_close(loss, unfused(x, weight, target, bias).detach())


def test_every_row_ignored_gives_nan_as_pytorch():
    x, weight, target, bias = problem(4, 3, 2)
    target[:] = -100
    assert torch.isnan(linear_cross_entropy(x, weight, target, bias))
    assert torch.isnan(unfused(x, weight, target, bias))


def test_module_under_torch_compile_fullgraph():
    x, weight, target, bias = problem(20, 6, 5, dtype=torch.float32)

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(6, 5)
            self.loss = LinearCrossEntropyLoss(label_smoothing=0.1)

        def forward(self, x, target):
            return self.loss(torch.tanh(x), self.linear.weight, target, self.linear.bias)

    head = Head()
    compiled = torch.compile(head, fullgraph=True)
    loss = compiled(x, target)
    loss.backward()
    grads = [p.grad.clone() for p in head.parameters()]
    head.zero_grad()
    expected = unfused(torch.tanh(x), head.linear.weight, target, head.linear.bias, label_smoothing=0.1)
    expected.backward()
    torch.testing.assert_close(loss, expected)
    for got, param in zip(grads, head.parameters()):
        torch.testing.assert_close(got, param.grad)


@pytest.mark.parametrize("call, error, message", [
    (lambda x, w, t, b: linear_cross_entropy(x, w, t, b, reduction="avg"), ValueError, "reduction must be"),
    (lambda x, w, t, b: linear_cross_entropy(x, w[:, :-1], t, b), ValueError, "share their features"),
    (lambda x, w, t, b: linear_cross_entropy(x, w, t[:-1], b), ValueError, "target must have"),
    (lambda x, w, t, b: linear_cross_entropy(x.bfloat16(), w.bfloat16(), t, b), TypeError, "float32"),
    (lambda x, w, t, b: linear_cross_entropy(x, w, t + 50, b), ValueError, "outside"),
    (lambda x, w, t, b: linear_cross_entropy(x, w, t, b, label_smoothing=-0.1), ValueError, "label_smoothing"),
])
def test_bad_input_is_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call(*problem(8, 3, 4))


def test_raw_kernels_take_tensors_without_a_copy():
    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.standard_normal((30, 4)).astype(np.float32))
    W = torch.from_numpy(rng.standard_normal((4, 3)).astype(np.float32))
    b, y = torch.zeros(3), torch.from_numpy(rng.integers(0, 3, 30))
    P = fs.linear_softmax(X, W, b)
    assert isinstance(P, torch.Tensor)
    torch.testing.assert_close(P, torch.softmax(X @ W + b, dim=1))
    loss, correct, dW, db = fs.linear_softmax_cross_entropy(X, W, b, y)
    assert all(isinstance(a, torch.Tensor) for a in (loss, correct, dW, db)) and loss.shape == ()
    torch.testing.assert_close(loss, F.cross_entropy(X @ W + b, y))
    assert fs.accuracy(P, y) == int((P.argmax(1) == y).sum()) / 30
    transposed = torch.from_numpy(np.asarray(W.numpy().T.copy())).T  # strided: copied once by the checks
    torch.testing.assert_close(fs.linear_logits(X, transposed, b), X @ W + b)
    before = W.data_ptr()
    fs.train_epoch(X, y, W, b, batch_size=8, lr=0.5, seed=0)  # in place, in the tensor's own memory
    assert W.data_ptr() == before and float(F.cross_entropy(X @ W + b, y)) < float(loss)


def test_raw_kernels_refuse_a_tensor_that_requires_grad():
    X, W = torch.randn(5, 3, requires_grad=True), torch.randn(3, 2)
    with pytest.raises(TypeError, match="requires grad.*fastsoftmax.torch.linear_cross_entropy"):
        fs.linear_softmax(X, W, torch.zeros(2))


def test_importing_fastsoftmax_imports_neither_torch_nor_jax():
    code = "import sys, fastsoftmax, fastsoftmax.ops; print('torch' in sys.modules, 'jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_second_backward_through_the_same_loss_computes_again():
    """The forward pass's gradients are scaled in place and handed on by the first backward pass; a second one
    (retain_graph=True) must compute them again, not reuse them scaled."""
    x, weight, target, bias = problem(10, 4, 3)
    loss = linear_cross_entropy(x, weight, target, bias, label_smoothing=0.1)
    first = torch.autograd.grad(2 * loss, (x, weight, bias), retain_graph=True)
    second = torch.autograd.grad(3 * loss, (x, weight, bias))
    expected = torch.autograd.grad(unfused(x, weight, target, bias, label_smoothing=0.1), (x, weight, bias))
    for a, b, e in zip(first, second, expected):
        torch.testing.assert_close(a, 2 * e)
        torch.testing.assert_close(b, 3 * e)
