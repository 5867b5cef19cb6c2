"""What the command lines share: one-line errors and the exit codes around them."""

from __future__ import annotations

import argparse
import sys


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """One line, not argparse's usage block: the message names the flag."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def run_command(prog, run, args, interrupted=""):
    """run(args) with the library's errors as one line on stderr: exit 1, or 130 on Ctrl-C."""
    try:
        run(args)
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        # Library errors name the problem and the fix; the CLI shows just that line.
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted{interrupted}", file=sys.stderr)
        return 130
    return 0
