"""Train softmax regression on an idx data set, or on svmlight files: ``python -m fastsoftmax.train``.

Prints one line per epoch and a summary; --save, --json and --plot write the
model, the results and the training curves (each file atomically, each path
checked before training starts). Bad input ends with one line on stderr and
exit status 2 (usage) or 1 (data, device, outputs, divergence).
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import sys
import time
import warnings

from sklearn.exceptions import ConvergenceWarning
from tqdm import tqdm

from ..io.atomic import OutputError, atomic_write, check_apart, check_outputs, exclusive
from ..io.datasets import DATASET_NAMES
from ..models.estimator import SoftmaxRegression, TrainingDivergedError, sgd_batch_size
from ..models.hyperparameters import DEFAULTS, HYPERPARAMETERS
from ..models.sweep import SHARED
from ..ops.dispatch import device_name, resolve_device
from ..ops.validation import FULL_BATCH
from . import sweep
from .common import (
    Explicit,
    Parser,
    add_hyperparameters,
    data_inputs,
    figure_file,
    figure_formats,
    given,
    output_file,
    plural,
    run_command,
    save_model,
    steps_note,
)
from .dask import connect, scheduler_flag
from .data import check_data_flags, check_resumed_source, eval_set, load_data
from .warmup import fit_kernels

PROG = "python -m fastsoftmax.train"
STDOUT = ("-", "/dev/stdout")  # --json to standard output
# What --resume keeps: each changes the steps already taken (or, for the seed,
# the order of the rows), so a resumed run would not be the run it continues.
KEPT_ON_RESUME = ("solver", "batch_size", "lr", "schedule", "weight_decay", "seed", "class_weight")
# The outputs: (flag, the name of its value in args, the file name a folder given for it is told to add).
OUTPUTS = (("--save", "save", "model.npz"), ("--json", "json", "results.json"), ("--plot", "plot", "curves.png"))


def build_parser():
    p = Parser(prog=PROG, description="Train softmax regression (multinomial logistic regression) on an idx data set.")
    p.add_argument("--dataset", choices=DATASET_NAMES, default="fashion-mnist", action=Explicit)
    p.add_argument("--data-dir", metavar="DIR",
                   help="the folder with the four idx files, downloaded there if missing (default: "
                        "$FASTSOFTMAX_DATA, else the cache or /usr/share/datasets)")
    p.add_argument("--train", metavar="FILE",
                   help="train on an svmlight/libsvm file (.gz and .bz2 too) instead of an idx data set")
    p.add_argument("--test", metavar="FILE",
                   help="with --train: the svmlight file scored after each epoch (its features join the union)")
    # --epochs, --lr, --device, ...: SoftmaxRegression's own; several --lr or --weight-decay values: a sweep
    add_hyperparameters(p, HYPERPARAMETERS, grids=("lr", "weight_decay"))
    sweep.add_arguments(p)
    p.add_argument("--dask", metavar="ADDRESS|local:N", type=scheduler_flag,
                   help="train on a Dask cluster: a scheduler's address, or local:N to start N local worker "
                        "processes; the training images are read chunk by chunk (memory-mapped from a raw, "
                        "not .gz, file, so they may outgrow memory)")
    p.add_argument("--save", metavar="PATH", type=output_file("model.npz"),
                   help="save the model (.npz), also after every epoch")
    p.add_argument("--resume", metavar="PATH",
                   help="continue a run from a model saved with --save (flags left out keep the run's values; "
                        "--save the same PATH to keep it going)")
    p.add_argument("--plot", metavar="PATH", type=figure_file("curves.png"),
                   help=f"save the training curves as a figure, in the format its extension names "
                        f"({', '.join(figure_formats())}; none: png)")
    p.add_argument("--json", metavar="PATH", type=output_file("results.json"),
                   help="write the results as JSON ('-': standard output)")
    p.add_argument("--quiet", action="store_true", help="print the summary only")
    return p


def check_solver_flags(parser, args):
    """--C with SGD or --weight-decay with lbfgs or newton-cg: a usage error naming the flags, right after
    parsing (SoftmaxRegression.validate_params refuses the same pairs, in its parameters' names)."""
    solver, other = args.solver, "lbfgs" if args.solver == "sgd" else "sgd"
    refused, takes = ("C", "--weight-decay") if solver == "sgd" else ("weight_decay", "--C")
    value = getattr(args, refused)
    if value != DEFAULTS[refused]:
        flag = "--" + refused.replace("_", "-")
        shown = ",".join(f"{v:g}" for v in (value if isinstance(value, tuple) else (value,)))
        default = " (the default)" if solver == DEFAULTS["solver"] else ""
        parser.error(f"{flag} {shown} is the {other} solver's penalty; --solver {solver}{default} takes {takes} "
                     f"instead: leave {flag} out, or use --solver {other}")


def output_files(args):
    """(flag, path, example file name) of each output; --json - (standard output) has no path."""
    return [(flag, None if name == "json" and args.json in STDOUT else getattr(args, name), example)
            for flag, name, example in OUTPUTS]


def check_output_flags(args):
    """Before any work: OutputError naming the flag unless every output path can be written."""
    if args.json in STDOUT and (sys.stdout is None or sys.stdout.closed):
        raise OutputError(f"--json {args.json}: standard output is closed; give --json a file name, or run "
                          "with standard output open")
    check_outputs(output_files(args))


def check_inputs_kept(args, dataset):
    """Before loading data: OutputError unless each output is a file of its own and none is one the run
    reads (the data set's four files or --train's and --test's, --resume's model, which --save alone may
    continue)."""
    data = [("--train", args.train), ("--test", args.test)] if args.train else data_inputs(dataset, args.data_dir)
    inputs = [("--resume", args.resume), *data]
    check_apart([output[:2] for output in output_files(args)], inputs, rewrites={("--save", "--resume")})


def resumed_model(args):
    """The model of --resume, its flags checked against the saved run's, and the data set's name."""
    model = SoftmaxRegression.load(args.resume)
    if {model.solver, args.solver} & set(FULL_BATCH):  # L-BFGS's curvature memory lives only in the run
        raise ValueError(f"--resume continues SGD runs; an {args.solver if model.solver == 'sgd' else model.solver} "
                         f"run cannot be resumed ({args.resume} was trained with --solver {model.solver}): start a "
                         "new run")
    if model.history_ and "val_acc" in model.history_[0]:  # a sweep's choice, trained on part of the images
        raise ValueError(f"{args.resume} was chosen by a sweep, which held out validation images from its "
                         "training: it cannot be resumed as a single run; start a new run")
    saved, typed = model.get_params(), given(args)
    changed = [name for name in KEPT_ON_RESUME if name in typed and getattr(args, name) != saved[name]]
    dataset = model.dataset_ or args.dataset  # files of format /1 do not name it
    check_resumed_source(args, dataset)
    if "dataset" in typed and args.dataset != dataset:
        changed.append("dataset")
        saved["dataset"] = dataset
    if changed:
        def flags(values):
            return ", ".join(f"--{n.replace('_', '-')} {values[n]}" for n in changed)

        raise ValueError(f"{args.resume} was trained with {flags(saved)}; resuming with "
                         f"{flags(vars(args))} would change the steps already taken: leave those flags out, "
                         "or start a new run")
    epochs = args.epochs if "epochs" in typed else saved["epochs"]
    if epochs != saved["epochs"] and saved["schedule"] != "constant":
        raise ValueError(f"{args.resume} follows a {saved['schedule']} schedule over "
                         f"{plural(saved['epochs'], 'epoch')}; "
                         f"--epochs {epochs} would change the learning rate of every step: resume with "
                         f"--epochs {saved['epochs']} (or leave it out); only a constant schedule can be extended")
    model.set_params(epochs=epochs, device=args.device, warm_start=True)
    return model, dataset


def run(args, checkpoint):
    json_to_stdout = args.json in STDOUT
    out = sys.stderr if json_to_stdout else sys.stdout  # --json -: standard output holds just the JSON
    check_output_flags(args)
    check_inputs_kept(args, args.dataset)
    if sweep.sweeping(args):  # several --lr or --weight-decay values: cli/sweep.py
        if args.dask:
            raise ValueError("--dask trains one model; a sweep (several --lr or --weight-decay values) runs in "
                             "memory: give one value of each, or leave --dask out")
        if args.train:
            raise ValueError("a sweep (several --lr or --weight-decay values) trains on an idx data set; with "
                             "--train give one value of each")
        if args.class_weight and "class_weight" not in SHARED:
            raise ValueError("--class-weight trains one model; a sweep (several --lr or --weight-decay values) "
                             "weighs every row alike: give one value of each, or leave --class-weight out")
        write_outputs(args, *sweep.run(args, out, checkpoint), json_to_stdout)
        return
    if args.resume:  # warm_start resumes the schedule after the epochs already in history_
        model, dataset = resumed_model(args)
        if dataset != args.dataset and not args.train:  # the saved run's data set, whose files may lie elsewhere
            check_inputs_kept(args, dataset)
    else:
        model = SoftmaxRegression(**{p.name: getattr(args, p.name) for p in HYPERPARAMETERS if p.flag})
        dataset = args.dataset
    done = len(getattr(model, "history_", []))
    if done >= model.epochs:
        raise ValueError(f"{args.resume} has already trained {plural(done, 'epoch')}; ask for more with --epochs")
    device = resolve_device(args.device)  # fail on a missing GPU before loading data
    # One run at a time writes a checkpoint: two would interleave their epochs in one file.
    with (exclusive(args.save, "--save") if args.save else contextlib.nullcontext(),
          connect(args.dask) if args.dask else contextlib.nullcontext() as client):
        data = load_data(args, dataset, model)
        result = train(args, model, data, device, done, out, checkpoint, client)
    write_outputs(args, model, data, device, result, json_to_stdout)


def train(args, model, data, device, done, out, checkpoint, client=None):
    """The fit of the command line, from its first line to its summary: the results for --json."""
    say = (lambda line: None) if args.quiet else (lambda line: tqdm.write(line, file=out))
    if args.resume and not args.save:  # a note, not an error: a trial continuation may be what is wanted
        print(f"{PROG}: note: --resume without --save: the continued run is not saved; add --save {args.resume} "
              "to keep it", file=sys.stderr)
    announce(say, args, model, data, device, done, client)
    # The fit's kernels compiled (or loaded from the cache) before its first epoch, a line saying so as they compile.
    compile_seconds, compiled = (0.0, False) if client is not None else fit_kernels(
        model, data.x_train, data.y_train, eval_set(data), data.classes, say)
    start = time.perf_counter()
    caught = fit(args, model, data, done, say, checkpoint)
    seconds = time.perf_counter() - start
    report_warnings(caught, model, say)
    if model.solver in FULL_BATCH and args.save:
        save_model(model, args.save, data.name, "the result", checkpoint, resumable=False)
    last = model.history_[-1]
    result = {"dataset": data.name, "device": device, "device_name": device_name(device),
              "solver": model.solver, "test_acc": last.get("test_acc"), "train_acc": last["train_acc"],
              "loss": last["loss"], "seconds": seconds, "compile_seconds": compile_seconds, "compiled": compiled,
              "params": model.get_params(), "history": model.history_}
    return result | summary(model, data, device, model.history_[done:], seconds, out)


def announce(say, args, model, data, device, done, client):
    """The lines before training: the data, the device and solver, the Dask cluster, the resumed run."""
    unit = "images" if hasattr(data, "image_shape") else "rows"
    test = "" if data.x_test is None else f" / {data.x_test.shape[0]} test"
    say(f"{data.name}: {data.x_train.shape[0]} train{test} {unit} from {data.source}; "
        f"device {device_name(device)}; solver {model.solver}")
    if client is not None:
        workers = client.scheduler_info()["workers"].values()
        threads = sum(w["nthreads"] for w in workers)
        say(f"dask: {plural(len(workers), 'worker')} ({plural(threads, 'thread')}) at "
            f"{client.scheduler.address}; {data.x_train.numblocks[0]} chunks of up to "
            f"{data.x_train.chunks[0][0]} images")
    if done:
        say(f"resuming from {args.resume} after epoch {done}")
    rows = data.x_train.shape[0]
    if model.solver == "sgd" and (note := steps_note(rows, sgd_batch_size(model.lr, model.batch_size, rows), unit)):
        say(note)


def fit(args, model, data, done, say, checkpoint):
    """model.fit on the data set with a line per epoch (or iteration) and the --save checkpoints; the
    warnings it gave. Divergence is one line naming the flags; Ctrl-C during lbfgs or newton-cg saves the last
    iterate."""
    full_batch = model.solver in FULL_BATCH
    total = model.max_iter if full_batch else model.epochs
    bar = tqdm(total=total, initial=done, unit="iter" if full_batch else "epoch", leave=False,
               disable=True if args.quiet else None)

    def report(model, record):
        accuracy = f"train acc {record['train_acc']:.4f}" + (
            f"  test acc {record['test_acc']:.4f}" if "test_acc" in record else "")  # none without --test
        if full_batch:
            say(f"iteration {record['epoch']}/{total}  loss {record['loss']:.6f}  "
                f"gradient max {record['grad_max']:.2e}  {accuracy}  ({record['seconds']:.2f} s)")
        else:
            say(f"epoch {record['epoch']}/{model.epochs}  loss {record['loss']:.4f}  {accuracy}  "
                f"({record['seconds']:.2f} s)")
        bar.update()
        # A checkpoint per epoch: an interrupted run loses one epoch at most. lbfgs and newton-cg have
        # none per iteration: the run ends (or is interrupted) with one --save.
        if args.save and not full_batch:
            save_model(model, args.save, data.name, f"epoch {record['epoch']}", checkpoint)
            checkpoint["epoch"] = record["epoch"]

    try:
        with bar, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            # The data set's classes, not just the labels present: train, the saved model and predict agree.
            model.fit(data.x_train, data.y_train, eval_set=eval_set(data), callback=report, classes=data.classes)
    except TrainingDivergedError as e:
        kept = f"; the last finite epoch ({checkpoint['epoch']}) is in {args.save}" if "epoch" in checkpoint else ""
        raise ValueError(f"training diverged in epoch {e.epoch}: {e.what} (--lr {e.lr}, "
                         f"--weight-decay {e.weight_decay}); try a smaller --lr or "
                         f"--weight-decay{kept}") from None
    except KeyboardInterrupt:
        if full_batch and args.save and model.history_:  # Ctrl-C keeps the last iterate: save it
            model.save(args.save, dataset=data.name)
            checkpoint["iteration"] = len(model.history_)
        raise
    return caught


def report_warnings(caught, model, say):
    """The fit's warnings: a ConvergenceWarning as one line naming the flags, the others as they came."""
    for w in caught:
        if issubclass(w.category, ConvergenceWarning) and model.solver in FULL_BATCH:
            stopped = "max_iter" in str(w.message)  # else newton-cg's line search found no step
            say(f"note: {model.solver} stopped at --max-iter {model.max_iter} before the gradient reached --tol "
                f"{model.tol}" if stopped else f"note: {w.message}")
        elif issubclass(w.category, ConvergenceWarning):  # solvers/sgd.py's warn_if_not_learning
            fixes = "lower --lr" if model.lr == "auto" else "leave --lr at auto, lower it,"
            print(f"{PROG}: warning: the training loss is {model.history_[-1]['loss']:.4g} after "
                  f"{plural(len(model.history_), 'epoch')}, above all-zero weights' "
                  f"({math.log(len(model.classes_)):.3g}): "
                  f"--lr {model.lr_:g} is likely too large for these features' scale; {fixes} or use --solver "
                  "lbfgs", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def summary(model, data, device, ran, seconds, out):
    """The last line, on the records of this run (`ran`); the results it adds for --json."""
    last = model.history_[-1]
    accuracy = ("" if "test_acc" not in last else f"test accuracy {last['test_acc']:.4f}  ") + (
        f"train accuracy {last['train_acc']:.4f}")
    rows = data.x_train.shape[0]
    if model.solver in FULL_BATCH:
        print(f"{accuracy}  |  {plural(len(ran), model.solver + ' iteration')} in {seconds:.2f} s, objective "
              f"{last['loss']:.6f}, gradient max {last['grad_max']:.2e}  |  device {device_name(device)}", file=out)
        return {"iterations": len(ran)}
    # The median epoch: the first one also warms the caches (and, with --dask, loads the kernels on the workers).
    epoch_seconds = statistics.median(r["train_seconds"] for r in ran)
    print(f"{accuracy}  |  {plural(len(ran), 'epoch')} in {seconds:.2f} s (median epoch {epoch_seconds * 1e3:.1f} "
          f"ms, {rows / epoch_seconds:,.0f} examples/s)  |  device {device_name(device)}", file=out)
    return {"lr": model.lr_, "batch_size": model.batch_size_,  # as --lr resolved them
            "train_seconds": sum(r["train_seconds"] for r in ran), "median_epoch_seconds": epoch_seconds,
            "examples_per_second": rows / epoch_seconds}


def write_outputs(args, model, data, device, result, json_to_stdout):
    """--json and --plot, each tried whatever became of the other; one error naming all that failed."""
    failed = []
    if args.json:
        try:
            if json_to_stdout:
                json.dump(result, sys.stdout, indent=2)
                sys.stdout.write("\n")
            else:
                with atomic_write(args.json, "w") as f:
                    json.dump(result, f, indent=2)
        except (OSError, ValueError) as e:
            failed.append(f"--json {args.json}: {e}")
    if args.plot:
        from .report import plot_history  # matplotlib only when asked for

        try:
            plot_history(model.history_, args.plot, title=f"{data.name}, {device_name(device)}")
        except (OSError, ValueError) as e:
            failed.append(f"--plot {args.plot}: {e}")
    if failed:
        raise OSError("; ".join(failed))


def main(argv=None, *, exiting=False):
    """The command line; `exiting`: the process exits with the status it returns (run_command)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_solver_flags(parser, args)
    check_data_flags(parser, args)
    checkpoint = {}  # "epoch": the last one --save wrote in this run

    def interrupted():
        if "iteration" in checkpoint:
            return f"; the last {args.solver} iterate (iteration {checkpoint['iteration']}) is in {args.save}"
        return f"; the last finished epoch ({checkpoint['epoch']}) is in {args.save}" if checkpoint else ""

    return run_command(PROG, lambda args: run(args, checkpoint), args, interrupted, exiting=exiting)


if __name__ == "__main__":
    sys.exit(main(exiting=True))
