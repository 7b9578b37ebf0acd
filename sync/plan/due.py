"""Which definitions a tick of the planner's timer plans: those without a schedule on every
tick; those with one when an occurrence fell since their last plan (a definition new to the
deployment is planned at its first tick). The last plan time is kept per definition in the
state table (the timer is a singleton, so one tick runs at a time)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.config.definitions import Definition

SCHEDULE_PARTITION: Final = "schedule"


async def claim(table: TableClient, definition: Definition, now: datetime) -> bool:
    """Whether ``definition`` is due at ``now``; when it is, ``now`` becomes its last plan."""
    if definition.schedule is None:
        return True
    last = await last_planned(table, definition.name)
    if last is not None and not definition.schedule.due(last, now):
        return False
    await table.upsert_entity({"PartitionKey": SCHEDULE_PARTITION, "RowKey": definition.name,
                               "LastPlanned": now.astimezone(UTC).timestamp(),
                               "Schedule": definition.schedule.text}, mode=UpdateMode.REPLACE)
    return True


async def last_planned(table: TableClient, name: str) -> datetime | None:
    try:
        row = await table.get_entity(SCHEDULE_PARTITION, name)
    except ResourceNotFoundError:
        return None
    return datetime.fromtimestamp(float(row["LastPlanned"]), UTC)
