"""Train softmax regression on an idx data set: ``python -m fastsoftmax.train``.

Prints one line per epoch and a summary; --save, --json and --plot write the
model, the results and the training curves (each file atomically). Bad input
ends with one line on stderr and exit status 2 (usage) or 1 (data, device).
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from tqdm import tqdm

from .atomic import atomic_write
from .backend import device_name, resolve_device
from .cli import Parser, add_hyperparameters, run_command
from .datasets import DATASET_NAMES, load_dataset
from .estimator import SoftmaxRegression
from .hyperparameters import HYPERPARAMETERS

PROG = "python -m fastsoftmax.train"


def build_parser():
    p = Parser(prog=PROG, description="Train softmax regression (multinomial logistic regression) on an idx data set.")
    p.add_argument("--dataset", choices=DATASET_NAMES, default="fashion-mnist")
    p.add_argument("--data-dir", metavar="DIR", help="folder with the four idx files (else $FASTSOFTMAX_DATA, the cache, /usr/share/datasets)")
    add_hyperparameters(p, HYPERPARAMETERS)  # --epochs, --lr, --device, ...: SoftmaxRegression's own
    p.add_argument("--save", metavar="PATH", help="save the model (.npz), also after every epoch")
    p.add_argument("--resume", metavar="PATH", help="continue a run from a model saved with --save (same flags)")
    p.add_argument("--plot", metavar="PATH", help="save the training curves as a PNG")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--quiet", action="store_true", help="print the summary only")
    return p


def run(args):
    params = {p.name: getattr(args, p.name) for p in HYPERPARAMETERS if p.flag}
    if args.resume:  # warm_start resumes the schedule after the epochs already in history_
        model = SoftmaxRegression.load(args.resume).set_params(**params, warm_start=True)
    else:
        model = SoftmaxRegression(**params)
    done = len(getattr(model, "history_", []))
    if done >= args.epochs:
        raise ValueError(f"{args.resume} has already trained {done} epochs; ask for more with --epochs")
    device = resolve_device(args.device)  # fail on a missing GPU before loading data
    data = load_dataset(args.dataset, args.data_dir)
    say = (lambda line: None) if args.quiet else tqdm.write
    say(f"{data.name}: {len(data.x_train)} train / {len(data.x_test)} test images from {data.source}; "
        f"device {device_name(device)}")

    if done:
        say(f"resuming from {args.resume} after epoch {done}")
    bar = tqdm(total=args.epochs, initial=done, unit="epoch", leave=False, disable=True if args.quiet else None)

    def report(model, record):
        say(f"epoch {record['epoch']}/{args.epochs}  loss {record['loss']:.4f}  "
            f"train acc {record['train_acc']:.4f}  test acc {record['test_acc']:.4f}  "
            f"({record['seconds']:.2f} s)")
        bar.update()
        if args.save:  # a checkpoint per epoch: an interrupted run loses one epoch at most
            model.save(args.save)

    start = time.perf_counter()
    with bar:
        model.fit(data.x_train, data.y_train, eval_set=(data.x_test, data.y_test), callback=report)
    seconds = time.perf_counter() - start
    ran = model.history_[done:]
    train_seconds = sum(r["train_seconds"] for r in ran)
    # The median epoch: the first one also compiles (or loads) the kernels.
    epoch_seconds = statistics.median(r["train_seconds"] for r in ran)
    rate = len(data.x_train) / epoch_seconds
    last = model.history_[-1]
    print(f"test accuracy {last['test_acc']:.4f}  train accuracy {last['train_acc']:.4f}  |  "
          f"{len(ran)} epochs in {seconds:.2f} s (median epoch {epoch_seconds * 1e3:.1f} ms, "
          f"{rate:,.0f} examples/s)  |  device {device_name(device)}")

    if args.json:
        result = {"dataset": data.name, "device": device, "device_name": device_name(device),
                  "test_acc": last["test_acc"], "train_acc": last["train_acc"], "loss": last["loss"],
                  "seconds": seconds, "train_seconds": train_seconds, "median_epoch_seconds": epoch_seconds,
                  "examples_per_second": rate,
                  "params": model.get_params(), "history": model.history_}
        with atomic_write(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if args.plot:
        from .plots import plot_history  # matplotlib only when asked for

        plot_history(model.history_, args.plot, title=f"{data.name}, {device_name(device)}")


def main(argv=None):
    args = build_parser().parse_args(argv)
    interrupted = f"; the last finished epoch is in {args.save}" if args.save else ""
    return run_command(PROG, run, args, interrupted)


if __name__ == "__main__":
    sys.exit(main())
