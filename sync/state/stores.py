"""The queues and tables every definition and lane of a deployment shares."""

from __future__ import annotations

from dataclasses import dataclass

from azure.core.credentials_async import AsyncTokenCredential
from azure.data.tables.aio import TableClient
from azure.storage.queue.aio import QueueClient

from sync.config.settings import StorageSettings
from sync.config.storage_names import (
    BATCH_QUEUE,
    BEFORE_IMAGE_TABLE,
    DEAD_LETTER_QUEUE,
    DEAD_LETTER_TABLE,
    LEDGER_TABLE,
    PLAN_QUEUE,
    POISON_QUEUE,
    POISON_TABLE,
    REPORT_TABLE,
    STATE_TABLE,
)
from sync.state.storage import APP_CLIENT_OPTIONS, queue_client, storage_credential, table_client


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

    async def close(self) -> None:
        for client in (self.batches, self.plans, self.poison, self.dead_letters):
            await client.close()
        for table in (self.ledger, self.state, self.dead_letter_index, self.poison_index,
                      self.reports, self.before_images):
            await table.close()
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
        reports=table(REPORT_TABLE), before_images=table(BEFORE_IMAGE_TABLE))
