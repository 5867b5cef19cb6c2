"""The Fashion-MNIST epoch on a shared machine: 2 threads against 1, by threading layer and load.

    python -m bench.contention [--busy 0 1 8] [--layers omp tbb] [--rounds 4]

For each load (that many busy processes, ``while True: pass``, started
beside the run) and each Numba threading layer, one process trains epochs of
Fashion-MNIST (batch 256) alternating 2 threads and 1 thread
(numba.set_num_threads), so both see the same load, and prints the median
of each and their ratio. A layer Numba cannot load here is reported as such.
"""

import argparse
import json
import os
import subprocess
import sys
import time

# What the child process runs: epochs in pairs, the thread count alternating, the first pair left out.
CHILD = r"""
import json, statistics, sys, time
import numpy as np, numba
import fastsoftmax as fs
data = fs.load_dataset("fashion-mnist")
X, y = data.x_train, data.y_train.astype(np.int64)
W, b = np.zeros((784, 10), np.float32, order="F"), np.zeros(10, np.float32)
times = {1: [], 2: []}
for r in range(int(sys.argv[1]) + 1):
    for threads in ((2, 1) if r % 2 else (1, 2)):
        numba.set_num_threads(threads)
        t = time.perf_counter()
        fs.train_epoch(X, y, W, b, seed=0, epoch=r, batch_size=256, lr=0.1, x_scale=1 / 255, check_input=False)
        if r:
            times[threads].append(time.perf_counter() - t)
print(json.dumps({"layer": numba.threading_layer(), "ms": {t: statistics.median(v) * 1e3 for t, v in times.items()}}))
"""


def busy(count):
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def measure(layer, rounds):
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer, "NUMBA_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(rounds)], capture_output=True, text=True, env=env,
                          check=False, timeout=1800)
    if proc.returncode:
        return {"layer": layer, "error": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--busy", type=int, nargs="+", default=[0, 1, 8])
    p.add_argument("--layers", nargs="+", default=["omp", "tbb"])
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args(argv)
    print("busy  layer  2 threads  1 thread  2 / 1")
    for count in args.busy:
        hogs = busy(count)
        try:
            time.sleep(2)
            for layer in args.layers:
                r = measure(layer, args.rounds)
                if "error" in r:
                    print(f"{count:4d}  {layer:5s}  not available here: {r['error']}")
                    continue
                two, one = r["ms"]["2"], r["ms"]["1"]
                print(f"{count:4d}  {r['layer']:5s}  {two:7.1f} ms  {one:6.1f} ms  {two / one:5.2f}", flush=True)
        finally:
            for h in hogs:
                h.kill()
            for h in hogs:
                h.wait()


if __name__ == "__main__":
    main()
