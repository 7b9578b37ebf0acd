"""The plan's state: carried by continuation messages between short invocations, and the
checkpoint (delta link or watermark) that moves only when a whole plan is enqueued."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.failures.errors import ContractError

PLAN_VERSION: Final = 1
CHECKPOINT_PARTITION: Final = "checkpoint"
Mode = Literal["full", "delta", "watermark"]
MODES: Final = ("full", "delta", "watermark")


@dataclass(frozen=True, slots=True)
class PlanState:
    """Where a plan is: enough to go on from any invocation."""

    run_id: str
    mode: Mode
    next_link: str | None
    page: int = 0
    records: int = 0
    batches: int = 0
    skipped: int = 0
    watermark_to: str = ""
    self_id: str | None = None
    requests_read: int = 0
    """Dataverse requests the plan has sent so far (its reads, first sends)."""
    requests_retried: int = 0
    """... and re-sends of them (retries, short throttles waited out)."""
    definition: str = "default"
    """The sync definition being planned."""

    def to_json(self) -> str:
        return json.dumps({"version": PLAN_VERSION, **asdict(self)}, separators=(",", ":"))


def plan_state_from(body: bytes) -> PlanState:
    """A continuation message; ContractError when it is not one."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ContractError("plan continuation is not JSON") from None
    if not isinstance(data, dict) or data.pop("version", None) != PLAN_VERSION:
        raise ContractError(f"plan continuation must be an object with version {PLAN_VERSION}")
    try:
        state = PlanState(**data)
    except TypeError as error:
        raise ContractError(f"plan continuation fields: {error}") from None
    if state.mode not in MODES or not isinstance(state.run_id, str):
        raise ContractError(f"plan continuation has an unknown mode {state.mode!r}")
    return state


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where the next plan starts: a delta link (change tracking) or a watermark."""

    delta_link: str | None = None
    watermark: str | None = None


async def load_checkpoint(table: TableClient, entity_set: str) -> Checkpoint:
    try:
        row = await table.get_entity(CHECKPOINT_PARTITION, entity_set)
    except ResourceNotFoundError:
        return Checkpoint()
    return Checkpoint(delta_link=row.get("DeltaLink") or None,
                      watermark=row.get("Watermark") or None)


async def save_checkpoint(table: TableClient, entity_set: str, checkpoint: Checkpoint,
                          run_id: str) -> None:
    await table.upsert_entity({"PartitionKey": CHECKPOINT_PARTITION, "RowKey": entity_set,
                               "DeltaLink": checkpoint.delta_link or "",
                               "Watermark": checkpoint.watermark or "", "RunId": run_id},
                              mode=UpdateMode.REPLACE)
