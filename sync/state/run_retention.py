"""Runs past their retention: their ledger partition and their index rows deleted.

A run's rows in the ledger (its run row, its messages' rows, tallies and plan manifests: one
partition, ``sync.state.ledger_rows.run_partition``) and its rows in the index partitions
(``index:plan``, ``index:plan.<definition>``, ``index:message``) are deleted once the run
started more than the retention ago. The index finds them: its keys sort by inverted start
time, so the runs past a cutoff are one key range. Who calls it: the planner's timer, once per
tick (``sync.safety.retention``), a bounded number of runs each time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TransactionOperation
from azure.data.tables.aio import TableClient

from sync.state.ledger_rows import MESSAGE_KIND, PLAN_KIND, RUN_ROW, run_partition
from sync.state.runs import INDEX_PREFIX, definition_index, index_key

TRANSACTION_ROWS: Final = 100
"""Rows per table transaction (the service's limit)."""


@dataclass(frozen=True, slots=True)
class ExpiredRun:
    """A run found in an index past the cutoff: its id and its index row's key."""

    run_id: str
    index_key: str


def first_expired_key(cutoff_s: float) -> str:
    """The smallest index key of a run started a second or more before ``cutoff_s``."""
    return index_key(cutoff_s - 1, "").rstrip("|")


def _quoted(value: str) -> str:
    return value.replace("'", "''")


async def expired_runs(ledger: TableClient, cutoff_s: float, limit: int) -> list[ExpiredRun]:
    """Up to ``limit`` runs of every kind started before ``cutoff_s``, from the plan and the
    message indexes (a plan's definition index row goes with it, ``retire_run``)."""
    found: list[ExpiredRun] = []
    for kind in (PLAN_KIND, MESSAGE_KIND):
        rows = ledger.query_entities(
            f"PartitionKey eq '{INDEX_PREFIX}{kind}' and "
            f"RowKey ge '{first_expired_key(cutoff_s)}'",
            select=["RowKey", "RunId"], results_per_page=limit)
        async for row in rows:
            found.append(ExpiredRun(str(row["RunId"]), str(row["RowKey"])))
            if len(found) >= limit:
                return found
    return found


async def delete_partition(table: TableClient, partition: str) -> int:
    """Delete every row of one partition, in transactions; how many went."""
    rows = table.query_entities(f"PartitionKey eq '{_quoted(partition)}'",
                                select=["PartitionKey", "RowKey"])
    keys = [{"PartitionKey": partition, "RowKey": str(row["RowKey"])} async for row in rows]
    for start in range(0, len(keys), TRANSACTION_ROWS):
        operations: list[tuple[TransactionOperation, dict[str, Any]]] = [
            (TransactionOperation.DELETE, key) for key in keys[start:start + TRANSACTION_ROWS]]
        await table.submit_transaction(operations)
    return len(keys)


async def retire_run(ledger: TableClient, run: ExpiredRun) -> int:
    """Delete the run's ledger partition and its index rows; how many ledger rows went (its
    partition's, and one for the index)."""
    definition = await _definition_of(ledger, run.run_id)
    gone = await delete_partition(ledger, run_partition(run.run_id))
    kinds: Iterable[str] = (PLAN_KIND, MESSAGE_KIND) if definition is None else (
        PLAN_KIND, MESSAGE_KIND, definition_index(definition))
    for kind in kinds:  # a missing row is no error (delete_entity ignores a 404)
        await ledger.delete_entity(f"{INDEX_PREFIX}{kind}", run.index_key)
    return gone + 1


async def _definition_of(ledger: TableClient, run_id: str) -> str | None:
    try:
        row = await ledger.get_entity(run_partition(run_id), RUN_ROW, select=["Definition"])
    except ResourceNotFoundError:
        return None
    return str(row["Definition"]) if row.get("Definition") else None
