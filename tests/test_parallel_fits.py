"""Fits in parallel, every way Python runs them: a fork() child after its parent ran the kernels,
multiprocessing pools (fork and spawn), joblib's three backends, 4 threads at once. Each gives the
serial result bit for bit, within a time limit (a hang is a failure, not a stuck suite).

The kernels' threading layer (TBB, fastsoftmax/backends/tbb.py) is what makes the fork child
possible: under GNU OpenMP the child was killed ("fork() called from a process already using GNU
OpenMP") and a fork pool never returned.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
# The parent fits first, so that the kernels and the threading layer are running before any child.
PARENT = """
import os, sys
import numpy as np
from parallelfits import fit
serial = [fit(seed) for seed in range(4)]

def check(results):
    assert all(np.array_equal(a, b) for a, b in zip(results, serial)), "a parallel fit differs from its serial run"
    print("same as serial")
"""
RUNS = {
    "fork child": """
pid = os.fork()
if pid == 0:
    os._exit(0 if np.array_equal(fit(1), serial[1]) else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, f"the child ended with {status}"
check(serial)
""",
    "multiprocessing fork": """
import multiprocessing
with multiprocessing.get_context("fork").Pool(2) as pool:
    check(pool.map(fit, range(4)))
""",
    "multiprocessing spawn": """
import multiprocessing
if __name__ == "__main__":
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        check(pool.map(fit, range(4)))
""",
    "joblib multiprocessing": """
import joblib
check(joblib.Parallel(n_jobs=2, backend="multiprocessing")(joblib.delayed(fit)(s) for s in range(4)))
""",
    "joblib loky": """
import joblib
check(joblib.Parallel(n_jobs=2, backend="loky")(joblib.delayed(fit)(s) for s in range(4)))
""",
    "joblib threading": """
import joblib
check(joblib.Parallel(n_jobs=4, backend="threading")(joblib.delayed(fit)(s) for s in range(4)))
""",
    "4 threads": """
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(4) as pool:
    check(list(pool.map(fit, range(4))))
""",
}


@pytest.mark.parametrize("run", RUNS)
def test_parallel_fits_equal_the_serial_ones(run, tmp_path):
    script = tmp_path / "run.py"  # a file, so that spawned children can import __main__
    script.write_text(PARENT + RUNS[run])
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env,
                          check=False)
    assert proc.returncode == 0 and "same as serial" in proc.stdout, proc.stderr[-2000:]
