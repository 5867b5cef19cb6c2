"""The sparse benchmarks' code paths on tiny data (seconds), so that the scripts never rot: the corpus
parser (bench/textcorpus.py), the peers' run and the converged comparison (bench/bench_sparse.py), and
the memory measurement's child process (bench/sparse_memory.py). Nothing here is timed."""

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")

from bench import bench_sparse, sparse_memory, textcorpus

INDEX = """Package: a1
Section: games
Description: a strategy game of ancient warfare

Package: a2
Section: contrib/games
Description: a puzzle game
 with a long description
 .
 over lines

Package: a3
Section: libs
Description: A strategy   game of ancient warfare

Package: a4
Section: libs
Description: shared library for images

Package: a5
Priority: optional
Description: no section here
"""


def test_the_index_parser_joins_continuation_lines_and_strips_the_area():
    assert list(textcorpus.packages(INDEX)) == [
        ("a strategy game of ancient warfare", "games"),
        ("a puzzle game with a long description over lines", "games"),
        ("A strategy   game of ancient warfare", "libs"),
        ("shared library for images", "libs"),
    ]


def test_a_repeated_text_is_dropped_and_the_top_sections_kept():
    docs, labels, dropped = textcorpus.documents(INDEX, top=1)
    assert dropped == 1  # a3 repeats a1's text, whatever its section
    assert list(labels) == ["games", "games"] and len(docs) == 2


def test_the_corpus_is_a_tfidf_split():
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]
    rng = np.random.default_rng(0)
    stanzas = [f"Package: p{i}\nSection: {'libs' if i % 2 else 'games'}\nDescription: "
               + " ".join(rng.choice(words[:3] if i % 2 else words[3:], 4)) + f" w{i}" for i in range(80)]
    corpus = textcorpus.load(text="\n\n".join(stanzas), top=2)
    assert corpus.X_train.shape[0] == 60 and corpus.X_test.shape[0] == 20
    assert corpus.X_train.format == "csr" and corpus.X_train.dtype == np.float64
    assert set(corpus.y_train) == {"libs", "games"}


def test_a_missing_index_is_a_clear_reason(tmp_path):
    with pytest.raises(textcorpus.CorpusUnavailable, match="absent"):
        textcorpus.read_index(tmp_path / "nothing_Packages.lz4")


def test_synthetic_csr_is_built_directly_with_planted_labels():
    X, y = sparse_memory.synthetic(500, 1000, 7, k=4)
    assert X.shape == (500, 1000) and X.nnz == 3500 and X.dtype == np.float32
    assert X.indices.dtype == np.int32 and (np.diff(X.indptr) == 7).all()
    np.testing.assert_allclose(np.sqrt((X.data.reshape(500, 7) ** 2).sum(axis=1)), 1, rtol=1e-5)  # unit rows
    assert (np.diff(X.indices.reshape(500, 7), axis=1) >= 0).all()  # sorted within each row
    assert set(np.unique(y)) <= set(range(4)) and len(np.unique(y)) > 1
    assert sparse_memory.csr_bytes(X) == 3500 * 8 + 501 * 4


def test_every_peer_runs_and_reports_on_a_tiny_csr():
    bench_sparse.warm_up()
    data = bench_sparse.planted("tiny", 600, 400, 10, k=3)
    records = bench_sparse.run_dataset(data, tol=1e-3, max_iter=50)
    assert set(records) == set(bench_sparse.PEERS)
    for name, r in records.items():
        assert r["seconds"] > 0 and np.isfinite(r["objective"]) and 0 <= r["test_acc"] <= 1, name
        assert r["peak_rise_bytes"] is None or r["peak_rise_bytes"] >= 0
    ours = records["fastsoftmax lbfgs"]
    # the objective computed here agrees with the one fastsoftmax's lbfgs minimised
    assert ours["history_objective"] == pytest.approx(ours["objective"], rel=1e-6)
    assert ours["target"] == records["sklearn lbfgs"]["objective"]
    assert ours["seconds_to_target"] is None or ours["seconds_to_target"] > 0
    conv = bench_sparse.converged(data, rows=300, tol=1e-8, max_iter=500)
    assert conv["coef_relative_difference"] < 1e-3
    text = bench_sparse.table(data, records, conv)
    assert text.count("\n| ") == 1 + len(bench_sparse.PEERS)  # the header and one row a peer


def test_the_main_writes_its_record(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_sparse, "DATASETS", {"tiny": lambda: bench_sparse.planted("tiny", 400, 300, 8, k=3)})
    bench_sparse.main(["--datasets", "tiny", "--converged-rows", "200", "--out", str(tmp_path), "--name", "r"])
    record = json.loads((tmp_path / "r.json").read_text())
    assert set(record["datasets"]["tiny"]["peers"]) == set(bench_sparse.PEERS)
    assert record["machine"]["threadpools"] is not None
    assert "| fastsoftmax lbfgs |" in (tmp_path / "r.md").read_text()


def test_the_memory_child_measures_a_fit():
    record = sparse_memory.measure(2000, 3000, 5, k=3)
    assert record["nnz"] == 10_000 and record["csr_bytes"] == 10_000 * 8 + 2001 * 4
    assert record["fit_seconds"] > 0 and record["budget"] > 2 * record["csr_bytes"]
    if record["fit_peak_rss"] is not None:
        assert record["fit_peak_rss"] >= record["before_fit_rss"] and record["baseline_rss"] > 0
    assert "budget" in sparse_memory.report(record)
