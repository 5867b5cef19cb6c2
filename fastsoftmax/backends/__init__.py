"""The backends: cpu/ (Numba kernels for NumPy arrays) and cuda/ (CUDA kernels for CuPy arrays).

Each satisfies fastsoftmax.ops.dispatch.Backend, and only fastsoftmax.ops
calls them. Twins share names: the CPU and CUDA files of one path are
fused.py, large.py, sweep.py, logits.py and rows.py in both folders.
Backends know nothing of estimators, command lines or files.
"""
