"""One request of a write group, in each mode: a PATCH (``single``, and a record written again
alone), a ``$batch`` of PATCHes (``batch``) or an ``UpdateMultiple`` (``bulk``); and what each
part of a ``$batch`` answered."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sync.clients.dataverse import SERVICE as DATAVERSE
from sync.clients.dataverse import record_path
from sync.clients.odata_batch import Operation, OperationResult
from sync.failures.errors import RecordFault, ServiceFault, SyncError
from sync.failures.triage import classify_answer
from sync.message.changes import changed_columns
from sync.message.contract import RecordRef
from sync.work import conflicts
from sync.work.context import Work

Enriched = tuple[RecordRef, dict[str, Any]]
"""A record and the columns its enrichment mapped."""
Part = SyncError | None
"""One $batch part's outcome: None when it succeeded, else the error the triage names."""


def fields_of(item: Enriched) -> dict[str, Any]:
    """The columns a write sets: those whose enriched value differs from the value read."""
    record, columns = item
    return changed_columns(record.current, columns)


def if_match(record: RecordRef) -> str:
    """The record's ETag from the read; ``*`` (exists, any version) when it was not read."""
    return record.etag or "*"


def is_conflict(fault: RecordFault) -> bool:
    """A 412 on a write: the record changed since the ETag sent was read."""
    return fault.status == 412 and fault.reason == conflicts.CHANGED_SINCE_READ


async def send(work: Work, items: Sequence[Enriched], *, alone: bool) -> list[Part] | None:
    """One request for the group in the configured mode; per-part outcomes for $batch.
    ``alone``: the group is one record written as a PATCH whatever the mode (a record
    written again after a change since the read)."""
    table = work.definition
    headers = table.write_headers
    mode = work.settings.write_mode
    if len(items) == 1 and (mode == "single" or alone):
        record = items[0][0]
        await work.dataverse.update(table.entity_set, record.id, fields_of(items[0]),
                                    if_match=if_match(record), headers=headers)
        return None
    if mode == "batch":
        operations = [Operation("PATCH", record_path(table.entity_set, item[0].id),
                                {**headers, "If-Match": if_match(item[0])}, fields_of(item))
                      for item in items]
        return parts_of(await work.dataverse.execute_batch(operations),
                        f"PATCH {table.entity_set} in $batch")
    await work.dataverse.update_multiple(
        table.entity_set, table.logical_name, table.key,
        [(item[0].id, fields_of(item)) for item in items], headers=headers)
    return None


def parts_of(results: Sequence[OperationResult], where: str) -> list[Part]:
    """Each part judged; when every part failed for the service's reasons the whole request
    raises the first of them, so the governed call retries it and the circuit counts it."""
    parts = [classify_answer(DATAVERSE, r.status, r.headers, r.body, where=where)
             for r in results]
    service = [part for part in parts if isinstance(part, ServiceFault)]
    if service and len(service) == len(parts):
        raise service[0]
    return parts
