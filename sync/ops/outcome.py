"""How an operator command ends: one error format on stderr and a small set of exit codes.

Commands raise ``CommandError`` (or a subclass) with a sentence that says what to do; the
command line prints it as ``sync: error: <sentence>`` and exits with the error's code.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import signal
import sys
import textwrap
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, Final

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


STOP_GRACE_S: Final = 2.0
"""How long an interrupted command's work has to end once cancelled."""


async def until_interrupted(work: Coroutine[Any, Any, int]) -> int:
    """``work``'s exit code, or 130 on the first Ctrl-C (SIGINT). The signal sets an event the
    work is raced against, so the stop does not rest on a cancellation reaching whatever the
    work awaits (Python 3.11's ``wait_for`` drops one that arrives as its inner call ends); the
    work is then cancelled and given ``STOP_GRACE_S`` to end."""
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, interrupted.set)
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(interrupted.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        task.cancel()
        await asyncio.wait({task}, timeout=STOP_GRACE_S)
        print("", file=sys.stderr)
        return INTERRUPTED
    finally:
        stop.cancel()
        loop.remove_signal_handler(signal.SIGINT)
