"""After a local run: every seeded record enriched, dead-lettered or cancelled, and none
created; and the records the poison queue holds.

A record is enriched when it holds what the enrichment emulator answers for its website in the
run's shape (``shapes.answer_for``), read at the definition's mapping paths; a website the
shape knows no company for must be dead-lettered."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from azure.storage.queue.aio import QueueClient

from sync.clients.enrichment import columns_of, domain_of
from sync.config.table_definition import SyncDefinition
from sync.failures.errors import RecordFault, ServiceFault
from sync.local.emulators.enrichment import SHAPES, answer_for, is_no_match
from sync.ops.queuescan import Found, scan


@dataclass(slots=True)
class Verification:
    """What the emulator's data says about the run."""

    records: int = 0
    enriched: int = 0
    dead_lettered: int = 0
    created: int = 0
    unaccounted: list[str] = field(default_factory=list)
    """Records neither enriched nor dead-lettered (nor covered by the run's cancelled
    count): lost, or still on the queue."""
    cancelled: int = 0
    """Records neither enriched nor dead-lettered that the run counted cancelled."""

    @property
    def ok(self) -> bool:
        return not self.unaccounted and self.created == 0


def with_cancelled(check: Verification, cancelled: int) -> Verification:
    """``check`` once the run's ``cancelled`` count is taken into account: the records a
    cancel stopped are neither enriched nor dead-lettered, and the ledger counts them, not
    their ids. When they cover every such record, none is unaccounted; when there are more,
    the ids cannot be told apart and all stay listed."""
    missing = len(check.unaccounted)
    if not missing or cancelled <= 0 or missing > cancelled:
        return check
    return dataclasses.replace(check, unaccounted=[], cancelled=missing)


def expected_columns(website: str | None, definition: SyncDefinition,
                     shape: str = "today") -> dict[str, Any] | None:
    """The columns the enrichment should have written for ``website`` when the emulator
    speaks ``shape``; None if it cannot (no domain, or no company)."""
    if not website:
        return None
    found = SHAPES[shape]
    try:
        domain = domain_of(website).lower()
    except RecordFault:
        return None
    if is_no_match(domain, found.no_match_share):
        return None
    try:
        return columns_of(answer_for(found, domain), definition.mapping,
                          missing_is_null=definition.enrichment_spec.missing_is_null,
                          where="verify")
    except ServiceFault:
        return None


def is_enriched(row: dict[str, Any], definition: SyncDefinition, shape: str = "today") -> bool:
    """True when the row holds exactly what the enrichment API says for its input."""
    expected = expected_columns(row.get(definition.input_column), definition, shape)
    return expected is not None and all(row.get(k) == v for k, v in expected.items())


async def dead_lettered_ids(queue: QueueClient) -> set[str]:
    """Ids of the records on the dead-letter queue, read and left in place visible (a repair
    command run next, as with ``--keep``, must find them)."""
    seen = await scan(queue, delete=lambda _: False)
    return {str(json.loads(found.body)["record"]["id"]) for found in seen}


async def poisoned_records(queue: QueueClient) -> int:
    """Records in the messages on the poison queue (a worker's envelope or a raw message),
    read and left in place visible; a message that is not a message of records counts none."""
    seen = await scan(queue, delete=lambda _: False)
    return sum(records_in(found) for found in seen)


def records_in(found: Found) -> int:
    """How many records a poison message carries."""
    try:
        data = json.loads(found.body)
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            data = json.loads(data["message"])  # the worker's envelope echoes the message
    except ValueError:
        return 0
    records = data.get("records") if isinstance(data, dict) else None
    return len(records) if isinstance(records, list) else 0


async def emulator_stats(dataverse_url: str) -> dict[str, Any]:
    """The emulator's counters (``/_emulator/stats``)."""
    async with aiohttp.ClientSession() as session:
        stats: dict[str, Any] = await _get(session, f"{dataverse_url}/_emulator/stats", {})
    return stats


async def updated_count(session: aiohttp.ClientSession, dataverse_url: str) -> int:
    """Records the emulator has updated so far (every write it accepted, as it accepted it)."""
    stats = await _get(session, f"{dataverse_url}/_emulator/stats", {})
    return int(stats.get("records", {}).get("updated", 0))


def created_count(stats: dict[str, Any]) -> int:
    """Records the emulator saw created."""
    return int(stats.get("records", {}).get("created", 0))


async def verify(dataverse_url: str, definition: SyncDefinition, dead_letters: set[str],
                 stats: dict[str, Any], shape: str = "today") -> Verification:
    """Compare the emulator's rows and counters with what the run should have done."""
    async with aiohttp.ClientSession() as session:
        rows = await _get(session, f"{dataverse_url}/_emulator/records",
                          {"entityset": definition.entity_set})
    result = Verification(created=created_count(stats))
    for row in rows.get("value", rows) if isinstance(rows, dict) else rows:
        result.records += 1
        record_id = str(row[definition.key])
        if is_enriched(row, definition, shape):
            result.enriched += 1
        elif record_id in dead_letters:
            result.dead_lettered += 1
        else:
            result.unaccounted.append(record_id)
    return result


async def _get(session: aiohttp.ClientSession, url: str, query: dict[str, str]) -> Any:
    async with session.get(url, params=query) as response:
        response.raise_for_status()
        return await response.json()
