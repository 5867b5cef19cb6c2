"""The definitions every backend must reproduce: the float64 NumPy kernels (kernels.py) the tests
compare against, the learning-rate schedules and the epoch's order of rows."""
