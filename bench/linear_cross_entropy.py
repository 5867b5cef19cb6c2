"""The fused linear cross-entropy against PyTorch and JAX: time and peak extra memory of loss + gradients.

    python -m bench.linear_cross_entropy [--shapes 8192x784x10,4096x1024x1000,...] [--methods ...]
                                         [--repeats 3] [--threads 2] [--out bench/results]

For each (n, d, k) shape, float32, each method computes the mean cross-entropy
of the linear head ``x @ W.T + b`` (x (n, d), W (k, d) as nn.Linear holds it,
b (k,)) against labels y, and the gradients of x, W and b:

- ``fastsoftmax``: fastsoftmax.torch.linear_cross_entropy, then .backward();
- ``eager``: ``F.cross_entropy(F.linear(x, W, b), y)``, then .backward();
- ``compile``: torch.compile of that same function (skipped, with the reason, where it fails);
- ``jax``: jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2))), f
  ``optax.softmax_cross_entropy_with_integer_labels(x @ W.T + b, y).mean()``
  (log_softmax by hand where optax is missing);
- ``fastsoftmax-jax``: the same with fastsoftmax.jax.linear_cross_entropy as f.

Each (method, shape) runs in a fresh interpreter of its own (``--child``), so
no method inherits another's allocator state or imports, with the same thread
count for every library (torch.set_num_threads, XLA_FLAGS, Numba, OpenMP and
BLAS) and the same data (seeded: x ~ N(0, 1), W ~ N(0, 0.02), b = 0, y
uniform). The child makes one warm-up call (compilation and kernel loading
happen there; its time is reported apart), then per repeat: drops the
previous gradients, collects garbage, hands the C heap's free memory back
(malloc_trim), reads its resident set (VmRSS) as the baseline, resets its
resident high-water mark (writing 5 to /proc/self/clear_refs), runs loss +
gradients, and reads the mark (VmHWM). A method's extra memory is that peak
less the baseline less the gradients every method must return (n d + k d + k
floats): what it holds beyond its inputs and outputs, the logits included
where it materialises them (n k floats, given per shape). Where clear_refs
cannot be written, a thread samples VmRSS instead (it can miss a short peak;
the output says which way each row was measured).

Reported per (shape, method): the median time over --repeats, the largest
extra memory over them, and both over eager's in the same run (below 1:
smaller), fastsoftmax's time also over compile's and fastsoftmax-jax's over
jax's. Writes <out>/<date>-cpu-<N>core-linear-cross-entropy.{json,md} and
prints the table.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata as md
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from bench.sparse_memory import peak, reset_peak, rss

SHAPES = ((8192, 784, 10), (4096, 1024, 1000), (2048, 2048, 32768), (1024, 2048, 131072))
METHODS = ("fastsoftmax", "eager", "compile", "jax", "fastsoftmax-jax")
TORCH_METHODS = ("fastsoftmax", "eager", "compile")
THREADS = 2
REPEATS = 3
SEED = 0
ITEMSIZE = 4  # float32
MIB = 2**20
ROOT = Path(__file__).resolve().parent.parent


def parse_shapes(text):
    """'256x64x10,128x32x1000' -> [(256, 64, 10), (128, 32, 1000)]."""
    shapes = []
    for part in text.split(","):
        dims = tuple(int(v) for v in part.strip().lower().split("x"))
        if len(dims) != 3 or min(dims) < 1:
            raise argparse.ArgumentTypeError(f"a shape is NxDxK, three positive integers: got {part!r}")
        shapes.append(dims)
    return shapes


def parse_methods(text):
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise argparse.ArgumentTypeError(f"methods are among {', '.join(METHODS)}: got {text!r}")
    return methods


def shape_name(shape):
    return "x".join(str(v) for v in shape)


def thread_env(threads):
    """The child's environment: every library at `threads` threads, set before any of them is imported."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    # as bench/peers.py sets it; XLA reads it when jax is imported
    env["XLA_FLAGS"] = f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={threads}"
    env.setdefault("PYTHONPATH", str(ROOT))
    return env


