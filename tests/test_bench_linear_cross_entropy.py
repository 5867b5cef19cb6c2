"""bench/linear_cross_entropy.py on tiny shapes (seconds), so that the script never rots: a child process per
(method, shape), the ratios against eager, the JSON and markdown it writes. Nothing here is timed."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("torch")

from bench import linear_cross_entropy as bench


def test_the_script_writes_a_row_per_shape_and_method(tmp_path, capsys):
    assert bench.main(["--shapes", "64x16x10,32x8x300", "--repeats", "1", "--methods", "fastsoftmax,eager",
                       "--out", str(tmp_path)]) == 0
    [json_path] = tmp_path.glob("*-cpu-*core-linear-cross-entropy.json")
    assert json_path.with_suffix(".md").exists()
    results = json.loads(json_path.read_text())
    assert results["machine"]["cores"] >= 1 and results["machine"]["cpu_model"]
    rows = {(r["shape"], r["method"]): r for r in results["rows"]}
    assert set(rows) == {(s, m) for s in ("64x16x10", "32x8x300") for m in ("fastsoftmax", "eager")}
    for (shape, method), r in rows.items():
        assert "skipped" not in r, r
        assert r["time_ms"] > 0 and math.isfinite(r["extra_mib"]) and r["warmup_s"] > 0
        n, d, k = map(int, shape.split("x"))
        assert r["grad_shapes"] == [[n, d], [k, d], [k]]
        assert r["time_vs_eager"] is not None and r["time_vs_eager"] > 0
    for shape in ("64x16x10", "32x8x300"):  # the same data and loss for both
        assert rows[shape, "fastsoftmax"]["loss"] == pytest.approx(rows[shape, "eager"]["loss"], rel=1e-5)
        assert rows[shape, "eager"]["time_vs_eager"] == 1
        assert rows[shape, "fastsoftmax"]["time_vs_compile"] is None  # compile did not run
    assert "32x8x300" in capsys.readouterr().out


def test_the_shapes_and_methods_flags_are_checked():
    assert bench.parse_shapes("256x64x10, 128x32x1000") == [(256, 64, 10), (128, 32, 1000)]
    with pytest.raises(Exception):
        bench.parse_shapes("256x64")
    with pytest.raises(Exception):
        bench.parse_methods("fastsoftmax,numpy")


def test_the_sampling_fallback_sees_an_allocation():
    with bench.Sampler() as sampler:
        before = bench._status("VmRSS")
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    assert sampler.high - before >= 48 * 2**20
    del block


def test_ratios_and_the_table_with_a_skipped_method():
    def row(method, time_ms, extra_mib):
        return {"method": method, "shape": "8x4x3", "n": 8, "d": 4, "k": 3, "time_ms": time_ms,
                "extra_mib": extra_mib, "warmup_s": 0.1, "memory_method": "VmHWM after clear_refs"}

    rows = bench.compare([row("fastsoftmax", 1.0, -0.01), row("eager", 4.0, 2.0),
                          {"method": "compile", "shape": "8x4x3", "n": 8, "d": 4, "k": 3,
                           "skipped": "torch.compile does not work here: RuntimeError: no | compiler"}])
    assert rows[0]["time_vs_eager"] == 0.25 and rows[0]["memory_vs_eager"] == 0  # below 0: as 0
    assert rows[0]["time_vs_compile"] is None
    table = bench.markdown({"datetime": "2026-01-01T00:00:00", "threads": 2, "repeats": 1, "rows": rows,
                            "machine": {"cpu_model": "cpu", "cores": 2, "versions": {"torch": "x"}}})
    lines = table.splitlines()
    assert any("| compile | — |" in line and "skipped: torch.compile" in line for line in lines)
    assert all(line.count("|") == lines[-1].count("|") for line in lines if line.startswith("| 8x4x3"))
