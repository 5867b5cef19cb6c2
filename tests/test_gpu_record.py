"""bench/gpu_record.py, checked where no GPU is: the test counts it reads from
pytest's JUnit XML, the figures it takes from a benchmark run, and its timed
fit (on the CUDA emulator)."""

import json
import subprocess
import sys

import pytest

from bench import gpu_record

SAMPLE_TESTS = """
import pytest

@pytest.fixture
def broken():
    raise RuntimeError("set-up fails")

def test_passes(): pass
def test_passes_too(): pass
def test_fails(): assert False
def test_errors(broken): pass
def test_skips(): pytest.skip("no GPU")
"""


def test_outcomes_are_counted_from_pytests_junit_report(tmp_path):
    (tmp_path / "test_sample.py").write_text(SAMPLE_TESTS)
    xml = tmp_path / "report.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path),
                    f"--junitxml={xml}"], capture_output=True, check=False)
    assert gpu_record.count_outcomes(xml) == {"passed": 2, "failed": 2, "skipped": 1}


def bench(median_s):
    return {"stats": {"median": median_s}}


def test_figures_give_the_speedup_over_torch_and_the_bandwidth_share():
    groups = {
        gpu_record.EPOCH_GROUP: {"fastsoftmax": bench(0.8e-3), "torch": bench(20e-3), "cupy naive": bench(40e-3)},
        gpu_record.FORWARD_GROUP: {"fastsoftmax": bench(gpu_record.FORWARD_BYTES / 2.5e12)},
    }
    figures = gpu_record.gpu_figures(groups, card_bytes_per_s=3.35e12)
    assert figures["epoch_ms"] == pytest.approx({"fastsoftmax": 0.8, "torch": 20, "cupy naive": 40})
    assert figures["speedup_vs_torch_cuda"] == pytest.approx(25)
    assert figures["ten_epochs_ms"] == pytest.approx(8)
    assert figures["forward_n60000"]["gb_per_s"] == pytest.approx(2500)
    assert figures["forward_n60000"]["fraction_of_card_bandwidth"] == pytest.approx(2.5 / 3.35)


def test_a_run_without_the_torch_epoch_is_an_error_not_a_record():
    with pytest.raises(ValueError, match="lacks 'train_epoch gpu batch=256' for fastsoftmax and torch"):
        gpu_record.gpu_figures({gpu_record.EPOCH_GROUP: {"fastsoftmax": bench(1e-3)}}, card_bytes_per_s=1e12)


@pytest.mark.cuda
def test_the_fit_step_times_whole_fits_on_the_device(cupy_module, monkeypatch, tmp_path):
    """gpu_record's fit step, run on the emulator with a small stand-in for Fashion-MNIST."""
    import types

    import numpy as np

    import fastsoftmax as fs

    rng = np.random.default_rng(0)
    data = types.SimpleNamespace(x_train=rng.integers(0, 256, (300, 16), dtype=np.uint8), y_train=rng.integers(0, 3, 300),
                                 x_test=rng.integers(0, 256, (50, 16), dtype=np.uint8), y_test=rng.integers(0, 3, 50))
    monkeypatch.setattr(fs, "load_dataset", lambda name: data)
    gpu_record.time_fit(tmp_path / "fit.json", repeats=1)
    result = json.loads((tmp_path / "fit.json").read_text())
    assert result["fit_ms"] > 0 and result["first_fit_ms"] > 0 and 0 <= result["test_acc"] <= 1
