"""The app's Azure Storage clients: how one is opened (a connection string or a managed
identity), the queues and tables every definition and lane of a deployment shares
(``Stores``), and their creation where missing.

Who deletes what they hold: each row's and message's owner says so in its module (the ledger,
the runs, the dead-letter index, the before-images, the cluster state).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.data.tables.aio import TableClient, TableServiceClient
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from sync.clock import SYSTEM_CLOCK, Clock
from sync.config.settings import StorageSettings
from sync.config.storage_names import (
    BATCH_QUEUE,
    BEFORE_IMAGE_TABLE,
    DEAD_LETTER_QUEUE,
    DEAD_LETTER_TABLE,
    ENRICHMENT_CACHE_TABLE,
    LEDGER_TABLE,
    PLAN_QUEUE,
    POISON_QUEUE,
    POISON_TABLE,
    QUEUES,
    REPORT_TABLE,
    STATE_TABLE,
    TABLES,
)
from sync.telemetry.queues import QueueSample, record_queues

STORAGE_ERRORS: Final = (AzureError, OSError)
"""What a storage call raises when the service is away or refuses: the SDK's errors, and the
socket's (a timeout is an ``OSError`` too). A service fault, never a bug."""

C = TypeVar("C", QueueClient, TableClient, QueueServiceClient, TableServiceClient)

APP_CLIENT_OPTIONS: Final[dict[str, Any]] = {"use_env_settings": False}
"""The app's own storage clients (``Stores``, the local host's listeners) take no proxy or
credentials from the environment (HTTP(S)_PROXY, ~/.netrc), as its HTTP sessions do not:
azure-core's default looks both up in a thread for every request, a tenth of a busy host's CPU.
Operator commands, run from a workstation that may sit behind a proxy, keep the default."""


def storage_credential(storage: StorageSettings) -> AsyncTokenCredential | None:
    """The identity credential, or None when a connection string carries the access."""
    if storage.connection_string:
        return None
    if storage.client_id:
        return ManagedIdentityCredential(client_id=storage.client_id)
    return DefaultAzureCredential()


def _opened(kind: type[C], storage: StorageSettings, url: str,
            credential: AsyncTokenCredential | None, **options: Any) -> C:
    """One client of ``kind``: from the connection string when the settings hold one, else at
    the service's ``url`` with the identity's ``credential``."""
    if storage.connection_string:
        return kind.from_connection_string(storage.connection_string, **options)
    return kind(url, credential=credential, **options)


def queue_client(storage: StorageSettings, queue_name: str,
                 credential: AsyncTokenCredential | None, *,
                 options: Mapping[str, Any] | None = None) -> QueueClient:
    """A queue client that writes and reads base64 text, as the Functions host expects
    (``options``: the SDK's client options, e.g. ``APP_CLIENT_OPTIONS``)."""
    return _opened(QueueClient, storage, str(storage.queue_url), credential,
                   queue_name=queue_name, message_encode_policy=TextBase64EncodePolicy(),
                   message_decode_policy=TextBase64DecodePolicy(), **dict(options or {}))


def table_client(storage: StorageSettings, table_name: str,
                 credential: AsyncTokenCredential | None, *,
                 options: Mapping[str, Any] | None = None) -> TableClient:
    """A table client for ``table_name`` (``options`` as for ``queue_client``)."""
    return _opened(TableClient, storage, str(storage.table_url), credential,
                   table_name=table_name, **dict(options or {}))


@dataclass(slots=True)
class Stores:
    """The app's queues and tables, with the credential they were opened with."""

    credential: AsyncTokenCredential | None
    batches: QueueClient
    plans: QueueClient
    poison: QueueClient
    dead_letters: QueueClient
    ledger: TableClient
    state: TableClient
    """Cluster state (per lane and shared), checkpoints, flags (``sync.budget.cluster``)."""
    dead_letter_index: TableClient
    """One row per dead letter (sync.state.letter_index), written beside the queue message."""
    poison_index: TableClient
    reports: TableClient
    """A dry run's findings per message (sync.safety.dry_run)."""
    before_images: TableClient
    """The values written records held before, for a rollback (sync.safety.before_images)."""
    enrichment_cache: TableClient | None = None
    """Enrichment answers by request (sync.state.enrichment_cache); None: not opened."""

    async def close(self) -> None:
        for client in (self.batches, self.plans, self.poison, self.dead_letters):
            await client.close()
        for table in (self.ledger, self.state, self.dead_letter_index, self.poison_index,
                      self.reports, self.before_images):
            await table.close()
        if self.enrichment_cache is not None:
            await self.enrichment_cache.close()
        if self.credential is not None:
            await self.credential.close()


def open_stores(storage: StorageSettings) -> Stores:
    """The app's clients for every queue and table (no I/O until used)."""
    credential = storage_credential(storage)

    def queue(name: str) -> QueueClient:
        return queue_client(storage, name, credential, options=APP_CLIENT_OPTIONS)

    def table(name: str) -> TableClient:
        return table_client(storage, name, credential, options=APP_CLIENT_OPTIONS)

    return Stores(
        credential=credential, batches=queue(BATCH_QUEUE), plans=queue(PLAN_QUEUE),
        poison=queue(POISON_QUEUE), dead_letters=queue(DEAD_LETTER_QUEUE),
        ledger=table(LEDGER_TABLE), state=table(STATE_TABLE),
        dead_letter_index=table(DEAD_LETTER_TABLE), poison_index=table(POISON_TABLE),
        reports=table(REPORT_TABLE), before_images=table(BEFORE_IMAGE_TABLE),
        enrichment_cache=table(ENRICHMENT_CACHE_TABLE))


class QueueProbe:
    """Clients for every queue of the app, opened once per process and reused by each timer
    invocation that samples their depth and age (``sync.telemetry.queues``)."""

    __slots__ = ("_credential", "queues")

    def __init__(self, storage: StorageSettings) -> None:
        self._credential = storage_credential(storage)
        self.queues = [queue_client(storage, name, self._credential, options=APP_CLIENT_OPTIONS)
                       for name in QUEUES]

    async def record(self, clock: Clock = SYSTEM_CLOCK) -> list[QueueSample]:
        return await record_queues(self.queues, clock)

    async def close(self) -> None:
        for queue in self.queues:
            await queue.close()
        if self._credential is not None:
            await self._credential.close()


async def ensure_resources(storage: StorageSettings) -> None:
    """Create the app's queues and tables where missing (the Bicep creates them in Azure)."""
    credential = storage_credential(storage)
    try:
        async with _opened(QueueServiceClient, storage, str(storage.queue_url),
                           credential) as queues:
            for name in QUEUES:
                with contextlib.suppress(ResourceExistsError):
                    await queues.create_queue(name)
        async with _opened(TableServiceClient, storage, str(storage.table_url),
                           credential) as tables:
            for name in TABLES:
                await tables.create_table_if_not_exists(name)
    finally:
        if credential is not None:
            await credential.close()
