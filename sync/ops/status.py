"""``python -m sync status``: how the current (or last) run is going, or how it ended.

Planned, written, dead-lettered and re-enqueued by reason, what is still open, every queue's
approximate count (poison included), the throttle gate, each service's circuit, the DOP hint
and the slot leases, rate and ETA, and any overlapping run. ``--json`` for scripts (the keys
are in docs/operations.md), ``--watch [SECONDS]`` to refresh in place until Ctrl-C (exit 130).

Exit codes: 0 shown; 1 no such run or definition (or no run yet); 2 the storage cannot be
used (the message names what to do, the role needed included); 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Final, TextIO

from sync.clock import SYSTEM_CLOCK, Clock
from sync.config.settings import StorageSettings
from sync.ops.outcome import CommandError, error_line, until_interrupted
from sync.ops.run_status import NoRun, read_status
from sync.ops.status_view import render, status_dict
from sync.ops.target import TargetError, add_target_arguments, storage_for

WATCH_S: Final = 5.0
"""How often ``--watch`` refreshes when no interval is given."""
MIN_WATCH_S: Final = 0.5
READ_TIMEOUT_S: Final = 60.0
"""One refresh gives up after this long: storage that does not answer is an error."""
CLEAR: Final = "\x1b[H\x1b[2J"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m sync status``."""
    add_target_arguments(parser)
    parser.add_argument("--run", metavar="ID", default=None,
                        help="show this run instead of the latest one")
    parser.add_argument("--definition", metavar="NAME", default=None,
                        help="show the latest run of this sync definition")
    parser.add_argument("--json", action="store_true",
                        help="print JSON (one object per refresh with --watch)")
    parser.add_argument("--watch", nargs="?", type=float, const=WATCH_S, default=None,
                        metavar="SECONDS",
                        help=f"refresh every SECONDS ({WATCH_S:g}) until Ctrl-C")
    parser.add_argument("--times", type=int, default=None, metavar="N",
                        help="with --watch: stop after N refreshes")


def main(args: argparse.Namespace) -> int:
    """Show the run; see the module's exit codes."""
    if args.watch is not None and args.watch < MIN_WATCH_S:
        raise CommandError(f"--watch must be at least {MIN_WATCH_S:g} seconds")
    if args.times is not None and args.times < 1:
        raise CommandError("--times must be at least 1")
    storage = storage_for(args)
    shown = show(storage, args.run, as_json=args.json, watch_s=args.watch, times=args.times,
                 definition=args.definition)
    return asyncio.run(until_interrupted(shown) if args.watch is not None else shown)


async def show(storage: StorageSettings, run_id: str | None, *, as_json: bool,
               watch_s: float | None, times: int | None = None, clock: Clock = SYSTEM_CLOCK,
               out: TextIO = sys.stdout, definition: str | None = None) -> int:
    """Print the status once, or every ``watch_s`` (``times`` refreshes at most; a run not
    there yet is shown as such and waited for)."""
    in_place = watch_s is not None and not as_json and out.isatty()
    refreshes = 0
    while True:
        try:
            text = await _one(storage, run_id, as_json, clock, definition)
            code = 0
        except NoRun as missing:
            if watch_s is None:
                print(error_line(missing), file=sys.stderr)
                return 1
            text = json.dumps({"error": str(missing)}) if as_json else str(missing)
            code = 1
        print((CLEAR if in_place else "") + text, file=out, flush=True)
        refreshes += 1
        if watch_s is None or (times is not None and refreshes >= times):
            return code
        await clock.sleep(watch_s)


async def _one(storage: StorageSettings, run_id: str | None, as_json: bool,
               clock: Clock, definition: str | None) -> str:
    """One refresh, as text or JSON. ``asyncio.timeout``, not ``wait_for``: Python 3.11's
    ``wait_for`` drops a cancellation that arrives as the read ends, and Ctrl-C is one (the
    watch would go on)."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            status = await read_status(storage, run_id, clock.wall_s(), definition=definition)
    except TimeoutError:
        raise TargetError(f"the storage account did not answer within {READ_TIMEOUT_S:g} s"
                          ) from None
    return json.dumps(status_dict(status), sort_keys=True) if as_json else render(status)
