"""Plan manifests: what one run of the planner put on the queue, held in its run's row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.message.counts import RequestUsage
from sync.state.ledger_rows import PLAN_KIND, RUN_ROW, run_partition, usage_fields, usage_from


@dataclass(frozen=True, slots=True)
class PlanManifest:
    """What one run of the planner put on the queue."""

    run_id: str
    records: int
    batches: int
    pages: int
    complete: bool
    requests: RequestUsage = field(default_factory=RequestUsage)
    """The planner's requests (its page reads, their retries)."""


def plan_entity(manifest: PlanManifest) -> dict[str, Any]:
    """A plan's manifest: the fields of its run's row that the planner writes."""
    return {"PartitionKey": run_partition(manifest.run_id), "RowKey": RUN_ROW,
            "RunId": manifest.run_id, "Kind": PLAN_KIND, "Planned": manifest.records,
            "Batches": manifest.batches, "Pages": manifest.pages,
            "PlanComplete": manifest.complete,
            **{f"Plan{name}": value for name, value in usage_fields(manifest.requests).items()}}


def manifest_from(entity: Mapping[str, Any]) -> PlanManifest:
    """The manifest a run's row holds."""
    return PlanManifest(run_id=str(entity["RunId"]), records=int(entity.get("Planned", 0)),
                        batches=int(entity.get("Batches", 0)), pages=int(entity.get("Pages", 0)),
                        complete=bool(entity.get("PlanComplete", False)),
                        requests=plan_usage_from(entity))


def plan_usage_from(entity: Mapping[str, Any]) -> RequestUsage:
    """The planner's request usage a run's row holds."""
    return usage_from({name[len("Plan"):]: value for name, value in entity.items()
                       if str(name).startswith("PlanRequests")})


async def record_plan(table: TableClient, manifest: PlanManifest) -> None:
    """Write (or overwrite) a plan's manifest; the run's other fields stay (a merge)."""
    await table.upsert_entity(plan_entity(manifest), mode=UpdateMode.MERGE)


async def plans(table: TableClient) -> list[PlanManifest]:
    """Every plan's manifest (a table scan: for tests and the local stack)."""
    rows = table.query_entities(f"RowKey eq '{RUN_ROW}' and Kind eq '{PLAN_KIND}'")
    return [manifest_from(entity) async for entity in rows]
