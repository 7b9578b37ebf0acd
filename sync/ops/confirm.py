"""Asking before a command deletes, writes to Dataverse or cancels work.

The command says what it will do, then asks on the terminal; ``--yes`` answers for the
operator (scripts). Without a terminal and without ``--yes`` nothing is done (exit 3): a
pipeline never deletes by accident. ``--dry-run`` needs no answer: it changes nothing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Final, TextIO

from sync.ops.outcome import NotConfirmed

YES: Final = ("y", "yes")


def add_yes_argument(parser: argparse.ArgumentParser) -> None:
    """``--yes``: do it without asking."""
    parser.add_argument("--yes", "-y", action="store_true",
                        help="do it without asking (needed when no terminal can ask)")


def confirm(plan: str, *, yes: bool, stdin: TextIO | None = None,
            out: TextIO | None = None) -> None:
    """Print ``plan``; return when ``yes`` or the operator answers yes, else ``NotConfirmed``."""
    answers, talk = stdin or sys.stdin, out or sys.stderr
    print(plan, file=talk, flush=True)
    if yes:
        return
    if not answers.isatty():
        raise NotConfirmed("no terminal to ask for a confirmation: add --yes to do it "
                           "(nothing was done)")
    talk.write("Go on? [y/N] ")
    talk.flush()
    if answers.readline().strip().lower() not in YES:
        raise NotConfirmed("not confirmed: nothing was done")