# ---- the child: one method on one shape, in a fresh process ----


def _status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


class Sampler:
    """The fallback where the high-water mark cannot be reset: the largest VmRSS seen by a thread that reads
    it every `every` seconds while the block runs (a peak shorter than that can be missed)."""

    def __init__(self, every=0.0005):
        self.every, self.high = every, 0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.high = max(self.high, _status("VmRSS"))
            time.sleep(self.every)

    def __enter__(self):
        self.high = _status("VmRSS")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.high = max(self.high, _status("VmRSS"))


def data(n, d, k, seed=SEED):
    """The same float32 inputs for every method: x ~ N(0, 1), W ~ N(0, 0.02), b = 0, y uniform in [0, k)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d), dtype=np.float32)
    W = (rng.standard_normal((k, d), dtype=np.float32) * np.float32(0.02))
    b = np.zeros(k, np.float32)
    y = rng.integers(0, k, size=n)
    return x, W, b, y


def _torch_step(method, arrays, threads):
    """(step, drop): step() runs loss + backward and returns the loss as a float; drop() frees the gradients."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    x, W, b, y = (torch.from_numpy(a) for a in arrays)
    y = y.to(torch.int64)
    for t in (x, W, b):
        t.requires_grad_(True)

    def eager(x, W, b, y):
        return F.cross_entropy(F.linear(x, W, b), y)

    if method == "fastsoftmax":
        from fastsoftmax.torch import linear_cross_entropy

        def loss_fn(x, W, b, y):
            return linear_cross_entropy(x, W, y, b)
    elif method == "compile":
        loss_fn = torch.compile(eager)
    else:
        loss_fn = eager

    def step():
        loss = loss_fn(x, W, b, y)
        loss.backward()
        return loss.item()

    def drop():
        x.grad = W.grad = b.grad = None

    def grads():
        return [x.grad, W.grad, b.grad]

    return step, drop, grads


def _jax_step(method, arrays):
    import jax
    import jax.numpy as jnp

    x, W, b = (jnp.asarray(a) for a in arrays[:3])
    y = jnp.asarray(arrays[3].astype("int32"))
    if method == "fastsoftmax-jax":
        from fastsoftmax.jax import linear_cross_entropy

        def f(x, W, b, y):
            return linear_cross_entropy(x, W, y, b)
    else:
        try:
            import optax

            def f(x, W, b, y):
                return optax.softmax_cross_entropy_with_integer_labels(x @ W.T + b, y).mean()
        except ImportError:
            def f(x, W, b, y):
                logp = jax.nn.log_softmax(x @ W.T + b, axis=-1)
                return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()

    fn = jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2)))
    out = []

    def step():
        loss, g = fn(x, W, b, y)
        jax.block_until_ready(g)
        out[:] = g
        return float(loss)

    def drop():
        out.clear()

    def grads():
        return list(out)

    return step, drop, grads


def _threadpools():
    try:
        from threadpoolctl import threadpool_info

        return sorted({f"{p.get('internal_api')} {p.get('num_threads')}" for p in threadpool_info()})
    except Exception:  # threadpoolctl missing, or a pool it cannot query: the record goes without
        return []


