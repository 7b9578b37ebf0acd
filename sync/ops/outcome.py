"""How an operator command ends: one error format on stderr and a small set of exit codes.

Commands raise ``CommandError`` (or a subclass) with a sentence that says what to do; the
command line prints it as ``sync: error: <sentence>`` and exits with the error's code.
"""

from __future__ import annotations

import argparse
import functools
import sys
import textwrap
from collections.abc import Callable
from typing import ClassVar, Final

INTERRUPTED: Final = 130
HELP_WIDTH: Final = 79

EXIT_CODES: Final = (
    (0, "done"),
    (1, "not found or not all done: no such run, definition or entry (the message lists the "
        "known ones); local: a record not accounted for, or the run blocked; rollback: a "
        "record not restored (running it again is safe)"),
    (2, "nothing done: bad options, settings, input or storage (one sentence on stderr, "
        "sync: error: ...)"),
    (3, "not confirmed: a command that deletes, writes to Dataverse or cancels was declined, "
        "or found no terminal to ask and no --yes; nothing done"),
    (130, "stopped by Ctrl-C (local, status --watch, rollback); 143 by SIGTERM (local)"),
)


class CommandError(Exception):
    """The command cannot do what was asked; the message says what to do instead."""

    exit_code: ClassVar[int] = 2


class NotFound(CommandError):
    """No such definition, run or entry; the message names the known ones."""

    exit_code: ClassVar[int] = 1


class NotConfirmed(CommandError):
    """A destructive command was not confirmed; nothing was done."""

    exit_code: ClassVar[int] = 3


def error_line(error: CommandError | str) -> str:
    """The one format of every error the command line prints."""
    return f"sync: error: {error}"


def exit_codes_text() -> str:
    """The exit codes, for ``--help``."""
    return "exit codes:\n" + "\n".join(
        textwrap.fill(meaning, width=HELP_WIDTH, initial_indent=f"  {code:<4} ",
                      subsequent_indent=" " * 7) for code, meaning in EXIT_CODES)


def reported(main: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``main`` with its ``CommandError`` printed in the one format and turned into its exit
    code (and Ctrl-C into 130)."""
    @functools.wraps(main)
    def run(args: argparse.Namespace) -> int:
        try:
            return main(args)
        except CommandError as error:
            print(error_line(error), file=sys.stderr)
            return error.exit_code
        except KeyboardInterrupt:
            print("", file=sys.stderr)
            return INTERRUPTED
    return run
