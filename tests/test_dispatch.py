"""Which backend runs an array, what device="auto"/"cpu"/"cuda" resolve to, and the one contract
both backends satisfy (fastsoftmax/ops/dispatch.py).

CuPy is replaced by stand-ins here, so the selection logic is checked on every
machine, with or without CuPy or a GPU.
"""

import inspect
import subprocess
import sys
import types

import numpy as np
import pytest

from fastsoftmax.arrays import device_of
from fastsoftmax.ops import dispatch
from fastsoftmax.ops.dispatch import DeviceError, resolve_device

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
        dispatch._cupy.cache_clear()
        return module

    yield install
    dispatch._cupy.cache_clear()


def test_numpy_arrays_run_on_the_cpu_and_cupy_arrays_on_cuda():
    assert device_of(np.zeros(3), np.zeros((2, 2))) == "cpu"
    assert device_of(FakeCupyArray(), FakeCupyArray()) == "cuda"


def test_a_mix_of_numpy_and_cupy_is_a_clear_error():
    with pytest.raises(TypeError, match="mix of NumPy and CuPy.*cupy.asarray"):
        device_of(np.zeros(3), FakeCupyArray())


@pytest.mark.parametrize(("devices", "available"), [(1, True), (0, False), (RuntimeError("no driver"), False)])
def test_cuda_is_available_only_where_cupy_sees_a_gpu(cupy_is, devices, available):
    cupy_is(fake_cupy(devices))
    assert dispatch.cuda_available() is available
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
        "from fastsoftmax.ops.dispatch import resolve_device; print(resolve_device('auto'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cpu"


def _contract():
    """The Backend protocol's functions and their parameter names (without self)."""
    names = [n for n in vars(dispatch.Backend) if not n.startswith("_")]
    return {n: list(inspect.signature(getattr(dispatch.Backend, n)).parameters)[1:] for n in names}


def _satisfies_the_contract(backend):
    """Each function of the Backend protocol, with the same parameters, in the backend package."""
    contract = _contract()
    assert {"linear_softmax", "linear_logits", "train_epoch", "train_epoch_many", "shuffle"} <= set(contract)
    for function, params in contract.items():
        assert list(inspect.signature(getattr(backend, function)).parameters) == params, function
    assert isinstance(backend, dispatch.Backend)


def test_the_cpu_backend_satisfies_the_contract_and_dispatch_chooses_it():
    from fastsoftmax.backends import cpu

    _satisfies_the_contract(cpu)
    assert dispatch.kernels("cpu") is cpu
    assert dispatch.backend_of(np.zeros(3)) == (np, cpu)


@pytest.mark.cuda
def test_the_cuda_backend_satisfies_the_contract_and_dispatch_chooses_it(cupy_module):
    from fastsoftmax.backends import cuda

    _satisfies_the_contract(cuda)
    assert dispatch.kernels("cuda") is cuda
    assert dispatch.backend_of(cupy_module.zeros(3))[1] is cuda
