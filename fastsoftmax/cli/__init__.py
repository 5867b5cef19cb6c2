"""The command lines: train.py (``python -m fastsoftmax.train``, with sweep.py for several --lr or
--weight-decay values and dask.py for --dask), predict.py, warmup.py, and what they share
(common.py: one-line errors, exit codes, flags from the hyper-parameter table; report.py: figures
and the confusion matrix)."""
