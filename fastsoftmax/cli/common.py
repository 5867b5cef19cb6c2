"""What the command lines share: one-line errors, --debug, the exit codes, and
flags made from the hyper-parameter table."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

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


def debugging(args) -> bool:
    return getattr(args, "debug", False) or os.environ.get("FASTSOFTMAX_DEBUG", "") not in ("", "0")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every `finally` and atomic write cleans up on the way out."""


def _terminate(signum, frame):
    raise Terminated


def run_command(prog, run, args, interrupted=lambda: ""):
    """run(args) with the library's errors as one line on stderr: exit 1, 130 on Ctrl-C, 143 on SIGTERM.

    interrupted() is added to the message of an interruption (where the last
    checkpoint is, if one was written). With --debug (or FASTSOFTMAX_DEBUG=1)
    an error propagates with its traceback. Running out of memory is an
    error line too: the checks before each allocation should make it rare.
    """
    main_thread = threading.current_thread() is threading.main_thread()  # where handlers can be set
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        run(args)
    except (ValueError, TypeError, OSError, RuntimeError, MemoryError) as e:
        if debugging(args):
            raise
        # Library errors name the problem and the fix; the CLI shows just that line.
        message = f"out of memory ({e or 'no details'})" if isinstance(e, MemoryError) else str(e)
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"{prog}: {'terminated' if isinstance(e, Terminated) else 'interrupted'}{interrupted()}",
              file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0
