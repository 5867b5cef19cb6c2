"""The solvers: sgd.py (the one minibatch-SGD epoch loop, for m >= 1 models), lbfgs.py (full-batch
L-BFGS on the fused loss and gradient) and dask.py (both on a Dask array's chunks). They take arrays
a model validated once and call only the trusted paths of fastsoftmax.ops."""