def child(method, shape, repeats=REPEATS, threads=THREADS, seed=SEED):
    """The measurement, in this (fresh) process: a dict of milliseconds and bytes."""
    n, d, k = shape
    record = {"method": method, "shape": shape_name(shape), "n": n, "d": d, "k": k}
    arrays = data(n, d, k, seed)
    if method in TORCH_METHODS:
        step, drop, grads = _torch_step(method, arrays, threads)
    else:
        step, drop, grads = _jax_step(method, arrays)
    del arrays  # torch's tensors share them; jax copied them into its own buffers
    start = time.perf_counter()
    try:
        loss = step()
    except Exception as e:  # torch.compile's dynamo and inductor raise many kinds
        if method != "compile":
            raise
        record["skipped"] = f"torch.compile does not work here: {type(e).__name__}: {str(e)[:400]}"
        return record
    record["warmup_s"] = time.perf_counter() - start
    record["loss"] = loss
    record["grad_shapes"] = [list(g.shape) for g in grads()]
    grad_bytes = (n * d + k * d + k) * ITEMSIZE
    times, extras, baselines = [], [], []
    resettable = None
    for _ in range(repeats):
        drop()
        gc.collect()
        resettable = reset_peak()  # malloc_trim, then clear_refs; False where it cannot be written
        baseline = rss()
        if resettable:
            start = time.perf_counter()
            step()
            seconds = time.perf_counter() - start
            high = peak()
        else:
            with Sampler() as sampler:
                start = time.perf_counter()
                step()
                seconds = time.perf_counter() - start
            high = sampler.high
        times.append(seconds * 1e3)
        extras.append(high - baseline - grad_bytes)
        baselines.append(baseline)
    record.update({
        "repeats": repeats, "times_ms": times, "time_ms": statistics.median(times),
        "extra_bytes_each": extras, "extra_mib": max(extras) / MIB, "grad_mib": grad_bytes / MIB,
        "logits_mib": n * k * ITEMSIZE / MIB, "baseline_mib": max(baselines) / MIB,
        "memory_method": "VmHWM after clear_refs" if resettable else "sampled VmRSS (clear_refs not writable)",
        "threadpools": _threadpools(),
    })
    if method in TORCH_METHODS:
        import torch

        record["torch_threads"] = torch.get_num_threads()
    return record


# ---- the parent: a child per (shape, method), then the report ----


