"""The solver benchmark's report (bench/solvers.py): a markdown table of each solver's time to the
optimum, and the plot of its objective's gap against wall time, written with the run's json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TOLERANCES = (1e-4, 1e-6)  # the gaps (f - f*) / f* whose first time each solver is timed at


def ours(peer):
    return peer.startswith("fastsoftmax")


def _load(average):
    return "?" if average is None else "/".join(f"{x:.2f}" for x in average)


def _time(seconds):
    return f"{seconds:.3g} s" if seconds >= 0.01 else f"{seconds * 1e3:.3g} ms"


def _row(r, best):
    """A solver's cells: each time to tolerance (over fastsoftmax's best), objective, accuracy, iterations."""
    cells = []
    for tol, seconds in r["time_to"].items():
        if seconds is None:
            cells.append(f"not reached in {_time(r['trajectory'][-1][0] if r['trajectory'] else r['seconds'])}")
        else:
            cells.append(_time(seconds) + (f" ({seconds / best[tol]:.2f})" if best[tol] else ""))
    notes = [f"stopped: {r['stopped']}"] if r["stopped"] else []
    said = {w.split(":")[0] for w in r["warnings"]} - ({"ConvergenceWarning"} if r["refits"] else set())  # by design
    notes += sorted(said) + [s for s in r["sklearnex_log"] if "fallback" in s]
    acc = "—" if r["test_acc"] is None else f"{r['test_acc']:.4f}"
    objective = "—" if r["objective"] is None else f"{r['objective']:.10f}"
    return cells + [objective, acc, str(r["n_iter"] or "—"), "; ".join(notes)]


def markdown(results):
    """A row per solver: its times to f* (1 + tol), in brackets over fastsoftmax's best solver's."""
    m, ran = results["machine"], {p: r for p, r in results["solvers"].items() if "skipped" not in r}
    best = {f"{tol:g}": min([r["time_to"][f"{tol:g}"] for p, r in ran.items() if ours(p)
                             and r["time_to"][f"{tol:g}"] is not None], default=None) for tol in TOLERANCES}
    pools = ", ".join(f"{p['internal_api']} {p['version']} ({p['num_threads']} threads)" for p in m["threadpools"])
    o = results["optimum"]
    lines = [f"**{results['table']}**: {results['description']}.", "",
             f"Measured {results['datetime'][:10]} on {m['cpu_model']}, {m['cores']} cores, {results['threads']} "
             f"threads for every solver (thread pools: {pools}; Numba {m['numba_threading_layer']}); load average "
             f"{_load(results['load_before'])} before, {_load(results.get('load_after'))} after. "
             f"C={results['C']:g}, tol={results['tol']:g}, max_iter={results['max_iter']}, at most "
             f"{results['budget_s']:g} s a solver; one run each, in one process, one after another.", "",
             f"f* = {results['f_star']:.12f}, the least objective seen (the tight run, {o['solver']} at "
             f"tol={o['tol']:g}{', cached' if o.get('cached') else ''}: {o['objective']:.12f}). In brackets: the "
             "time over fastsoftmax's best solver's.", "",
             "| solver | " + " | ".join(f"to f* (1 + {tol:g})" for tol in TOLERANCES)
             + " | final objective | test acc | iterations | notes |", "|---|---:|---:|---:|---:|---:|---|"]
    for peer, r in results["solvers"].items():
        cells = [f"skipped: {r['skipped']}", "", "", "", "", ""] if "skipped" in r else _row(r, best)
        lines.append(f"| {peer} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results, path):
    """(f - f*) / f* against seconds, log-log, a line per solver, dashed lines at the tolerances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fastsoftmax.io.atomic import atomic_write

    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    for peer, r in results["solvers"].items():
        if r.get("trajectory"):
            t, f = np.array(r["trajectory"]).T
            gap = np.maximum((f - results["f_star"]) / results["f_star"], 1e-16)  # f* itself at 1e-16
            ax.step(t, gap, where="post", label=peer, lw=2 if ours(peer) else 1,
                    marker="o" if r["evaluations"] < 20 else None, ms=3)
    for tol in TOLERANCES:
        ax.axhline(tol, ls="--", color="gray", lw=0.8)
    ax.set(xscale="log", yscale="log", xlabel="seconds since the fit started", ylabel="(f - f*) / f*",
           title=f"{results['table']}: {results['rows']} rows, C={results['C']:g}, {results['threads']} threads, "
                 f"{results['datetime'][:10]}")
    ax.legend(fontsize=8)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def write_report(results, out_dir, name=None):
    """<out_dir>/<name>.{json,md,png}, name by default <date>-cpu-<N>core-solvers-<table>; the three paths."""
    from fastsoftmax.io.atomic import atomic_write

    Path(out_dir).mkdir(parents=True, exist_ok=True)
    stem = Path(out_dir) / (name or f"{results['datetime'][:10]}-cpu-{results['machine']['cores']}core-solvers-"
                                    f"{results['table']}")
    paths = [stem.with_suffix(s) for s in (".json", ".md", ".png")]
    with atomic_write(paths[0], "w") as f:
        json.dump(results, f, indent=1)
    with atomic_write(paths[1], "w") as f:
        f.write(markdown(results))
    plot(results, paths[2])
    return paths
