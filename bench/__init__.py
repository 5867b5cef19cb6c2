"""The benchmarks: fastsoftmax against its peers, in one pytest-benchmark run.

A package, imported as ``bench.*`` from the repository root: peers.py (each
peer, written as its users write it), runner.py (the data, the runner and the
parametrised tests that the bench_<kernel>.py files declare), report.py (the
tables and charts) and gpu_record.py (the GPU record, ``python -m bench.gpu_record``).
"""
