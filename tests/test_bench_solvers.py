"""bench/solvers.py's code paths on a tiny table (seconds), so the time-to-optimum benchmark never rots:
each peer's trajectory capture, the time to tolerance, the optimum, the budget, a skipped solver and the
report's files. Nothing here is timed."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from bench import solvers
from bench.tables import _labelled

C = 0.5  # not the default: a penalty scaled wrongly shows in the objective checks


@pytest.fixture(scope="module")
def tiny():
    X, y = _labelled(n=500, d=30, k=4, seed=1)
    return solvers.table("tiny", "tiny", X[:400], y[:400], X[400:], y[400:])


@pytest.fixture(scope="module")
def results(tiny, tmp_path_factory):
    cache = tmp_path_factory.mktemp("optima") / solvers.OPTIMA
    return solvers.run(tiny, ("fastsoftmax lbfgs", "sklearn lbfgs", "sklearn newton-cg"), C=C, tol=1e-6,
                       max_iter=100, budget=60, cache=cache)


@pytest.mark.parametrize("peer", list(solvers.PEERS))
def test_each_available_peer_records_decreasing_objectives(tiny, peer):
    reason = solvers.warm(peer, tiny, C)
    if reason:
        pytest.skip(reason)
    r = solvers.run_peer(peer, tiny, C, tol=1e-8, max_iter=40, budget=60)
    seconds, f = np.array(r["trajectory"]).T
    assert len(f) >= 2 and np.all(np.diff(seconds) >= 0) and np.all(np.diff(f) <= 0) and f[-1] < f[0]
    assert r["objective"] == pytest.approx(f[-1], rel=1e-12) and r["test_acc"] > 1 / 4
    # what was recorded is scikit-learn's objective at C: the last value is that of the final coef_
    assert r["objective_check"] <= 1e-12
    assert r["coef_shape"] == [4, 30] and r["stopped"] is None


def test_the_captured_values_are_the_objective_at_the_iterates(tiny):
    """scikit-learn's first evaluation is at zero weights: log(k), whatever C."""
    r = solvers.run_peer("sklearn newton-cg", tiny, C, tol=1e-8, max_iter=20)
    assert r["trajectory"][0][1] == pytest.approx(math.log(4), rel=1e-12)


def test_time_to_tolerance_on_a_hand_made_trajectory():
    points = [(2.0, 1.00001), (0.5, 2.0), (1.0, 1.001), (3.0, 1.0000001)]  # out of order on purpose
    assert solvers.time_to(points, 1.0, 1e-2) == 1.0
    assert solvers.time_to(points, 1.0, 1e-4) == 2.0
    assert solvers.time_to(points, 1.0, 1e-6) == 3.0
    assert solvers.time_to(points, 1.0, 1e-8) is None  # never reached
    assert solvers.time_to([], 1.0, 1e-4) is None
    assert solvers.best_so_far([(1.0, 3.0), (0.0, 2.0), (2.0, 1.0)]) == [(0.0, 2.0), (1.0, 2.0), (2.0, 1.0)]


def test_the_optimum_is_the_least_objective_seen(results, tiny):
    seen = [f for r in results["solvers"].values() for _, f in r["trajectory"]] + [results["optimum"]["objective"]]
    assert results["f_star"] == min(seen)
    assert results["optimum"]["objective"] <= min(seen) * (1 + 1e-12)  # the tight run is the optimum
    for r in results["solvers"].values():
        assert set(r["time_to"]) == {f"{tol:g}" for tol in solvers.TOLERANCES}
        reached = [solvers.time_to(r["trajectory"], results["f_star"], tol) for tol in solvers.TOLERANCES]
        assert list(r["time_to"].values()) == reached


def test_the_optimum_is_cached_by_table_rows_and_c(tiny, tmp_path):
    cache = tmp_path / solvers.OPTIMA
    first = solvers.tight_optimum(tiny, C, cache)
    again = solvers.tight_optimum(tiny, C, cache)
    assert not first["cached"] and again["cached"] and again["objective"] == first["objective"]
    assert not solvers.tight_optimum(tiny, 2 * C, cache)["cached"]
    assert len(json.loads(cache.read_text())) == 2


@pytest.mark.parametrize("peer", ["fastsoftmax lbfgs", "sklearn lbfgs"])
def test_a_spent_budget_keeps_the_trajectory(tiny, peer):
    assert solvers.warm(peer, tiny, C) is None
    r = solvers.run_peer(peer, tiny, C, tol=1e-8, max_iter=100, budget=0.0)
    assert r["stopped"] and len(r["trajectory"]) == 1
    assert r["objective"] == pytest.approx(r["trajectory"][0][1], rel=1e-12)


def test_a_solver_not_accepted_is_skipped_with_the_reason(tiny, monkeypatch):
    monkeypatch.setitem(solvers.PEERS, "fastsoftmax newton-cg", solvers.fastsoftmax("no-such-solver"))
    assert solvers.warm("fastsoftmax newton-cg", tiny, C).startswith("ValueError")


def test_the_report_writes_markdown_json_and_a_plot(results, tmp_path):
    paths = solvers.write_report(results, tmp_path)
    assert [p.suffix for p in paths] == [".json", ".md", ".png"] and all(p.exists() for p in paths)
    assert paths[0].name.endswith("-solvers-tiny.json")
    saved = json.loads(paths[0].read_text())
    assert saved["f_star"] == results["f_star"] and saved["load_before"] and saved["machine"]["threadpools"]
    table = paths[1].read_text()
    assert all(f"| {peer} |" in table for peer in results["solvers"])
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_thread_limits_leave_numba_on_the_layer_a_user_gets():
    """threads() sets Numba's count, which launches its threading layer: fastsoftmax must be imported first, or
    Numba takes GNU OpenMP over TBB and fastsoftmax's iterations run many times slower (a fresh process each)."""
    root = Path(__file__).resolve().parents[1]
    layer = "import numba; print(numba.threading_layer())"
    ours = subprocess.run([sys.executable, "-c", f"from bench import solvers\nwith solvers.threads(): {layer}"],
                          cwd=root, capture_output=True, text=True, check=True).stdout
    users = subprocess.run([sys.executable, "-c", f"import fastsoftmax, numba; numba.set_num_threads(1); {layer}"],
                           cwd=root, capture_output=True, text=True, check=True).stdout
    assert ours == users
