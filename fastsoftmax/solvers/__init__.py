"""The solvers: sgd.py (the one minibatch-SGD epoch loop, for m >= 1 models), lbfgs.py and newton.py
(full-batch L-BFGS and Newton-CG on objective.py's LogisticRegression objective, each pass one fused
kernel call) and dask.py (all of them on a Dask array's chunks). They take arrays a model validated once
and call only fastsoftmax.ops."""
