"""What the command lines share: one-line errors, --debug, the exit codes, and
flags made from the hyper-parameter table."""

from __future__ import annotations

import argparse
import os
import sys

from .validation import POSITIVE_INT, Rule


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


def add_hyperparameters(parser, hyperparameters):
    """--<name> for each hyper-parameter with a flag: its rule, default and help from the table."""
    for p in hyperparameters:
        if not p.flag:
            continue
        flag, help = "--" + p.name.replace("_", "-"), f"{p.help} (default: {p.default})"
        if p.rule.choices:
            parser.add_argument(flag, choices=p.rule.choices, default=p.default, help=help)
        else:
            parser.add_argument(flag, type=flag_type(p.rule), default=p.default, help=help)


def debugging(args) -> bool:
    return getattr(args, "debug", False) or os.environ.get("FASTSOFTMAX_DEBUG", "") not in ("", "0")


def run_command(prog, run, args, interrupted=""):
    """run(args) with the library's errors as one line on stderr: exit 1, or 130 on Ctrl-C.

    With --debug (or FASTSOFTMAX_DEBUG=1) an error propagates with its traceback.
    """
    try:
        run(args)
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        if debugging(args):
            raise
        # Library errors name the problem and the fix; the CLI shows just that line.
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted{interrupted}", file=sys.stderr)
        return 130
    return 0
