"""Run a command and report the peak private memory of it and of every process it starts.

    python -m bench.memory_peak -- python -m fastsoftmax.train --dask local:2 --data-dir DIR ...

Samples /proc/<pid>/smaps_rollup of the command and its descendants (Dask's
nannies and workers) every --every seconds and prints, per process, the peak
of its anonymous memory (heap, stacks, private copies: what a process holds
of its own; a memory-mapped file's pages, which the kernel can drop at will,
are not counted) next to its peak resident set for comparison. Linux only.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def children(pid: int) -> list[int]:
    """pid's descendants, from /proc/<pid>/task/*/children."""
    found, todo = [], [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            try:
                kids = [int(c) for c in task.read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def memory(pid: int) -> tuple[int, int] | None:
    """(anonymous, resident) bytes of pid, or None once it is gone."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    except (OSError, ValueError):
        return None
    return int(fields["Anonymous"].split()[0]) * 1024, int(fields["Rss"].split()[0]) * 1024


def describe(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:100].strip()
    except OSError:
        return "?"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--every", type=float, default=0.2, help="seconds between samples")
    p.add_argument("--json", help="write the peaks here as JSON")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    proc = subprocess.Popen(command)
    peaks, names = {}, {}
    start = time.perf_counter()
    while proc.poll() is None:
        for pid in [proc.pid, *children(proc.pid)]:
            sample = memory(pid)
            if sample is not None:
                names.setdefault(pid, describe(pid))
                old = peaks.get(pid, (0, 0))
                peaks[pid] = (max(old[0], sample[0]), max(old[1], sample[1]))
        time.sleep(args.every)
    seconds = time.perf_counter() - start
    rows = [{"pid": pid, "command": names[pid], "peak_anonymous_mb": anon / 2**20, "peak_rss_mb": rss / 2**20}
            for pid, (anon, rss) in peaks.items()]
    print(f"exit status {proc.returncode} after {seconds:.1f} s; peak memory per process:", file=sys.stderr)
    for row in rows:
        print(f"  {row['peak_anonymous_mb']:8.0f} MB anonymous  {row['peak_rss_mb']:8.0f} MB resident  "
              f"pid {row['pid']}: {row['command']}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "seconds": seconds,
                                               "returncode": proc.returncode, "processes": rows}, indent=2))
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
