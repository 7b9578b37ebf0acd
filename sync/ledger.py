"""The run ledger in Table Storage: counts per processed message and a manifest per plan.

Rows are keyed by batch id and attempt, so a message processed twice overwrites its own row
instead of counting twice; the attempts of a batch cover disjoint sets of records.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

BATCH_PARTITION: Final = "batch"
PLAN_PARTITION: Final = "plan"


@dataclass(slots=True)
class BatchCounts:
    """What one processing of one message did."""

    written: int = 0
    dead_lettered: int = 0
    reenqueued: int = 0
    rejected_messages: int = 0
    transient_retries: int = 0
    requeue_delay_s: float = 0.0
    """Seconds re-enqueued work was held invisible (Retry-After plus jitter), summed."""
    throttled_by_code: Counter[str] = field(default_factory=Counter)
    dead_lettered_by_reason: Counter[str] = field(default_factory=Counter)
    reenqueued_by_reason: Counter[str] = field(default_factory=Counter)
    """Why records went back: throttled, circuit_open, service_fault, suspected_record_fault."""

    def add(self, other: BatchCounts) -> None:
        """Add another message's counts to these."""
        self.written += other.written
        self.dead_lettered += other.dead_lettered
        self.reenqueued += other.reenqueued
        self.rejected_messages += other.rejected_messages
        self.transient_retries += other.transient_retries
        self.requeue_delay_s += other.requeue_delay_s
        self.throttled_by_code.update(other.throttled_by_code)
        self.dead_lettered_by_reason.update(other.dead_lettered_by_reason)
        self.reenqueued_by_reason.update(other.reenqueued_by_reason)

    @property
    def throttled(self) -> int:
        """All 429 answers, whatever their code."""
        return sum(self.throttled_by_code.values())


@dataclass(frozen=True, slots=True)
class PlanManifest:
    """What one run of the planner put on the queue."""

    run_id: str
    records: int
    batches: int
    pages: int
    complete: bool


def batch_entity(batch_id: str, attempt: int, counts: BatchCounts) -> dict[str, Any]:
    """The ledger row of one processed message."""
    return {"PartitionKey": BATCH_PARTITION, "RowKey": f"{batch_id}|{attempt:04d}",
            "Written": counts.written, "DeadLettered": counts.dead_lettered,
            "Reenqueued": counts.reenqueued, "RejectedMessages": counts.rejected_messages,
            "TransientRetries": counts.transient_retries,
            "RequeueDelayS": float(counts.requeue_delay_s),
            "ThrottledByCode": json.dumps(dict(counts.throttled_by_code)),
            "DeadLetteredByReason": json.dumps(dict(counts.dead_lettered_by_reason)),
            "ReenqueuedByReason": json.dumps(dict(counts.reenqueued_by_reason))}


def counts_from(entity: Mapping[str, Any]) -> BatchCounts:
    """The counts a ledger row holds."""
    return BatchCounts(written=int(entity.get("Written", 0)),
                       dead_lettered=int(entity.get("DeadLettered", 0)),
                       reenqueued=int(entity.get("Reenqueued", 0)),
                       rejected_messages=int(entity.get("RejectedMessages", 0)),
                       transient_retries=int(entity.get("TransientRetries", 0)),
                       requeue_delay_s=float(entity.get("RequeueDelayS", 0.0)),
                       throttled_by_code=_counter(entity, "ThrottledByCode"),
                       dead_lettered_by_reason=_counter(entity, "DeadLetteredByReason"),
                       reenqueued_by_reason=_counter(entity, "ReenqueuedByReason"))


def _counter(entity: Mapping[str, Any], name: str) -> Counter[str]:
    return Counter(json.loads(entity.get(name) or "{}"))


def plan_entity(manifest: PlanManifest) -> dict[str, Any]:
    """The ledger row of one plan."""
    return {"PartitionKey": PLAN_PARTITION, "RowKey": manifest.run_id,
            "Records": manifest.records, "Batches": manifest.batches, "Pages": manifest.pages,
            "Complete": manifest.complete}


def manifest_from(entity: Mapping[str, Any]) -> PlanManifest:
    """The manifest a ledger row holds."""
    return PlanManifest(run_id=str(entity["RowKey"]), records=int(entity["Records"]),
                        batches=int(entity["Batches"]), pages=int(entity["Pages"]),
                        complete=bool(entity["Complete"]))


async def record_batch(table: TableClient, batch_id: str, attempt: int,
                       counts: BatchCounts) -> None:
    """Write (or overwrite) the row of one processed message."""
    await table.upsert_entity(batch_entity(batch_id, attempt, counts), mode=UpdateMode.REPLACE)


async def record_plan(table: TableClient, manifest: PlanManifest) -> None:
    """Write (or overwrite) a plan's manifest."""
    await table.upsert_entity(plan_entity(manifest), mode=UpdateMode.REPLACE)


async def batch_totals(table: TableClient) -> BatchCounts:
    """The sum of every processed message's counts."""
    totals = BatchCounts()
    rows = table.query_entities(f"PartitionKey eq '{BATCH_PARTITION}'")
    async for entity in rows:
        totals.add(counts_from(entity))
    return totals


async def plans(table: TableClient) -> list[PlanManifest]:
    """Every plan's manifest."""
    rows = table.query_entities(f"PartitionKey eq '{PLAN_PARTITION}'")
    return [manifest_from(entity) async for entity in rows]
