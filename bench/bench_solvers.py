"""Time to the optimum (bench/solvers.py) under pytest-benchmark: one test per (table, solver).

    python -m pytest bench/bench_solvers.py -o python_files='bench_*.py' --benchmark-json=OUT   (or make bench)

Each solver fits once (rounds=1), the tables one at a time, every solver in
this process on the same arrays at solvers.THREADS threads. extra_info holds
the solver's record: its trajectory [(seconds, objective)], its time to
f* (1 + tol) for each tol, final objective, test accuracy and iterations. f*
there is the least of the tight run (cached in bench/results/) and every
objective the table's solvers have reached so far; test_report then writes
each table's full report, f* over all of them, next to the tight runs' cache.
The benchmark's own time is the whole run: for sklearnex and Snap ML, every
refit and the objective after each (their points are in the trajectory).

At the defaults (full tables, tol 1e-8, max_iter 1000, at most 300 s a
solver) a table can take half an hour on 2 cores: BENCH_SOLVERS_TABLES
(comma-separated names) and BENCH_SOLVERS_ROWS (the first N training rows)
make shorter runs; BENCH_SOLVERS_OUT moves the reports.
"""

import gc
import os
from pathlib import Path

import pytest

import fastsoftmax as fs
from bench import solvers
from bench.textcorpus import CorpusUnavailable

TABLES = [name for name in os.environ.get("BENCH_SOLVERS_TABLES", ",".join(solvers.TABLES)).split(",") if name]
ROWS = int(os.environ.get("BENCH_SOLVERS_ROWS", "0")) or None
OUT = Path(os.environ.get("BENCH_SOLVERS_OUT", "bench/results"))
RESULTS = {}  # table -> solvers.begin's results, each solver's record added as it runs
_loaded = {}  # the one table in memory: name -> solvers.Table (or the reason it cannot load)


@pytest.fixture(scope="module", autouse=True)
def threads():
    with solvers.threads():
        yield


def loaded(name):
    """The table, and its results so far; the previous table is let go first (the big ones take GiB)."""
    if name not in _loaded:
        _loaded.clear()
        gc.collect()
        try:
            _loaded[name] = solvers.TABLES[name](ROWS)
        except (CorpusUnavailable, fs.DatasetNotFoundError, OSError) as e:
            _loaded[name] = f"{name} is not available here: {e}"
        if not isinstance(_loaded[name], str):
            RESULTS[name] = solvers.begin(_loaded[name], cache=OUT / solvers.OPTIMA)
    if isinstance(_loaded[name], str):
        pytest.skip(_loaded[name])
    return _loaded[name], RESULTS[name]


@pytest.mark.parametrize("table, peer", [(t, p) for t in TABLES for p in solvers.PEERS])
def test_solver(benchmark, table, peer):
    t, results = loaded(table)
    benchmark.group = f"solvers cpu {table}"
    reason = solvers.warm(peer, t, results["C"])
    if reason:
        results["solvers"][peer] = {"skipped": reason}
        pytest.skip(reason)
    records = []
    benchmark.pedantic(lambda: records.append(solvers.run_peer(peer, t, results["C"], results["tol"],
                                                               results["max_iter"], results["budget_s"])),
                       rounds=1, iterations=1)
    results["solvers"][peer] = records[0]
    solvers.settle(results)
    benchmark.extra_info.update(records[0], table=t.description, f_star=results["f_star"],
                                optimum=results["optimum"])


@pytest.mark.parametrize("table", TABLES)
def test_report(table):
    """The table's report (bench/results/<date>-cpu-<N>core-solvers-<table>.{json,md,png}), f* over every solver."""
    results = RESULTS.get(table)
    if not results or not results["solvers"]:
        pytest.skip(f"no solver ran on {table}")
    results["load_after"] = solvers.load_average()
    paths = solvers.write_report(solvers.settle(results), OUT)
    print("\n" + solvers.markdown(results) + "wrote " + ", ".join(map(str, paths)))
