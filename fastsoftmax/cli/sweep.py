"""The sweep's part of ``python -m fastsoftmax.train``: several --lr or --weight-decay values.

``--lr 0.1,0.3,1.0 --weight-decay 0,1e-4`` trains the grid's six models in
one pass per epoch (fastsoftmax.models.sweep.SoftmaxRegressionSweep), holding out
--validation-fraction of the training images to choose by. It prints a line
per epoch (the models' loss range and the best validation accuracy so far),
then the table of the models and the chosen model's test accuracy, the only
use of the test images. --save writes the chosen model after every epoch (the
best one of that epoch) and at the end, so Ctrl-C keeps the last finished
epoch's; --json and --plot write the results and the chosen model's curves.
One value of each keeps train.py's single run.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time

import numpy as np
from tqdm import tqdm

from ..io.atomic import exclusive
from ..io.datasets import load_dataset
from ..models.estimator import SoftmaxRegression, TrainingDivergedError
from ..models.hyperparameters import HYPERPARAMETERS
from ..models.sweep import SHARED, VALIDATION_FRACTION, SoftmaxRegressionSweep
from ..ops.dispatch import device_name, resolve_device
from ..ops.validation import Rule
from .common import Explicit, flag_type, given, plural, save_model, steps_note

FRACTION = Rule(float, low=0, strict=True)  # and below 1: SoftmaxRegressionSweep checks the rest
# Training rows per class below which a line warns that --validation-fraction leaves the models too few to learn from.
FEW_PER_CLASS = 10


def add_arguments(parser):
    parser.add_argument("--validation-fraction", metavar="F", type=flag_type(FRACTION), default=VALIDATION_FRACTION,
                        action=Explicit, help="with several --lr or --weight-decay values: the share of the "
                        f"training images held out to choose the model by (default: {VALIDATION_FRACTION}); "
                        f"one that leaves fewer than {FEW_PER_CLASS} training images per class is warned about")


def sweeping(args) -> bool:
    """True where --lr or --weight-decay lists several values; --validation-fraction without them is refused."""
    grid = isinstance(args.lr, tuple) or isinstance(args.weight_decay, tuple)
    if not grid and "validation_fraction" in given(args):
        raise ValueError("--validation-fraction holds out images to choose a sweep's model by: give several "
                         "--lr or --weight-decay values (comma-separated), or leave it out")
    return grid


def _values(value):
    return value if isinstance(value, tuple) else (value,)


def run(args, out, checkpoint):
    """The sweep of the command line: (the chosen model, the data set, the device, the results)."""
    for flag, value in (("--resume", args.resume), ("--dask", getattr(args, "dask", None))):
        if value:
            raise ValueError(f"{flag} runs one model; a sweep (several --lr or --weight-decay values) cannot "
                             "take it: give one value of each")
    lrs, weight_decays = _values(args.lr), _values(args.weight_decay)
    if "auto" in lrs:
        raise ValueError("--lr auto trains one model; a sweep's --lr takes numbers (e.g. --lr 0.1,0.5), each the "
                         "peak step on the pixels / 255")
    flags = {p.name: getattr(args, p.name) for p in HYPERPARAMETERS if p.flag}
    SoftmaxRegression(**flags | {"lr": lrs[0], "weight_decay": weight_decays[0]}).validate_params()  # --C, ...
    if args.solver != "sgd":
        raise ValueError(f"a sweep trains SGD models; --solver {args.solver} takes one --lr and --weight-decay")
    sweep = SoftmaxRegressionSweep(lrs=lrs, weight_decays=weight_decays, validation_fraction=args.validation_fraction,
                                   **{name: flags[name] for name in SHARED})
    sweep.validate_params()
    device = resolve_device(args.device)  # fail on a missing GPU before loading data
    with exclusive(args.save, "--save") if args.save else contextlib.nullcontext():
        data = load_dataset(args.dataset, args.data_dir)
        result = train(args, sweep, data, device, out, checkpoint)
    return sweep.best_estimator_, data, device, result


def train(args, sweep, data, device, out, checkpoint):
    say = (lambda line: None) if args.quiet else (lambda line: tqdm.write(line, file=out))
    grid = sweep.grid()
    held = len(sweep.split(len(data.x_train))[1])
    say(f"{data.name}: {len(data.x_train) - held} train + {held} validation / {len(data.x_test)} test images from "
        f"{data.source}; device {device_name(device)}; sweep of {len(grid)} models (lr "
        f"{_listed(sweep.lrs)} x weight decay {_listed(sweep.weight_decays)}), "
        "one pass per epoch")
    warn_if_few(args, len(data.x_train) - held, held, len(data.classes))
    if note := steps_note(len(data.x_train) - held, sweep.batch_size):
        say(note)
    bar = tqdm(total=sweep.epochs, unit="epoch", leave=False, disable=True if args.quiet else None)
    clock = [time.perf_counter()]

    def report(sweep, epoch):
        now, losses = time.perf_counter(), sweep.cv_results_["train_loss"]
        live = losses[sweep.cv_results_["diverged_epoch"] == 0]
        lr, wd = sweep.best_params_["lr"], sweep.best_params_["weight_decay"]
        say(f"epoch {epoch}/{sweep.epochs}  loss {live.min():.4f}-{live.max():.4f}  best val acc "
            f"{sweep.best_score_:.4f} (lr {lr:g}, weight decay {wd:g})  {len(live)}/{len(grid)} models  "
            f"({now - clock[0]:.2f} s)")
        clock[0] = now
        bar.update()
        if args.save:  # the best model of each epoch: an interrupted sweep loses one epoch at most
            save_model(sweep.best_estimator_, args.save, data.name, f"epoch {epoch}", checkpoint, resumable=False)
            checkpoint["epoch"] = epoch

    start = time.perf_counter()
    try:
        with bar:
            sweep.fit(data.x_train, data.y_train, callback=report, classes=data.classes)
    except TrainingDivergedError as e:
        raise ValueError(f"every model of the sweep diverged (the last in epoch {e.epoch}); try smaller --lr "
                         "or --weight-decay values") from None
    seconds = time.perf_counter() - start
    model = sweep.best_estimator_
    print(table(sweep), file=out)
    test_acc = model.score(data.x_test, data.y_test)
    epoch_seconds = statistics.median(r["train_seconds"] for r in model.history_)  # the sweep's epochs
    fit_rows = len(data.x_train) - held
    print(f"chosen: lr {sweep.best_params_['lr']:g}, weight decay {sweep.best_params_['weight_decay']:g} (val acc "
          f"{sweep.best_score_:.4f})  test accuracy {test_acc:.4f}  |  {len(grid)} models x "
          f"{plural(sweep.epochs, 'epoch')} in "
          f"{seconds:.2f} s (median epoch {epoch_seconds * 1e3:.1f} ms, "
          f"{len(grid) * fit_rows / epoch_seconds:,.0f} model-examples/s)  |  device {device_name(device)}", file=out)
    last = model.history_[-1]
    results = sweep.cv_results_
    models = [{"lr": p["lr"], "weight_decay": p["weight_decay"], "val_acc": _number(results["mean_test_score"][i]),
               "rank": int(results["rank_test_score"][i]), "train_acc": _number(results["mean_train_score"][i]),
               "loss": _number(results["train_loss"][i]), "diverged_epoch": int(results["diverged_epoch"][i])}
              for i, p in enumerate(results["params"])]
    return {"dataset": data.name, "device": device, "device_name": device_name(device), "solver": "sgd",
            "test_acc": test_acc, "val_acc": sweep.best_score_, "train_acc": last["train_acc"], "loss": last["loss"],
            "chosen": sweep.best_params_, "validation_rows": held, "models": models, "seconds": seconds,
            "median_epoch_seconds": epoch_seconds, "params": model.get_params(), "history": model.history_}


def warn_if_few(args, fit_rows, held, n_classes):
    """One warning line on stderr where --validation-fraction leaves fewer than FEW_PER_CLASS training
    images per class: the sweep still runs, but its models learn from next to nothing."""
    if fit_rows < FEW_PER_CLASS * n_classes:
        print(f"python -m fastsoftmax.train: warning: --validation-fraction {args.validation_fraction:g} leaves "
              f"{plural(fit_rows, 'training image')} for {n_classes} classes ({held} held out), fewer than "
              f"{FEW_PER_CLASS} per class: the models learn from next to nothing; lower --validation-fraction "
              "(or train on more images)", file=sys.stderr)


def _listed(values):
    return ", ".join(f"{v:g}" for v in values)


def _number(x):
    """A float for JSON: None for NaN (a diverged model's score)."""
    return None if np.isnan(x) else float(x)


def table(sweep):
    """The models of a fitted sweep, one line each, the chosen one marked with *."""
    results = sweep.cv_results_
    lines = ["  lr        weight decay  train loss  train acc  val acc"]
    for i, p in enumerate(results["params"]):
        mark = "*" if i == sweep.best_index_ else " "
        if results["diverged_epoch"][i]:
            scores = f"diverged in epoch {results['diverged_epoch'][i]}"
        else:
            scores = (f"{results['train_loss'][i]:10.4f}  {results['mean_train_score'][i]:9.4f}  "
                      f"{results['mean_test_score'][i]:7.4f}")
        lines.append(f"{mark} {p['lr']:<9g} {p['weight_decay']:<12g}  {scores}")
    return "\n".join(lines)
