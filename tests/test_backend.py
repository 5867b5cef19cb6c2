"""Which backend runs an array, and what device="auto"/"cpu"/"cuda" resolve to.

CuPy is replaced by stand-ins here, so the selection logic is checked on every
machine, with or without CuPy or a GPU.
"""

import ast
import inspect
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from fastsoftmax import backend
from fastsoftmax.backend import DeviceError, device_of, resolve_device

# An array type that says it is CuPy's, the way is_device_array tells.
FakeCupyArray = type("ndarray", (), {"__module__": "cupy._core.core"})


def fake_cupy(devices):
    """A module standing in for cupy whose runtime reports `devices` GPUs (or raises it)."""

    def get_device_count():
        if isinstance(devices, Exception):
            raise devices
        return devices

    runtime = types.SimpleNamespace(getDeviceCount=get_device_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


@pytest.fixture
def cupy_is(monkeypatch):
    """cupy_is(module or None): what `import cupy` gives (None: it fails), with the probe's cache cleared."""

    def install(module):
        monkeypatch.setitem(sys.modules, "cupy", module)
        backend._cupy.cache_clear()
        return module

    yield install
    backend._cupy.cache_clear()


def test_numpy_arrays_run_on_the_cpu_and_cupy_arrays_on_cuda():
    assert device_of(np.zeros(3), np.zeros((2, 2))) == "cpu"
    assert device_of(FakeCupyArray(), FakeCupyArray()) == "cuda"


def test_a_mix_of_numpy_and_cupy_is_a_clear_error():
    with pytest.raises(TypeError, match="mix of NumPy and CuPy.*cupy.asarray"):
        device_of(np.zeros(3), FakeCupyArray())


@pytest.mark.parametrize(("devices", "available"), [(1, True), (0, False), (RuntimeError("no driver"), False)])
def test_cuda_is_available_only_where_cupy_sees_a_gpu(cupy_is, devices, available):
    cupy_is(fake_cupy(devices))
    assert backend.cuda_available() is available
    assert resolve_device("auto") == ("cuda" if available else "cpu")
    assert resolve_device("cpu") == "cpu"


def test_without_cupy_auto_is_the_cpu_and_cuda_says_how_to_install_it(cupy_is):
    cupy_is(None)  # `import cupy` raises ImportError
    assert resolve_device("auto") == "cpu"
    with pytest.raises(DeviceError, match=r"needs CuPy.*pip install fastsoftmax\[cuda13\].*--device cpu"):
        resolve_device("cuda")


def test_cupy_without_a_gpu_says_so(cupy_is):
    cupy_is(fake_cupy(0))
    with pytest.raises(DeviceError, match="needs a CUDA GPU.*--device cpu"):
        resolve_device("cuda")


@pytest.mark.parametrize("device", ["gpu", "CUDA", ""])
def test_unknown_device_names_the_choices(device):
    with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda"):
        resolve_device(device)


def test_the_package_imports_and_trains_where_cupy_cannot_be_imported():
    code = (
        "import sys; sys.modules['cupy'] = None\n"  # makes `import cupy` fail
        "import numpy as np, fastsoftmax as fs\n"
        "X = np.random.default_rng(0).integers(0, 256, (64, 5), dtype=np.uint8); y = np.arange(64) % 3\n"
        "model = fs.SoftmaxRegression(epochs=2, batch_size=16).fit(X, y)\n"
        "assert model.predict(X).shape == (64,)\n"
        "print(fs.backend.resolve_device('auto'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cpu"


def _contract():
    """The Backend protocol's functions and their parameter names (without self)."""
    names = [n for n in vars(backend.Backend) if not n.startswith("_")]
    return {n: list(inspect.signature(getattr(backend.Backend, n)).parameters)[1:] for n in names}


def _module_functions(path):
    """The top-level functions of a module's source and their parameter names, read without importing it."""
    tree = ast.parse(path.read_text())
    return {f.name: [a.arg for a in f.args.args] for f in tree.body if isinstance(f, ast.FunctionDef)}


@pytest.mark.parametrize("name", ["cpu", "cuda"])
def test_both_backends_satisfy_the_contract(name):
    """Each backend defines every function of backend.Backend with the same parameters
    (read from the source, so the CUDA backend is checked where CuPy is missing too)."""
    contract = _contract()
    assert {"linear_softmax", "train_epoch", "shuffle"} <= set(contract)
    functions = _module_functions(Path(backend.__file__).parent / f"{name}.py")
    for function, params in contract.items():
        assert functions.get(function) == params, f"{name}.{function}"


def test_the_cpu_backend_is_a_backend_and_ops_imports_it_by_name():
    from fastsoftmax import cpu, ops

    assert isinstance(cpu, backend.Backend)
    assert ops.kernels("cpu") is cpu


def test_only_ops_calls_a_backend():
    """Above ops, no module of the package or the benchmarks calls a backend's
    contract functions: they are reached through ops alone."""
    root = Path(backend.__file__).parent.parent
    names = "|".join(_contract())
    call = re.compile(rf"\b(cpu|cuda|kernels|backend)\.({names})\(|from (fastsoftmax)?\.?(cpu|cuda) import .*\b({names})\b")
    callers = sorted(str(p.relative_to(root)) for p in [*root.glob("fastsoftmax/*.py"), *root.glob("bench/*.py")]
                     if p.name not in ("cpu.py", "cuda.py") and call.search(p.read_text()))
    assert callers == ["fastsoftmax/ops.py"]
