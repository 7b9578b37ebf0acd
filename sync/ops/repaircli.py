"""The command line of ``deadletters`` and ``poison``: ``list|show|replay|purge`` with filters.

Every action first deletes the expired index rows. Output: a line per item (``--json``: the
rows), then a count of what was done; errors an operator can act on go to stderr, exit 2.
``purge`` says what it will delete and asks first (``--yes`` answers; exit 3 when not
confirmed). ``replay`` does not ask: it puts the records back on the queue for the workers to
carry out as they were meant to, and a replayed record whose values were changed meanwhile
is kept as it is (ETags). ``replay`` and ``--scan`` show their progress on a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from collections.abc import Callable, Sequence
from typing import Final, TextIO

from azure.core.exceptions import AzureError, HttpResponseError

from sync.clock import SYSTEM_CLOCK, Clock
from sync.config.settings import SETTINGS
from sync.ops import repair
from sync.ops.confirm import add_yes_argument, confirm
from sync.ops.outcome import CommandError, error_line
from sync.ops.progress import ProgressLine
from sync.ops.repair import Kind, Row, Store, Tally
from sync.ops.selection import SelectionError, add_selection_arguments, selection_from
from sync.ops.target import QUEUE_ROLE, TABLE_ROLE, TargetError, explain, storage_for
from sync.ops.target import add_target_arguments as add_target
from sync.state.letter_index import body_of, retention_s

ACTIONS: Final = ("list", "show", "replay", "purge")
DEFAULT_RETENTION_DAYS: Final = int(next(
    s.default for s in SETTINGS if s.name == "SYNC_DEADLETTER_RETENTION_DAYS") or 30)
HIDDEN: Final = ("BodyParts", "Timestamp")


def configure(parser: argparse.ArgumentParser, kind: Kind, *, id_help: str,
              scan_flag: bool) -> None:
    """``list``, ``show``, ``replay`` and ``purge``, each with the target and the filters."""
    actions = parser.add_subparsers(dest="action", required=True)
    texts = {"list": f"list {kind.noun}, one line each", "show": f"show {kind.noun} in full",
             "replay": f"put {kind.noun} back on the batches queue, once",
             "purge": f"delete {kind.noun} from the index and the queue"}
    for action in ACTIONS:
        sub = actions.add_parser(action, help=texts[action], description=texts[action])
        add_target(sub)
        add_selection_arguments(sub, id_help)
        if action in ("list", "show"):
            sub.add_argument("--json", action="store_true", help="print the rows as JSON")
        else:
            sub.add_argument("--dry-run", action="store_true",
                             help="say what would be done, change nothing")
        if action == "purge":
            add_yes_argument(sub)
        if scan_flag:
            sub.add_argument("--scan", action="store_true",
                             help="first index what is on the queue but not in the index")
        sub.add_argument("--retention-days", type=int, default=DEFAULT_RETENTION_DAYS,
                         help="expiry of entries indexed from the queue (the app's "
                              "SYNC_DEADLETTER_RETENTION_DAYS)")


def main_for(kind: Kind, *, always_scan: bool) -> Callable[[argparse.Namespace], int]:
    """The command's ``main``."""
    def main(args: argparse.Namespace) -> int:
        return asyncio.run(execute(args, kind, always_scan=always_scan))
    return main


async def execute(args: argparse.Namespace, kind: Kind, *, always_scan: bool,
                  clock: Clock = SYSTEM_CLOCK, out: TextIO | None = None) -> int:
    """Run one action; 0 when done, 2 with a sentence on stderr when it cannot be."""
    write = out or sys.stdout
    try:
        selection = selection_from(args)
        storage = storage_for(args)
        async with repair.open_store(storage, kind) as store:
            now_s = clock.wall_s()
            if always_scan or getattr(args, "scan", False):
                await _index(store, kind, now_s + retention_s(args.retention_days))
            rows = await repair.select(store, selection, now_s)
            lines = await _act(args, kind, store, rows, now_s)
    except SelectionError as error:
        print(error_line(str(error)), file=sys.stderr)
        return 2
    except CommandError as error:
        print(error_line(error), file=sys.stderr)
        return error.exit_code
    except AzureError as error:
        print(error_line(explain_storage_error(error, kind)), file=sys.stderr)
        return 2
    write.write("".join(f"{line}\n" for line in lines))
    return 0


