"""plan_sync: page through the table, chunk the records into batch messages, enqueue them."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, Final

from sync import ledger
from sync.chunks import chunk
from sync.contract import NEVER_EXPIRE, BatchMessage, RecordRef
from sync.ledger import PlanManifest
from sync.services import Services
from sync.settings import Settings

logger = logging.getLogger(__name__)

ENQUEUE_CONCURRENCY: Final = 16
"""Queue sends in flight while planning."""


def new_run_id(now: datetime) -> str:
    """A sortable, unique run id: ``run-20261122T020000Z-1a2b3c``."""
    return f"run-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def batch_id(run_id: str, number: int) -> str:
    """The id of batch ``number`` of a run, deterministic so a re-plan reuses it."""
    return f"{run_id}-{number:06d}"


def read_filter(settings: Settings) -> str:
    """Rows with an enrichment input, narrowed by the configured filter when there is one."""
    has_input = f"{settings.input_column} ne null"
    return f"({settings.filter}) and {has_input}" if settings.filter else has_input


def refs_from(rows: Iterable[dict[str, Any]], settings: Settings) -> Iterator[RecordRef]:
    """Record references from the rows of a page; rows without an input are left out."""
    for row in rows:
        value = row.get(settings.input_column)
        if isinstance(value, str) and value.strip():
            yield RecordRef(id=str(row[settings.key_column]), input=value.strip())


async def plan(services: Services, now: datetime) -> PlanManifest:
    """Enqueue every record that needs enrichment; the manifest goes to the ledger."""
    settings = services.settings
    run_id = new_run_id(now)
    await ledger.record_plan(services.ledger, PlanManifest(run_id, 0, 0, 0, complete=False))
    records = batches = pages = 0
    select = (settings.key_column, settings.input_column)
    async for rows in services.dataverse.pages(settings.entity_set, select,
                                               read_filter(settings), settings.page_size):
        pages += 1
        messages = [BatchMessage(batch_id(run_id, batches + n), group)
                    for n, group in enumerate(chunk(refs_from(rows, settings),
                                                    settings.batch_size))]
        await _enqueue(services, messages)
        batches += len(messages)
        records += sum(len(m.records) for m in messages)
    manifest = PlanManifest(run_id, records, batches, pages, complete=True)
    await ledger.record_plan(services.ledger, manifest)
    logger.info("plan %s: %d records in %d batches from %d pages", run_id, records, batches,
                pages, extra={"event": "plan_done", "run_id": run_id})
    return manifest


async def _enqueue(services: Services, messages: list[BatchMessage]) -> None:
    slots = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def send(message: BatchMessage) -> None:
        async with slots:
            await services.batches.send_message(message.to_json(), time_to_live=NEVER_EXPIRE)

    await asyncio.gather(*(send(message) for message in messages))
