"""Deleting before-images past ``SYNC_ROLLBACK_RETENTION_DAYS`` (they hold personal data).

The planner's timer sweeps once per plan (``sweep_quietly``): the runs the ledger's index says
started between ``retention + SWEEP_LOOKBACK_DAYS`` and ``retention`` days ago (a bounded
range, so the sweep does not grow with history), and in each run's partition the rows whose
``ExpiresAt`` has passed, deleted in transactions of up to 100. A run swept this way keeps one
small row, ``EXPIRED_ROW`` (no personal data), so a later ``sync rollback`` of it still says its
images expired; that tombstone goes with the run's other rows once ``SYNC_STATE_RETENTION_DAYS``
have passed (``sync.safety.retention``, which never retires a run before this sweep's range
has passed it). A sweep stops after ``budget_s``; the next plan's sweep goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from azure.data.tables import TransactionOperation, UpdateMode
from azure.data.tables.aio import TableClient

from sync.safety.before_images import DAY_S, EXPIRED_ROW, transaction_groups
from sync.state.ledger_rows import MESSAGE_KIND, PLAN_KIND
from sync.state.runs import INDEX_PREFIX, index_key
from sync.state.sweeps import quietly

SWEEP_LOOKBACK_DAYS: Final = 7
"""How far past its retention a run is still looked at: each nightly plan gives it a chance."""
SWEEP_BUDGET_S: Final = 60.0


def index_range(now_s: float, retention_days: int,
                lookback_days: int = SWEEP_LOOKBACK_DAYS) -> tuple[str, str]:
    """The ledger index row keys of runs started in the sweep's range (latest start first:
    ``low <= key < high``)."""
    newest_s = now_s - retention_days * DAY_S
    oldest_s = newest_s - lookback_days * DAY_S
    return index_key(newest_s, "").rstrip("|"), index_key(oldest_s - 1, "").rstrip("|")


async def runs_to_sweep(ledger: TableClient, now_s: float, retention_days: int) -> list[str]:
    """Run ids whose images may have expired."""
    low, high = index_range(now_s, retention_days)
    found: list[str] = []
    for kind in (PLAN_KIND, MESSAGE_KIND):
        rows = ledger.query_entities(
            f"PartitionKey eq '{INDEX_PREFIX}{kind}' and RowKey ge '{low}' and RowKey lt '{high}'",
            select=["RunId"])
        found += [str(row["RunId"]) async for row in rows]
    return found


async def sweep_run(images: TableClient, run_id: str, now_s: float) -> int:
    """Delete one run's expired images (their rows: packs, or rows of one image); how many
    images went."""
    quoted = run_id.replace("'", "''")
    rows = images.query_entities(f"PartitionKey eq '{quoted}' and ExpiresAt lt {float(now_s)!r}",
                                 select=["PartitionKey", "RowKey", "Records"])
    found = [row async for row in rows]
    keys = [{"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"]} for row in found]
    for group in transaction_groups(keys):
        operations: list[tuple[TransactionOperation, dict[str, Any]]] = [
            (TransactionOperation.DELETE, key) for key in group]
        await images.submit_transaction(operations)
    if keys:
        await images.upsert_entity({"PartitionKey": run_id, "RowKey": EXPIRED_ROW,
                                    "SweptAt": float(now_s)}, mode=UpdateMode.REPLACE)
    return sum(int(row.get("Records") or 1) for row in found)  # a pack holds several


async def sweep(images: TableClient, ledger: TableClient, now_s: float, retention_days: int,
                *, monotonic_s: Callable[[], float], budget_s: float = SWEEP_BUDGET_S) -> int:
    """Delete the expired images of the runs in range, within ``budget_s``; how many went."""
    deadline_s = monotonic_s() + budget_s
    gone = 0
    for run_id in await runs_to_sweep(ledger, now_s, retention_days):
        if monotonic_s() > deadline_s:
            break
        gone += await sweep_run(images, run_id, now_s)
    return gone


async def sweep_quietly(images: TableClient, ledger: TableClient, now_s: float,
                        retention_days: int, *, monotonic_s: Callable[[], float]) -> int:
    """``sweep``, logging instead of raising: the plan it follows must not fail for it."""
    return await quietly(sweep(images, ledger, now_s, retention_days, monotonic_s=monotonic_s),
                         "expired before-images", "before_images", unit="records")
