"""The clients a worker process holds: created once, reused by every invocation."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

import aiohttp
from azure.core.credentials_async import AsyncTokenCredential
from azure.data.tables.aio import TableClient
from azure.storage.queue.aio import QueueClient

from sync.auth import TokenSource, token_source
from sync.dataverse import DataverseClient
from sync.enrichment import EnrichmentClient
from sync.governor import Governor
from sync.http import new_session
from sync.names import BATCH_QUEUE, DEAD_LETTER_QUEUE, LEDGER_TABLE, POISON_QUEUE
from sync.settings import Settings
from sync.storage import queue_client, storage_credential, table_client

ENRICHMENT_CONCURRENCY: Final = 32
"""Enrichment calls in flight per process; the API's own 429s pace it beyond that."""


@dataclass(frozen=True, slots=True)
class Services:
    """Everything an invocation needs, built from the settings."""

    settings: Settings
    session: aiohttp.ClientSession
    tokens: TokenSource
    storage_credential: AsyncTokenCredential | None
    dataverse: DataverseClient
    enrichment: EnrichmentClient
    governor: Governor
    enrichment_slots: asyncio.Semaphore
    batches: QueueClient
    poison: QueueClient
    dead_letters: QueueClient
    ledger: TableClient

    async def close(self) -> None:
        """Close every client; the process is ending."""
        for client in (self.batches, self.poison, self.dead_letters):
            await client.close()
        await self.ledger.close()
        await self.tokens.close()
        if self.storage_credential is not None:
            await self.storage_credential.close()
        await self.session.close()


def open_services(settings: Settings) -> Services:
    """Build the clients (no I/O happens until they are used)."""
    limit = settings.dataverse_max_concurrency
    session = new_session(limit + ENRICHMENT_CONCURRENCY)
    tokens = token_source(settings)
    credential = storage_credential(settings.storage)
    storage = settings.storage
    return Services(
        settings=settings, session=session, tokens=tokens, storage_credential=credential,
        dataverse=DataverseClient(session, settings.dataverse_url, tokens,
                                  settings.dataverse_timeout_s),
        enrichment=EnrichmentClient(session, settings.enrichment_url,
                                    settings.enrichment_api_key, settings.enrichment_timeout_s),
        governor=Governor(limit),
        enrichment_slots=asyncio.Semaphore(ENRICHMENT_CONCURRENCY),
        batches=queue_client(storage, BATCH_QUEUE, credential),
        poison=queue_client(storage, POISON_QUEUE, credential),
        dead_letters=queue_client(storage, DEAD_LETTER_QUEUE, credential),
        ledger=table_client(storage, LEDGER_TABLE, credential),
    )
