"""After a local run: every seeded record enriched, dead-lettered or cancelled, and none
created; and the records the poison queue holds.

A record is enriched when it holds what the enrichment emulator answers for its website in the
run's shape (``shapes.answer_for``), read at the definition's mapping paths; a website the
shape knows no company for must be dead-lettered.

The emulator's rows are read a page at a time (``/_emulator/records?top=...&after=...``) and
only counts are kept, with the first ``UNACCOUNTED_IDS_KEPT`` ids of the unaccounted records:
a check of a million records holds one page of them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
from azure.storage.queue.aio import QueueClient

from sync.clients.enrichment import columns_of, domain_of
from sync.config.table_definition import SyncDefinition
from sync.failures.errors import RecordFault, ServiceFault
from sync.local.emulators.enrichment import SHAPES, answer_for, is_no_match
from sync.ops.queuescan import Found, scan

VERIFY_PAGE_ROWS: Final = 1000
"""Rows a verification reads at a time: a page costs the emulator a few times its JSON text
while it answers (about 3 MB at this size), and this process about 1 kB a row."""
UNACCOUNTED_IDS_KEPT: Final = 1000
"""Ids of unaccounted records a verification keeps to name them (their count is exact)."""


@dataclass(slots=True)
class Verification:
    """What the emulator's data says about the run."""

    records: int = 0
    enriched: int = 0
    dead_lettered: int = 0
    created: int = 0
    unaccounted: list[str] = field(default_factory=list)
    """The first ``UNACCOUNTED_IDS_KEPT`` records neither enriched nor dead-lettered (nor
    covered by the run's cancelled count): lost, or still on the queue."""
    cancelled: int = 0
    """Records neither enriched nor dead-lettered that the run counted cancelled."""
    unaccounted_count: int = 0
    """How many records are unaccounted for (``unaccounted`` names the first of them)."""

    def __post_init__(self) -> None:
        self.unaccounted_count = max(self.unaccounted_count, len(self.unaccounted))

    @property
    def ok(self) -> bool:
        return not self.unaccounted_count and self.created == 0

    def add_unaccounted(self, record_ids: list[str], count: int) -> None:
        """Count ``count`` more unaccounted records, keeping the ids while there is room."""
        self.unaccounted_count += count
        room = UNACCOUNTED_IDS_KEPT - len(self.unaccounted)
        self.unaccounted += record_ids[:max(0, room)]

    def add(self, other: Verification) -> None:
        """Add ``other``'s counts (another environment's check) to these."""
        self.records += other.records
        self.enriched += other.enriched
        self.dead_lettered += other.dead_lettered
        self.created += other.created
        self.cancelled += other.cancelled
        self.add_unaccounted(other.unaccounted, other.unaccounted_count)


def with_cancelled(check: Verification, cancelled: int) -> Verification:
    """``check`` once the run's ``cancelled`` count is taken into account: the records a
    cancel stopped are neither enriched nor dead-lettered, and the ledger counts them, not
    their ids. When they cover every such record, none is unaccounted; when there are more,
    the ids cannot be told apart and all stay listed."""
    missing = check.unaccounted_count
    if not missing or cancelled <= 0 or missing > cancelled:
        return check
    return dataclasses.replace(check, unaccounted=[], unaccounted_count=0, cancelled=missing)


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
                 stats: dict[str, Any], shape: str = "today", *,
                 page_rows: int = VERIFY_PAGE_ROWS) -> Verification:
    """Compare the emulator's rows, read ``page_rows`` at a time, and its counters with what
    the run should have done."""
    result = Verification(created=created_count(stats))
    async with aiohttp.ClientSession() as session:
        async for page in pages_of(session, dataverse_url, definition.entity_set, page_rows):
            for row in page:
                tally(result, row, definition, dead_letters, shape)
    return result


def tally(result: Verification, row: dict[str, Any], definition: SyncDefinition,
          dead_letters: set[str], shape: str) -> None:
    """Count one emulator row: enriched, dead-lettered, or unaccounted for."""
    result.records += 1
    record_id = str(row[definition.key])
    if is_enriched(row, definition, shape):
        result.enriched += 1
    elif record_id in dead_letters:
        result.dead_lettered += 1
    else:
        result.add_unaccounted([record_id], 1)


async def pages_of(session: aiohttp.ClientSession, dataverse_url: str, entity_set: str,
                   page_rows: int = VERIFY_PAGE_ROWS) -> AsyncIterator[list[dict[str, Any]]]:
    """The emulator's rows of ``entity_set``, a page at a time in key order: each page asks
    for the rows after the last key of the one before, until the emulator names no next."""
    after: str | None = None
    while True:
        query = {"entityset": entity_set, "top": str(page_rows),
                 **({"after": after} if after is not None else {})}
        page = await _get(session, f"{dataverse_url}/_emulator/records", query)
        yield list(page["value"])
        after = page.get("after")
        if not after:
            return


async def _get(session: aiohttp.ClientSession, url: str, query: dict[str, str]) -> Any:
    async with session.get(url, params=query) as response:
        response.raise_for_status()
        return await response.json()