async def _act(args: argparse.Namespace, kind: Kind, store: Store, rows: list[Row],
               now_s: float) -> list[str]:
    if not rows:
        return [f"no {kind.noun} match" + (f" ({selection_text(args)})"
                                           if selection_text(args) else "")]
    if args.action in ("list", "show"):
        return show(kind, rows, full=args.action == "show", as_json=args.json)
    if args.action == "purge":
        if args.dry_run:
            return [f"would delete {len(rows)} {kind.noun} (dry run: nothing changed)"]
        confirm(purge_plan(kind, len(rows), selection_text(args)), yes=args.yes)
        deleted, messages = await repair.purge(store, rows)
        return [f"deleted {deleted} {kind.noun} from the index and {messages} messages from "
                f"{kind.queue}"]
    if args.dry_run:
        return dry_replay(kind, rows, now_s)
    line = ProgressLine(f"replaying {kind.noun}: messages sent")
    try:
        tally = await repair.replay(store, kind, rows, token=secrets.token_hex(4), now_s=now_s,
                                    on_message=line.count)
    finally:
        line.close()
    return replay_report(kind, tally)


async def _index(store: Store, kind: Kind, expires_at_s: float) -> int:
    """Index the queue, with a count of the messages read on a terminal."""
    line = ProgressLine(f"reading {kind.queue}: messages")
    try:
        return await repair.index_queue(store, kind, expires_at_s, on_seen=line.update)
    finally:
        line.close()


def purge_plan(kind: Kind, count: int, selection: str) -> str:
    """What ``purge`` will delete, said before it asks."""
    which = f" ({selection})" if selection else " (every one: no filter was given)"
    return (f"This deletes {count} {kind.noun}{which} from the index and their messages from "
            f"{kind.queue}; they cannot be replayed afterwards.")


def show(kind: Kind, rows: Sequence[Row], *, full: bool, as_json: bool) -> list[str]:
    """The rows as lines: a summary each, every field (``show``), or JSON."""
    public = [_visible(repair.public(row), full=full) for row in rows]
    if as_json:
        return [json.dumps(public, indent=2 if full else None, default=str)]
    if not full:
        return [kind.summary(row) for row in rows] + [f"{len(rows)} {kind.noun}"]
    blocks = ["\n".join(f"{key}: {value}" for key, value in row.items()) for row in public]
    return ["\n\n".join(blocks), f"{len(rows)} {kind.noun}"]


def _visible(row: Row, *, full: bool) -> Row:
    kept = {k: v for k, v in row.items() if k not in HIDDEN and not k.startswith("Body")}
    if full and "BodyParts" in row:
        kept["Body"] = body_of(row)
    return kept


def dry_replay(kind: Kind, rows: Sequence[Row], now_s: float) -> list[str]:
    """What a replay would do, changing nothing."""
    tally = Tally()
    plan = kind.plan(repair.replayable(rows, now_s, tally), "dry-run")
    count = sum(len(m.rows) for m in plan.messages)
    lines = [f"would replay {count} {kind.noun} in {len(plan.messages)} messages "
             "(dry run: nothing changed)"]
    lines += [f"{row['RowKey']} stays: {why}" for row, why in plan.stays]
    return lines + _skipped(tally)


def replay_report(kind: Kind, tally: Tally) -> list[str]:
    """What a replay did, counted."""
    lines = [f"replayed {tally.replayed} {kind.noun} in {tally.messages_sent} messages; "
             f"deleted {tally.queue_deleted} messages from {kind.queue}"]
    lines += [f"{key} stays: {why}" for key, why in tally.stays]
    return lines + _skipped(tally)


def _skipped(tally: Tally) -> list[str]:
    counts = {"already replayed": tally.already_replayed,
              "being replayed by another command": tally.in_progress,
              "changed by someone else meanwhile": tally.lost_race}
    return [f"{count} skipped: {why}" for why, count in counts.items() if count]


def selection_text(args: argparse.Namespace) -> str:
    """The filters as the operator gave them."""
    parts = [f"--{name} {value}" for name in ("reason", "run", "id")
             for value in getattr(args, name)]
    if args.since:
        parts.append(f"--since {args.since}")
    return " ".join(parts)


def explain_storage_error(error: AzureError, kind: Kind) -> TargetError:
    """The error as a sentence naming the table or queue it came from, and its role."""
    response = getattr(error, "response", None)
    url = str(getattr(getattr(response, "request", None), "url", ""))
    if isinstance(error, HttpResponseError) and kind.table in url:
        return explain(error, f"table {kind.table}", TABLE_ROLE)
    return explain(error, f"queue {kind.queue}", QUEUE_ROLE)