def measure(method, shape, repeats=REPEATS, threads=THREADS, seed=SEED, timeout=3600):
    """Run `child` in a fresh interpreter; its record, or one that says why it has none."""
    command = [sys.executable, "-m", "bench.linear_cross_entropy", "--child", method, shape_name(shape),
               "--repeats", str(repeats), "--threads", str(threads), "--seed", str(seed)]
    base = {"method": method, "shape": shape_name(shape), "n": shape[0], "d": shape[1], "k": shape[2]}
    try:
        done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env=thread_env(threads))
    except subprocess.TimeoutExpired:
        return {**base, "skipped": f"did not finish in {timeout} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        why = "killed (out of memory?)" if done.returncode in (-9, 137) else f"exit status {done.returncode}"
        return {**base, "skipped": f"the measuring process failed ({why}): {done.stderr.strip()[-600:]}"}
    return json.loads(lines[-1])


def _ratio(a, b):
    """a / b, a below 0 (a peak within a page or two of the baseline) taken as 0; None where b is not above 0."""
    if a is None or b is None or b <= 0:
        return None
    return max(a, 0) / b


def compare(rows):
    """Each measured row's ratios against eager in the same run (and fastsoftmax against compile,
    fastsoftmax-jax against jax): time over time, extra memory over extra memory; None where either lacks."""
    by = {(r["shape"], r["method"]): r for r in rows if "skipped" not in r}
    for r in rows:
        if "skipped" in r:
            continue
        eager = by.get((r["shape"], "eager"))
        r["time_vs_eager"] = _ratio(r["time_ms"], eager and eager["time_ms"])
        r["memory_vs_eager"] = _ratio(r["extra_mib"], eager and eager["extra_mib"])
        peer = {"fastsoftmax": "compile", "fastsoftmax-jax": "jax"}.get(r["method"])
        if peer:
            other = by.get((r["shape"], peer))
            r[f"time_vs_{peer}"] = _ratio(r["time_ms"], other and other["time_ms"])
            r[f"memory_vs_{peer}"] = _ratio(r["extra_mib"], other and other["extra_mib"])
    return rows


def machine(threads):
    """bench/bench_sparse.py's machine record, with the versions this benchmark's methods use."""
    from bench.bench_sparse import load_average
    from bench.bench_sparse import machine as base

    info = base()
    for name in ("torch", "jax", "jaxlib", "optax"):
        try:
            info["versions"][name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["memory_gib"] = None
    info["threads"] = threads
    info["load_before"] = load_average()
    return info


def _cell(value, fmt):
    return "—" if value is None else format(value, fmt)


def markdown(results):
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    rows = results["rows"]
    ways = sorted({r["memory_method"] for r in rows if "memory_method" in r})
    lines = [f"Measured {results['datetime'][:10]} on {m['cpu_model']}, {m['cores']} cores, "
             f"{results['threads']} threads for every method, float32 ({versions}).", "",
             ("Loss + gradients of x, W and b for the mean cross-entropy of x @ W.T + b, each (method, shape) in "
              f"a fresh process: the median time of {results['repeats']} calls after a warm-up call, and the largest "
              "extra memory over them: the resident high-water mark less the resident set before the call less "
              "the gradients (n d + k d + k floats). The ratios: over eager PyTorch's in the same run (below 1: "
              f"smaller or faster). Memory measured by {' and '.join(ways) or '—'}."), "",
             "| n x d x k (logits MiB) | method | time ms | extra MiB | time vs eager | memory vs eager | "
             "warm-up s | notes |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        label = f"{r['shape']} ({r['n'] * r['k'] * ITEMSIZE / MIB:.3g})"
        if "skipped" in r:
            lines.append(f"| {label} | {r['method']} | — | — | — | — | — | skipped: "
                         f"{r['skipped'].replace('|', '/').splitlines()[0][:200]} |")
            continue
        notes = []
        for peer in ("compile", "jax"):
            if r.get(f"time_vs_{peer}") is not None:
                notes.append(f"time {r[f'time_vs_{peer}']:.2f} of {peer}'s")
        lines.append(f"| {label} | {r['method']} | {r['time_ms']:.3g} | {r['extra_mib']:.3g} | "
                     f"{_cell(r['time_vs_eager'], '.2f')} | {_cell(r['memory_vs_eager'], '.2f')} | "
                     f"{r['warmup_s']:.2f} | {'; '.join(notes)} |")
    return "\n".join(lines) + "\n"


def write(results, out):
    from fastsoftmax.io.atomic import atomic_write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{results['datetime'][:10]}-cpu-{results['machine']['cores']}core-linear-cross-entropy"
    paths = stem.with_suffix(".json"), stem.with_suffix(".md")
    with atomic_write(paths[0], "w") as f:
        json.dump(results, f, indent=1)
    with atomic_write(paths[1], "w") as f:
        f.write(markdown(results))
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", type=parse_shapes, default=list(SHAPES),
                   help="comma-separated NxDxK (default: " + ",".join(map(shape_name, SHAPES)) + ")")
    p.add_argument("--methods", type=parse_methods, default=list(METHODS),
                   help="comma-separated, among " + ", ".join(METHODS))
    p.add_argument("--repeats", type=int, default=REPEATS, help="timed calls after the warm-up one")
    p.add_argument("--threads", type=int, default=THREADS, help="threads for every library")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--timeout", type=float, default=3600, help="seconds a (method, shape) may take")
    p.add_argument("--out", default="bench/results", help="folder for <date>-cpu-<N>core-linear-cross-entropy.*")
    p.add_argument("--child", nargs=2, metavar=("METHOD", "NxDxK"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    if args.child:
        method, shape = args.child
        print(json.dumps(child(method, parse_shapes(shape)[0], args.repeats, args.threads, args.seed)))
        return 0
    results = {"datetime": datetime.now().isoformat(timespec="seconds"), "threads": args.threads,
               "repeats": args.repeats, "seed": args.seed, "dtype": "float32",
               "machine": machine(args.threads), "rows": []}
    for shape in args.shapes:
        for method in args.methods:
            print(f"{method} {shape_name(shape)} ...", file=sys.stderr, flush=True)
            results["rows"].append(measure(method, shape, args.repeats, args.threads, args.seed, args.timeout))
    compare(results["rows"])
    from bench.bench_sparse import load_average

    results["load_after"] = load_average()
    paths = write(results, args.out)
    print(markdown(results))
    print(f"wrote {paths[0]} and {paths[1]}")
    return 1 if all("skipped" in r for r in results["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())
