"""What to write after a record changed since it was read (a 412 on its ETag, or a bulk
pre-write check that found its ETag moved): pure decisions, no I/O.

The record is read again (its input and mapped columns, and its new ETag). A mapped column a
person changed since the read is one whose value now differs from the value read. Under the
definition's ``edit_policy``:

- ``keep`` (the default): those columns are left as the person set them; the others are written
  with the new ETag;
- ``overwrite``: every enriched column is written with the new ETag.

A record read without its values (a producer's record) has no edits to tell: it is written as
``overwrite`` would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from sync.clients.dataverse import Version
from sync.config.table_definition import SyncDefinition
from sync.message.changes import same_value
from sync.message.contract import RecordRef, Scalar

CHANGED_SINCE_READ: Final = "changed_since_read"
"""Why a record whose ETag kept moving goes back on the queue (never a dead letter)."""


def edited_columns(read: Mapping[str, Scalar] | None, now: Mapping[str, Any],
                   columns: Mapping[str, Any]) -> set[str]:
    """The columns of ``columns`` whose value ``now`` differs from the value ``read``."""
    if read is None:
        return set()
    return {column for column in columns
            if column in read and not same_value(read[column], now.get(column))}


def to_write(read: Mapping[str, Scalar] | None, now: Mapping[str, Any],
             columns: Mapping[str, Any], policy: str) -> dict[str, Any]:
    """The enriched columns the policy lets a write set over a record as it is ``now``."""
    if policy == "overwrite":
        return dict(columns)
    edited = edited_columns(read, now, columns)
    return {column: value for column, value in columns.items() if column not in edited}


def input_now(version: Version, input_column: str) -> str | None:
    """The record's enrichment input as read again; None when a person cleared it."""
    value = version.values.get(input_column)
    return value.strip() if isinstance(value, str) and value.strip() else None


def reread(record: RecordRef, version: Version, mapped: tuple[str, ...],
           input_value: str) -> RecordRef:
    """The record as read again: its new ETag, input and mapped columns' values."""
    current: dict[str, Scalar] = {column: version.values.get(column) for column in mapped}
    return replace(record, input=input_value, etag=version.etag, current=current)


def inputs_changed(before: RecordRef, now: RecordRef, extra_inputs: tuple[str, ...]) -> bool:
    """Whether what the enrichment reads changed between two reads: the input, or another
    column the enrichment reads (known only when the first read carried it)."""
    if before.input != now.input:
        return True
    if before.current is None or now.current is None:
        return False
    return any(not same_value(before.current.get(c), now.current.get(c)) for c in extra_inputs
               if c in before.current)


def mapped_columns(table: SyncDefinition) -> tuple[str, ...]:
    """The columns the mapping writes, the key and the input aside."""
    return tuple(c for c in table.mapping if c not in (table.key, table.input_column))


def carried_columns(table: SyncDefinition) -> tuple[str, ...]:
    """What a record carries as read: its mapped columns and the enrichment's other inputs."""
    return tuple(c for c in table.carried_columns if c not in (table.key, table.input_column))


def read_columns(table: SyncDefinition) -> tuple[str, ...]:
    """What a record is read again for: its input, its mapped columns and the enrichment's
    other inputs."""
    return (table.input_column, *carried_columns(table))
