"""What the command lines share: one-line errors, --debug, the exit codes, and
flags made from the hyper-parameter table."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from ..io.datasets import dataset_files, read_in_place_of
from ..ops.validation import POSITIVE_INT, Rule


class Parser(argparse.ArgumentParser):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_argument("--debug", action="store_true",
                          help="on an error, show the full traceback (also FASTSOFTMAX_DEBUG=1)")

    def error(self, message):
        """One line, not argparse's usage block: the message names the flag."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def flag_type(rule: Rule):
    """An argparse type that reads a word by `rule`; a bad word is argparse's one-line error."""

    def parse(text):
        try:
            return rule.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


positive_int = flag_type(POSITIVE_INT)


def grid_type(rule: Rule):
    """flag_type for a flag that also takes a comma-separated list: one value as flag_type gives
    it, several as a tuple (a sweep's grid: cli/sweep.py)."""
    one = flag_type(rule)

    def parse(text):
        values = tuple(one(word.strip()) for word in text.split(","))
        if len(set(values)) < len(values):
            raise argparse.ArgumentTypeError(f"lists a value twice: {text!r}")
        return values[0] if len(values) == 1 else values

    return parse


class Explicit(argparse._StoreAction):
    """Store the value and note, in ``args.explicit``, that the flag was given (--resume keeps the rest)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.explicit = getattr(namespace, "explicit", set()) | {self.dest}


def given(args) -> set:
    """The names of the flags typed on the command line (those stored with Explicit)."""
    return getattr(args, "explicit", set())


def add_hyperparameters(parser, hyperparameters, grids=()):
    """--<name> for each hyper-parameter with a flag: its rule, default and help from the table.
    The flags of the names in `grids` also take comma-separated lists (grid_type)."""
    for p in hyperparameters:
        if not p.flag:
            continue
        flag, help = "--" + p.name.replace("_", "-"), f"{p.help} (default: {p.default})"
        if p.rule.choices:
            parser.add_argument(flag, choices=p.rule.choices, default=p.default, help=help, action=Explicit)
        elif p.name in grids:
            parser.add_argument(flag, type=grid_type(p.rule), default=p.default, action=Explicit,
                                help=help + "; several, comma-separated, train one model each in one pass (a sweep)")
        else:
            parser.add_argument(flag, type=flag_type(p.rule), default=p.default, help=help, action=Explicit)


def data_inputs(dataset, data_dir):
    """The data set's files as io.atomic.check_apart's inputs: each file a run reads, and beside a .gz one
    the raw name the next run would read in its place; none where the run would download them."""
    found = dataset_files(dataset, data_dir) or ()
    return ([(f"{dataset}'s file", path) for path in found]
            + [(f"{dataset}'s file", shadow, path) for path in found if (shadow := read_in_place_of(path))])


def plural(count, word) -> str:
    """'1 epoch', '3 epochs': the count and its word, in the plural unless the count is 1."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def output_file(example):
    """An argparse type for an output file's path. One ending in a separator names a folder, and writing
    it would make a file of the folder's name: refused, naming a file in it (`example`) as the fix."""

    def parse(text):
        if text.endswith(("/", os.sep)):
            raise argparse.ArgumentTypeError(f"{text!r} names a folder; give a file name, such as "
                                             f"{os.path.join(text, example)}")
        return text

    return parse


def figure_formats() -> tuple[str, ...]:
    """The file extensions a figure can be written as: matplotlib's PNG, PDF and SVG, and JPEG where Pillow is."""
    try:
        import PIL  # noqa: F401 - matplotlib writes JPEG through it
    except ImportError:
        return ("png", "pdf", "svg")
    return ("png", "pdf", "svg", "jpg", "jpeg")


def figure_format(path) -> str:
    """The format a figure's file is written in, named by its extension (none: PNG); ValueError for an
    extension it cannot be written in, which would otherwise get PNG bytes under another format's name."""
    extension = os.path.splitext(path)[1].lower().removeprefix(".")
    if not extension:
        return "png"
    if extension not in figure_formats():
        raise ValueError(f"{path!r}: a figure cannot be written as .{extension}; name a file ending in "
                         f"{', '.join('.' + f for f in figure_formats())}")
    return extension


