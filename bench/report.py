"""Turn pytest-benchmark's JSON into a markdown table and a bar chart.

    python bench/report.py results.json --out bench/results/

writes <date>-<cpu|gpu>-<N>core.{json,md,png} into --out (the JSON without
the raw per-round times): per group, each peer's median and the ratio
ours / peer (below 1: fastsoftmax is faster), all measured in the same run on
the machine the JSON names.
"""

import argparse
import json
from pathlib import Path

from fastsoftmax.io.atomic import atomic_write

OURS = "fastsoftmax"


def load(path):
    """(groups, run): groups is {group: {peer: benchmark}} in the order they ran."""
    run = json.loads(Path(path).read_text())
    groups = {}
    for b in run["benchmarks"]:
        groups.setdefault(b["group"], {})[b["params"]["peer"]] = b
    return groups, run


def summary(run):
    """The run without each benchmark's raw per-round times (megabytes): what results/ keeps."""
    for b in run["benchmarks"]:
        b["stats"].pop("data", None)
    return run


def machine(run):
    """One line naming the machine and the date of the run."""
    m = run["machine_info"]
    ours = m.get("fastsoftmax", {})
    cpu = ours.get("cpu_model") or m.get("cpu", {}).get("brand_raw") or m.get("processor") or "?"
    cores = ours.get("cores") or m.get("cpu", {}).get("count", "?")
    parts = [f"{cpu}, {cores} cores", f"{ours.get('threads', '?')} threads for every peer"]
    if ours.get("memory_gib"):
        parts.append(f"{ours['memory_gib']:g} GiB")
    parts.append(f"GPU: {ours['gpu']}" if ours.get("gpu") else "no GPU")
    versions = ", ".join(f"{k} {v}" for k, v in ours.get("versions", {}).items())
    line = f"{run['datetime'][:10]}, {'; '.join(parts)}"
    return line + (f" ({versions})" if versions else "")


def name(run, groups):
    """<date>-<cpu|gpu>-<N>core: the run's date, whether it measured a GPU, the cores."""
    kind = "gpu" if any(" gpu " in f" {g} " for g in groups) else "cpu"
    cores = run["machine_info"].get("fastsoftmax", {}).get("cores") or run["machine_info"]["cpu"]["count"]
    return f"{run['datetime'][:10]}-{kind}-{cores}core"


def _time(seconds):
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1e3:.3g} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.3g} µs"


def _peers(groups):
    """Every peer once, ours first, then in the order they ran."""
    seen = [OURS]
    for benchmarks in groups.values():
        seen += [p for p in benchmarks if p not in seen]
    return seen


def markdown(groups, run):
    peers = _peers(groups)
    lines = [
        f"Measured {machine(run)}.",
        "",
        ("Median time per call; in brackets fastsoftmax's time over the peer's "
         "(below 1: fastsoftmax is faster). Every peer ran in the same process, one after another."),
        "",
        "| group | " + " | ".join(peers) + " |",
        "|---|" + "---:|" * len(peers),
    ]
    for group, benchmarks in groups.items():
        ours = benchmarks.get(OURS)
        cells = []
        for peer in peers:
            b = benchmarks.get(peer)
            if b is None:
                cells.append("—")
                continue
            cell = _time(b["stats"]["median"])
            if ours is not None and peer != OURS:
                cell += f" ({ours['stats']['median'] / b['stats']['median']:.2f})"
            cells.append(f"**{cell}**" if peer == OURS else cell)
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    rates = {g: bs[OURS] for g, bs in groups.items() if OURS in bs and "sgemm_gflops" in bs[OURS]["extra_info"]}
    if rates:  # the shape matrix (bench/bench_shapes.py): our rate against the machine's sgemm
        lines += ["", "Shape matrix: fastsoftmax's rate (4 n d k FLOP a gradient or epoch) and its share of "
                  "the machine's sgemm rate, measured in the same run:", ""]
        for group, b in rates.items():
            gflops = b["extra_info"]["gflop"] / b["stats"]["median"]
            lines.append(f"- {group}: {gflops:.0f} GFLOP/s, {gflops / b['extra_info']['sgemm_gflops']:.2f} of sgemm's "
                         f"{b['extra_info']['sgemm_gflops']:.0f}")
    first = {g: {peer: b["extra_info"]["first_call_s"] for peer, b in bs.items() if "first_call_s" in b["extra_info"]}
             for g, bs in groups.items() if g.startswith("train_epoch")}
    first = {g: calls for g, calls in first.items() if calls}  # the shape matrix's epochs record none
    if first:
        lines += ["", "First call (compilation, or loading it from a cache), not in the medians above:", ""]
        for group, calls in first.items():
            lines.append(f"- {group}: " + ", ".join(f"{peer} {_time(s)}" for peer, s in calls.items()))
    return "\n".join(lines) + "\n"


def bar_chart(groups, run, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sum(len(b) for b in groups.values())
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 1.2 + 0.32 * rows + 0.35 * len(groups)),
                             squeeze=False, constrained_layout=True)
    for ax, (group, benchmarks) in zip(axes[:, 0], groups.items()):
        medians = {peer: b["stats"]["median"] for peer, b in benchmarks.items()}
        peers = sorted(medians, key=medians.get)
        ax.barh(peers, [medians[p] * 1e3 for p in peers],
                color=["tab:red" if p == OURS else "tab:gray" for p in peers])
        ours = medians.get(OURS)
        for i, p in enumerate(peers):
            label = _time(medians[p]) + (f"  ({ours / medians[p]:.2f})" if ours and p != OURS else "")
            ax.text(medians[p] * 1e3 * 1.05, i, label, va="center", fontsize=7)
        ax.set_xscale("log")
        # the fastest bar visible, and room for the labels right of the slowest
        ax.set_xlim(min(medians.values()) * 1e3 / 2, max(medians.values()) * 1e3 * 8)
        ax.invert_yaxis()
        ax.set_title(group, fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
    axes[-1, 0].set_xlabel("median time per call, ms (log scale); in brackets fastsoftmax / peer")
    fig.suptitle(f"fastsoftmax vs peers\n{machine(run)}", fontsize=7)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json", help="pytest-benchmark's --benchmark-json output")
    p.add_argument("--out", default="bench/results", help="folder for <name>.json, .md and .png")
    p.add_argument("--name", help="file name stem (default: <date>-<cpu|gpu>-<N>core)")
    args = p.parse_args(argv)
    groups, run = load(args.json)
    if not groups:
        p.exit(1, f"{args.json} holds no benchmarks\n")
    stem = Path(args.out) / (args.name or name(run, groups))
    stem.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(stem.with_suffix(".json"), "w") as f:
        json.dump(summary(run), f, indent=1)
    table = markdown(groups, run)
    with atomic_write(stem.with_suffix(".md"), "w") as f:
        f.write(table)
    bar_chart(groups, run, stem.with_suffix(".png"))
    print(table)
    print(f"wrote {stem}.json, .md and .png")


if __name__ == "__main__":
    main()
