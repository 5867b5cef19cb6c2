"""The GPU record: on a machine with a GPU, run the test suite, the full
training and the GPU benchmarks, then write what they measured.

    python -m bench.gpu_record [--out bench/results]   (from the repository root)

writes <out>/<date>-<gpu>.json: "device" (the GPU's name as CUDA reports it),
"tests" {passed, failed, skipped} of the whole suite, "train" (the
`python -m fastsoftmax.train --device cuda` run: test accuracy, times),
"epoch_ms" per peer and "speedup_vs_torch_cuda" from the same benchmark run,
"ten_epochs_ms", "fit_ms" (a whole `SoftmaxRegression(device="cuda",
epochs=10).fit` on Fashion-MNIST already on the GPU, eval set, shuffles and
metrics included, the median of 5 after a warm-up fit; issue 11's target is
10 ms on an H100), and the forward kernel's read-and-write rate against the
card's memory bandwidth. The benchmark table itself goes beside it, through
report.py (<date>-gpu-<N>core.{json,md,png}).

Each step runs in its own process, so a crash in one leaves the others' results
(the record gives every step's exit status).
It needs the test dependencies and the data set where it runs: on a machine
without internet, carry a wheelhouse built here for its Python, e.g.
`pip download hypothesis tqdm matplotlib --only-binary=:all: --python-version 3.12
--platform manylinux2014_x86_64 -d wheels` (26 MB without the NumPy wheel,
which such an image has), then there `pip install --no-index --find-links wheels
hypothesis tqdm matplotlib`, and set FASTSOFTMAX_DATA to a folder holding the
four Fashion-MNIST files (30 MB).
"""

import argparse
import json
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

from bench import report
from fastsoftmax.io.atomic import atomic_write

ROOT = Path(__file__).resolve().parent.parent

EPOCH_GROUP = "train_epoch gpu batch=256"
FORWARD_GROUP = "linear_softmax gpu n=60000"
# What the forward kernel must move on Fashion-MNIST's training set: X read once
# as uint8 (60000 x 784) and P written as float32 (60000 x 10).
FORWARD_BYTES = 60000 * 784 + 60000 * 10 * 4


def count_outcomes(junit_xml):
    """{passed, failed, skipped} from pytest's --junitxml report (errors count as failed)."""
    root = ET.parse(junit_xml).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    total = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    failed = total["failures"] + total["errors"]
    return {"passed": total["tests"] - failed - total["skipped"], "failed": failed, "skipped": total["skipped"]}


def gpu_figures(groups, card_bytes_per_s):
    """Epoch times, the speedup over PyTorch CUDA eager and the forward kernel's
    bandwidth share, from report.load's groups of one benchmark run."""
    epoch = {peer: b["stats"]["median"] * 1e3 for peer, b in groups.get(EPOCH_GROUP, {}).items()}
    if "fastsoftmax" not in epoch or "torch" not in epoch:
        raise ValueError(f"the benchmark run lacks {EPOCH_GROUP!r} for fastsoftmax and torch: {sorted(epoch)}")
    figures = {
        "epoch_ms": epoch,
        "speedup_vs_torch_cuda": epoch["torch"] / epoch["fastsoftmax"],
        "ten_epochs_ms": 10 * epoch["fastsoftmax"],
    }
    forward = groups.get(FORWARD_GROUP, {}).get("fastsoftmax")
    if forward is not None:
        rate = FORWARD_BYTES / forward["stats"]["median"]
        figures["forward_n60000"] = {
            "ms": forward["stats"]["median"] * 1e3,
            "gb_per_s": rate / 1e9,
            "card_gb_per_s": card_bytes_per_s / 1e9,
            "fraction_of_card_bandwidth": rate / card_bytes_per_s,
        }
    return figures


def time_fit(path, repeats=5):
    """Writes to path the median milliseconds of a 10-epoch fit on Fashion-MNIST
    held on the GPU (the warm-up fit compiles), and its test accuracy."""
    import statistics
    import time

    import cupy as cp

    import fastsoftmax as fs

    data = fs.load_dataset("fashion-mnist")
    X, y, X_test, y_test = (cp.asarray(a) for a in (data.x_train, data.y_train, data.x_test, data.y_test))
    model = fs.SoftmaxRegression(device="cuda", epochs=10)
    seconds = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        model.fit(X, y, eval_set=(X_test, y_test))
        model.coef_  # noqa: B018 (the weights reach the host: the end of a fit a user sees)
        seconds.append(time.perf_counter() - start)
    result = {"fit_ms": statistics.median(seconds[1:]) * 1e3, "first_fit_ms": seconds[0] * 1e3,
              "test_acc": model.history_[-1]["test_acc"]}
    Path(path).write_text(json.dumps(result))


def card_bandwidth():
    """The GPU's peak memory bandwidth in bytes/s: 2 transfers a clock over the bus."""
    import cupy

    properties = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    kilohertz, bus_bits = properties["memoryClockRate"], properties["memoryBusWidth"]
    return 2 * kilohertz * 1e3 * bus_bits / 8


def step(*args):
    """Run `python args...` from the repository root; its output goes to ours."""
    print("+ python", " ".join(args), flush=True)
    return subprocess.run([sys.executable, *args], cwd=ROOT, check=False).returncode


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for the record")
    p.add_argument("--time-fit", metavar="PATH", help=argparse.SUPPRESS)  # the fit step, in its own process
    args = p.parse_args(argv)
    if args.time_fit:
        return time_fit(args.time_fit)
    from fastsoftmax.ops.dispatch import cuda_available, gpu_name

    if not cuda_available():
        p.exit(1, "gpu_record.py needs CuPy and a CUDA GPU; none is here\n")
    name, card = gpu_name(), card_bandwidth()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"device": name, "date": date.today().isoformat()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        record["exit_status"] = {
            "tests": step("-m", "pytest", "tests", "-q", "-p", "no:cacheprovider", f"--junitxml={tmp / 'tests.xml'}"),
            "train": step("-m", "fastsoftmax.train", "--device", "cuda", "--quiet", "--json", str(tmp / "train.json")),
            "fit": step("-m", "bench.gpu_record", "--time-fit", str(tmp / "fit.json")),
            "bench": step("-m", "pytest", "bench", "-o", "python_files=bench_*.py", "-k", "gpu",
                          "-p", "no:cacheprovider", f"--benchmark-json={tmp / 'bench.json'}"),
        }
        # A step that crashed leaves no output: its part of the record is missing, its exit status says so.
        if (tmp / "tests.xml").exists():
            record["tests"] = count_outcomes(tmp / "tests.xml")
        if (tmp / "train.json").exists():
            train = json.loads((tmp / "train.json").read_text())
            record["train"] = {key: train[key] for key in ("test_acc", "train_acc", "seconds", "median_epoch_seconds")}
        if (tmp / "fit.json").exists():
            record["fit"] = json.loads((tmp / "fit.json").read_text())
        if (tmp / "bench.json").exists():
            step(str(ROOT / "bench" / "report.py"), str(tmp / "bench.json"), "--out", str(out))
            groups, run = report.load(tmp / "bench.json")
            try:
                record.update(gpu_figures(groups, card))
            except ValueError as e:
                record["bench_error"] = str(e)
            record["benchmarks"] = report.name(run, groups) + ".md"
            record["versions"] = run["machine_info"].get("fastsoftmax", {}).get("versions", {})
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    path = out / f"{record['date']}-{slug}.json"
    with atomic_write(path, "w") as f:
        json.dump(record, f, indent=2)
    print(json.dumps(record, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