def figure_file(example):
    """output_file for a figure, whose extension must also be one figure_format writes."""
    as_file = output_file(example)

    def parse(text):
        try:
            figure_format(as_file(text))
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text

    return parse


MANY_STEPS = 10_000  # steps an epoch, past which a line says that the progress shows once an epoch


def steps_note(rows, batch_size, unit="images"):
    """A note where an epoch over `rows` (images, or rows of an svmlight file) in batches of `batch_size`
    takes more than MANY_STEPS steps (the progress lines come once an epoch, so a long one is silent), else None."""
    steps = -(-rows // batch_size)
    if steps <= MANY_STEPS:
        return None
    return (f"note: an epoch takes {steps:,} steps (--batch-size {batch_size} on {rows:,} {unit}); the progress "
            "shows once an epoch")


def save_model(model, path, dataset, writing, checkpoint, resumable=True):
    """model.save(path) for --save; a write that fails mid-run (a full disk) is save_error's one line."""
    try:
        model.save(path, dataset=dataset)
    except OSError as e:
        raise save_error(e, path, writing, checkpoint, resumable) from e


def save_error(error: OSError, path, writing, checkpoint, resumable=True) -> OSError:
    """A --save that failed mid-run (a full disk) as one line: the file, what it was writing and the epoch
    it still holds (checkpoint["epoch"], the last one written)."""
    reason = error.strerror or str(error)
    if "epoch" not in checkpoint:
        return OSError(f"--save {path}: could not write {writing}: {reason}; nothing was saved: free some "
                       "space and run again")
    fix = f"continue with --resume {path} --save {path}" if resumable else "run again"
    return OSError(f"--save {path}: could not write {writing}: {reason}; it still holds epoch "
                   f"{checkpoint['epoch']}: free some space and {fix}")


def debugging(args) -> bool:
    return getattr(args, "debug", False) or os.environ.get("FASTSOFTMAX_DEBUG", "") not in ("", "0")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every `finally` and atomic write cleans up on the way out."""


STOPS = (signal.SIGINT, signal.SIGTERM)


def _ignore_stops():
    for signum in STOPS:
        signal.signal(signum, signal.SIG_IGN)


def _stop(signum, frame):
    """The first Ctrl-C or SIGTERM: the next ones are ignored, so that they cannot interrupt the clean-up
    on the way out nor the line saying where the checkpoint is; then raised as KeyboardInterrupt."""
    _ignore_stops()
    raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt


def run_command(prog, run, args, interrupted=lambda: "", *, exiting=False):
    """run(args) with the library's errors as one line on stderr: exit 1, 130 on Ctrl-C, 143 on SIGTERM.

    interrupted() is added to the message of an interruption (where the last
    checkpoint is, if one was written). From the first Ctrl-C or SIGTERM on,
    the next ones are ignored until the message is out; with `exiting` (the
    process exits with the status: the python -m commands) to the end, since
    one arriving as the process exits would kill it. With --debug (or
    FASTSOFTMAX_DEBUG=1) an error propagates with its traceback. Running out
    of memory is an error line too: the checks before each allocation should
    make it rare; so is an ImportError (a missing extra, which it names).
    """
    main_thread = threading.current_thread() is threading.main_thread()  # where handlers can be set
    previous = {signum: signal.getsignal(signum) for signum in STOPS} if main_thread else {}
    for signum, handler in previous.items():
        if handler != signal.SIG_IGN:  # a signal ignored by who started us (nohup, `&`) stays ignored
            signal.signal(signum, _stop)
    stopped = False
    try:
        run(args)
    except (ValueError, TypeError, OSError, RuntimeError, MemoryError, ImportError) as e:
        if debugging(args):
            raise
        # Library errors name the problem and the fix; the CLI shows just that line.
        message = f"out of memory ({e or 'no details'})" if isinstance(e, MemoryError) else str(e)
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        stopped = True
        if main_thread:
            _ignore_stops()  # also where the interruption was not a signal's
        print(f"{prog}: {'terminated' if isinstance(e, Terminated) else 'interrupted'}{interrupted()}",
              file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        for signum, handler in previous.items():
            if handler is not None and not (stopped and exiting):  # None: set outside Python, not restorable
                signal.signal(signum, handler)
    return 0
