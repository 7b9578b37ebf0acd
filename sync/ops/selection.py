"""Which indexed items a repair command acts on: ``--reason``, ``--run``, ``--since``, ``--id``.

The filters become one OData query on the index table, so a selection costs what it returns,
not the size of the table. Values are quoted the OData way (a quote is doubled).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime


class SelectionError(ValueError):
    """A filter the command cannot use; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Selection:
    """The filters, each a set of alternatives (empty: any)."""

    reasons: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    since: str = ""
    """ISO 8601 UTC (``2026-11-30T02:00:00Z``): items dead-lettered or poisoned at or after."""

    def odata(self) -> str:
        """The table query: every filter must hold, any of one filter's values may."""
        parts = [_any_of("Reason", self.reasons), _any_of("PartitionKey", self.runs),
                 _any_of("RowKey", self.ids)]
        if self.since:
            parts.append(f"At ge {quote(self.since)}")
        return " and ".join(part for part in parts if part)


def quote(value: str) -> str:
    """An OData string literal."""
    return "'" + value.replace("'", "''") + "'"


def _any_of(field: str, values: Sequence[str]) -> str:
    if not values:
        return ""
    alternatives = " or ".join(f"{field} eq {quote(v)}" for v in values)
    return f"({alternatives})" if len(values) > 1 else alternatives


def parse_since(text: str) -> str:
    """``--since`` as the index writes times: a date, or a date and time (UTC unless an
    offset is given)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise SelectionError(f"--since {text!r} is not a date or time such as 2026-11-30 or "
                             "2026-11-30T02:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_selection_arguments(parser: argparse.ArgumentParser, id_help: str) -> None:
    """The filters every repair subcommand takes."""
    parser.add_argument("--reason", action="append", default=[], metavar="REASON",
                        help="only this reason (repeatable)")
    parser.add_argument("--run", action="append", default=[], metavar="RUN_ID",
                        help="only this run (repeatable)")
    parser.add_argument("--since", default="", metavar="WHEN",
                        help="only items from this date or time on (UTC), e.g. 2026-11-30")
    parser.add_argument("--id", action="append", default=[], metavar="ID", help=id_help)


def selection_from(args: argparse.Namespace) -> Selection:
    """The selection the arguments name; ``SelectionError`` for an unusable value."""
    for name in ("reason", "run", "id"):
        for value in getattr(args, name):
            if not value.strip() or any(ch in value for ch in "/\\#?\t\n"):
                raise SelectionError(f"--{name} {value!r} cannot be a key in the index")
    return Selection(reasons=tuple(args.reason), runs=tuple(args.run),
                     ids=tuple(v.lower() for v in args.id),
                     since=parse_since(args.since) if args.since else "")
