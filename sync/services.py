"""The clients a worker process holds: created once, reused by every invocation."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from azure.core.credentials_async import AsyncTokenCredential
from azure.data.tables.aio import TableClient
from azure.storage.queue.aio import QueueClient

from sync.auth import TokenSource, token_source
from sync.clock import SYSTEM_CLOCK, Clock
from sync.cluster import Cluster
from sync.control import ControlCache
from sync.dataverse import SERVICE as DATAVERSE
from sync.dataverse import DataverseClient
from sync.dependency import Dependency, PublishGate
from sync.enrichment import SERVICE as ENRICHMENT
from sync.enrichment import EnrichmentClient
from sync.errors import Throttled
from sync.failures.circuit import Circuit, CircuitPolicy, CircuitView
from sync.failures.retry import RetryPolicy
from sync.governor import Governor
from sync.http import new_session
from sync.names import (
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
from sync.settings import Settings
from sync.storage import queue_client, storage_credential, table_client

ENRICHMENT_CONCURRENCY: Final = 32
"""Enrichment calls in flight per process; the API's own 429s close its gate beyond that."""

logger = logging.getLogger(__name__)


def no_slot_retry_s(refresh_s: float) -> float:
    """When work an instance had no slot for comes back on the queue: after two refreshes,
    by which the holders have given back what is above their part (at least a second)."""
    return max(1.0, 2 * refresh_s)


@dataclass(slots=True)
class Activity:
    """When this process last started an invocation: an idle instance gives up its lease."""

    last_start_s: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        self.last_start_s = time.monotonic()

    def within(self, seconds: float) -> bool:
        return time.monotonic() - self.last_start_s < seconds


@dataclass(slots=True)
class Services:
    """Everything an invocation needs, built from the settings."""

    settings: Settings
    session: aiohttp.ClientSession
    tokens: TokenSource
    storage_credential: AsyncTokenCredential | None
    dataverse: DataverseClient
    enrichment: EnrichmentClient
    governor: Governor
    cluster: Cluster
    activity: Activity
    enrichment_governor: Governor
    """The same admission for the enrichment API: its 429 closes its gate for this process."""
    dataverse_dep: Dependency
    """Every Dataverse request goes through it: circuit, governor, triage, retries."""
    enrichment_dep: Dependency
    circuit_policy: CircuitPolicy
    batches: QueueClient
    plans: QueueClient
    poison: QueueClient
    dead_letters: QueueClient
    ledger: TableClient
    state: TableClient
    dead_letter_index: TableClient
    """One row per dead letter (sync.letterindex), written beside the queue message."""
    poison_index: TableClient
    reports: TableClient
    """A dry run's findings per message (sync.dryrun)."""
    before_images: TableClient
    """The values written records held before, for a rollback (sync.beforeimages)."""
    control: ControlCache = field(default_factory=ControlCache)
    """Pause and cancel flags as last read (``sync.control``)."""
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _refresher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Read the shared state once (a cold instance starts at the cached hint), then keep
        it fresh in the background."""
        await self.cluster.refresh()
        self._refresher = asyncio.create_task(self.cluster.run(self._stop))

    async def close(self) -> None:
        """Stop the refresher and close every client; the process is ending."""
        self._stop.set()
        if self._refresher is not None:
            await self._refresher
        try:
            await self.cluster.leave()
        except Exception:  # its slots and lease come back when they expire
            logger.exception("slots not given back", extra={"event": "leave_failed"})
        for client in (self.batches, self.plans, self.poison, self.dead_letters):
            await client.close()
        for table in (self.ledger, self.state, self.dead_letter_index, self.poison_index,
                      self.reports, self.before_images):
            await table.close()
        await self.tokens.close()
        if self.storage_credential is not None:
            await self.storage_credential.close()
        await self.session.close()


def open_services(settings: Settings, *, clock: Clock = SYSTEM_CLOCK,
                  read_enrichment_key: Callable[[], str] | None = None) -> Services:
    """Build the clients (no I/O happens until they are used, or ``start`` is awaited).

    ``read_enrichment_key`` answers the current key (entry.py reads the app setting again);
    by default the key the settings hold."""
    cap = settings.dataverse_max_concurrency
    session = new_session(cap + ENRICHMENT_CONCURRENCY, keep_affinity=settings.keep_affinity)
    tokens = token_source(settings)
    credential = storage_credential(settings.storage)
    storage = settings.storage
    dataverse = DataverseClient(session, settings.dataverse_url, tokens,
                                settings.dataverse_timeout_s, clock=clock)
    governor = Governor(0, ceiling=cap, max_wait_s=settings.max_wait_s,  # no slot before start
                        no_slot_retry_s=no_slot_retry_s(settings.state_refresh_s))
    dataverse.on_headroom = governor.note_headroom
    enrichment_governor = Governor(ENRICHMENT_CONCURRENCY, service="enrichment",
                                   max_wait_s=settings.max_wait_s)
    activity = Activity()
    policy = CircuitPolicy(settings.circuit_threshold, settings.circuit_open_s,
                           settings.circuit_max_open_s)
    circuits = {name: Circuit(name, policy, clock=clock) for name in (DATAVERSE, ENRICHMENT)}
    state = table_client(storage, STATE_TABLE, credential)
    cluster = Cluster(state, governor, cap=cap, refresh_s=settings.state_refresh_s,
                      lease_s=settings.lease_s, seen_hint=lambda: dataverse.dop_hint,
                      busy=lambda: (governor.in_flight > 0 or governor.idle_s() < settings.lease_s
                                    or activity.within(settings.lease_s)),
                      clock=clock.wall_s, circuits=circuits)
    retry = RetryPolicy(settings.max_retries)

    def dependency(name: str, gov: Governor, gate: PublishGate | None) -> Dependency:
        async def publish(view: CircuitView) -> None:
            await cluster.publish_circuit(name, view)

        return Dependency(name, gov, circuits[name], retry, clock=clock, publish=publish,
                          publish_gate=gate)

    async def publish_gate(error: Throttled) -> None:
        await cluster.publish_gate(error.retry_after_s, error.code)

    key = read_enrichment_key or (lambda: settings.enrichment_api_key)
    return Services(
        settings=settings, session=session, tokens=tokens, storage_credential=credential,
        dataverse=dataverse,
        enrichment=EnrichmentClient(session, settings.enrichment_url, key,
                                    settings.enrichment_timeout_s),
        governor=governor, cluster=cluster, activity=activity,
        enrichment_governor=enrichment_governor,
        dataverse_dep=dependency(DATAVERSE, governor, publish_gate),
        enrichment_dep=dependency(ENRICHMENT, enrichment_governor, None),
        circuit_policy=policy,
        batches=queue_client(storage, BATCH_QUEUE, credential),
        plans=queue_client(storage, PLAN_QUEUE, credential),
        poison=queue_client(storage, POISON_QUEUE, credential),
        dead_letters=queue_client(storage, DEAD_LETTER_QUEUE, credential),
        ledger=table_client(storage, LEDGER_TABLE, credential), state=state,
        dead_letter_index=table_client(storage, DEAD_LETTER_TABLE, credential),
        poison_index=table_client(storage, POISON_TABLE, credential),
        reports=table_client(storage, REPORT_TABLE, credential),
        before_images=table_client(storage, BEFORE_IMAGE_TABLE, credential),
        control=ControlCache(clock))
