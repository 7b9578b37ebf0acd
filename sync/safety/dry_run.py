"""The dry run: plan, read, enrich and compare as a real run does, write nothing, report.

A definition with ``dry_run`` true reaches the worker as usual; instead of the writer, each
message's enriched records are compared with the values the planner read
(``sync.message.changes.changed_columns``) and the findings go to the report table
(``sync.config.storage_names.REPORT_TABLE``): partition ``<run id>``, one row per processed message
(``msg:<batch id>|<attempt>``, overwritten if the message is processed again), so a run's report
is one partition query and no two instances write the same row. A row holds the counts (would
change, unchanged, failed by reason), the changes per column, and a sample of at most
``SAMPLE_SIZE`` changes (record id, column, before, after; long text cut to
``SAMPLE_VALUE_CHARS``). A record fault of the enrichment is counted as failed, never
dead-lettered: replaying it later would write it. Every record the dry run settles is
``previewed`` in the ledger, so the run completes: planned = changed + unchanged + failed.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.message.changes import changed_columns
from sync.message.contract import Message, RecordRef
from sync.message.ids import run_id_of

SAMPLE_SIZE: Final = 20
"""Changes kept per message, and shown per run."""
SAMPLE_VALUE_CHARS: Final = 200
"""A sampled value longer than this is cut (a description can hold thousands)."""
MESSAGE_PREFIX: Final = "msg:"


@dataclass(frozen=True, slots=True)
class Change:
    """One column of one record as the run would write it."""

    record_id: str
    column: str
    before: Any
    after: Any

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.record_id, "column": self.column, "before": _cut(self.before),
                "after": _cut(self.after)}


@dataclass(slots=True)
class Preview:
    """What a dry run found in one message (or, summed, in a run)."""

    changed: int = 0
    unchanged: int = 0
    failed_by_reason: Counter[str] = field(default_factory=Counter)
    columns: Counter[str] = field(default_factory=Counter)
    """Records that would change, per column."""
    sample: list[Change] = field(default_factory=list)
    settled_ids: list[str] = field(default_factory=list)
    """The records this preview accounts for (not stored: the ledger counts them)."""

    @property
    def failed(self) -> int:
        return sum(self.failed_by_reason.values())

    @property
    def records(self) -> int:
        return self.changed + self.unchanged + self.failed

    def compare(self, record: RecordRef, new: Mapping[str, Any]) -> None:
        """Count one enriched record against the values read."""
        changes = changed_columns(record.current, new)
        self.settled_ids.append(record.id)
        if not changes:
            self.unchanged += 1
            return
        self.changed += 1
        self.columns.update(changes.keys())
        current = record.current or {}
        for column, value in changes.items():
            if len(self.sample) < SAMPLE_SIZE:
                self.sample.append(Change(record.id, column, current.get(column), value))

    def fail(self, record_id: str, reason: str) -> None:
        """A record the enrichment refused (a record fault): counted, not dead-lettered."""
        self.failed_by_reason[reason] += 1
        self.settled_ids.append(record_id)

    def add(self, other: Preview) -> None:
        """Sum another message's findings into these; the sample stays bounded."""
        self.changed += other.changed
        self.unchanged += other.unchanged
        self.failed_by_reason.update(other.failed_by_reason)
        self.columns.update(other.columns)
        self.sample.extend(other.sample[:max(0, SAMPLE_SIZE - len(self.sample))])

    def to_dict(self) -> dict[str, Any]:
        """The report under stable keys (``sync status --json``: ``dry_run``)."""
        return {"would_change": self.changed, "unchanged": self.unchanged,
                "failed": self.failed, "failed_by_reason": dict(self.failed_by_reason),
                "columns": dict(self.columns.most_common()),
                "sample": [change.to_wire() for change in self.sample]}


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > SAMPLE_VALUE_CHARS:
        return value[:SAMPLE_VALUE_CHARS] + "…"
    return value


def report_entity(run_id: str, batch_id: str, attempt: int, preview: Preview) -> dict[str, Any]:
    """The report row of one processed message."""
    return {"PartitionKey": run_id, "RowKey": f"{MESSAGE_PREFIX}{batch_id}|{attempt:04d}",
            "WouldChange": preview.changed, "Unchanged": preview.unchanged,
            "FailedByReason": json.dumps(dict(preview.failed_by_reason)),
            "Columns": json.dumps(dict(preview.columns)),
            "Sample": json.dumps([change.to_wire() for change in preview.sample])}


def preview_from(entity: Mapping[str, Any]) -> Preview:
    """The findings one report row holds."""
    sample = [Change(str(c["id"]), str(c["column"]), c["before"], c["after"])
              for c in json.loads(entity.get("Sample") or "[]")]
    return Preview(changed=int(entity.get("WouldChange", 0)),
                   unchanged=int(entity.get("Unchanged", 0)),
                   failed_by_reason=Counter(json.loads(entity.get("FailedByReason") or "{}")),
                   columns=Counter(json.loads(entity.get("Columns") or "{}")), sample=sample)


def summed(rows: Iterable[Mapping[str, Any]]) -> Preview:
    """A run's report from its messages' rows."""
    total = Preview()
    for entity in rows:
        total.add(preview_from(entity))
    return total


async def save(table: TableClient, run_id: str, batch_id: str, attempt: int,
               preview: Preview) -> None:
    """Write (or overwrite) one message's report row."""
    await table.upsert_entity(report_entity(run_id, batch_id, attempt, preview),
                              mode=UpdateMode.REPLACE)


async def read_report(table: TableClient, run_id: str) -> Preview | None:
    """A run's dry-run report; None when the run was not a dry run (no row)."""
    rows = [entity async for entity in
            table.query_entities(f"PartitionKey eq '{_quoted(run_id)}'")]
    return summed(rows) if rows else None


def compare_all(preview: Preview, items: Sequence[tuple[RecordRef, Mapping[str, Any]]]) -> None:
    """Count every enriched record of a message."""
    for record, columns in items:
        preview.compare(record, columns)


def _quoted(value: str) -> str:
    return value.replace("'", "''")


async def settle(table: TableClient, message: Message, preview: Preview,
                 items: Sequence[tuple[RecordRef, Mapping[str, Any]]]) -> list[str]:
    """The dry run's part of a message: compare, save the report row, and answer the records
    it settled (if the row cannot be saved this raises, and they stay unfinished and come
    back)."""
    compare_all(preview, items)
    await save(table, run_id_of(message.batch_id), message.batch_id, message.attempt, preview)
    return list(preview.settled_ids)
