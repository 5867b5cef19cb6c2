"""Where a training run's data comes from: the svmlight files of --train and --test, or an idx data set
(``python -m fastsoftmax.train``'s flags, checked and loaded).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from ..io.datasets import load_dataset
from ..io.idx import MAX_BYTES
from ..io.svmlight import load_svmlight, parse_svmlight_name
from ..solvers.dask import persist
from .common import given


def check_data_flags(parser, args):
    """A usage error naming the flags, right after parsing, for --train (svmlight files) with the flags of
    an idx data set (--dataset, --data-dir, --dask), or --test without --train."""
    if args.test and not args.train:
        parser.error("--test FILE scores the model of --train FILE; give --train too (an idx data set "
                     "brings its own test images)")
    if not args.train:
        return
    idx_flags = [flag for flag, typed in (("--dataset", "dataset" in given(args)), ("--data-dir", args.data_dir),
                                          ("--dask", args.dask)) if typed]
    if idx_flags:
        parser.error(f"--train reads svmlight files, {' and '.join(idx_flags)} an idx data set: give one or "
                     "the other")


def check_resumed_source(args, dataset):
    """ValueError unless --train names the file the resumed model was trained on (by its name), or, without
    --train, the model was trained on an idx data set."""
    trained_on = parse_svmlight_name(dataset)  # (file name, zero-based), or None for an idx data set
    if args.train and (trained_on is None or trained_on[0] != os.path.basename(args.train)):
        raise ValueError(f"{args.resume} was trained on {dataset}; resuming it on --train {args.train} would "
                         "change the steps already taken: give the file it was trained on, or start a new run")
    if not args.train and trained_on is not None:
        raise ValueError(f"{args.resume} was trained on the svmlight file {trained_on[0]}: resume it with "
                         f"--train {trained_on[0]} (and its --test file)")


def load_data(args, dataset, model):
    """What the run trains on: the svmlight files of --train and --test, else the idx data set `dataset`
    (with --dask its training images chunked, and kept in the cluster's memory where they fit).

    The svmlight files are read as float32, what SGD computes in, halving the memory of float64; for
    lbfgs and newton-cg as float64, for the float64 optimum it reaches on uint8 pixels. A resumed model reads them
    with its own features and indices' base (which its dataset name keeps).
    """
    if args.train:
        dtype = np.float32 if model.solver == "sgd" else np.float64
        if not args.resume:
            return load_svmlight(args.train, args.test, dtype=dtype)
        zero_based = parse_svmlight_name(model.dataset_)[1]  # an svmlight file's name: check_resumed_source
        return load_svmlight(args.train, args.test, dtype=dtype, n_features=model.coef_.shape[1],
                             zero_based=zero_based)
    data = load_dataset(dataset, args.data_dir, chunked=bool(args.dask))
    if args.dask and data.x_train.nbytes <= MAX_BYTES:
        data = dataclasses.replace(data, x_train=persist(data.x_train))  # in memory: sent once
    return data


def eval_set(data):
    """The test rows scored after each epoch: (X, y), or None where --train came without --test."""
    return None if data.x_test is None else (data.x_test, data.y_test)
