"""CUDA C sources of the GPU backend (fastsoftmax/cuda.py compiles them with CuPy)."""
