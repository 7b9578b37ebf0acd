"""The one place that builds a process's clients: the storage every definition shares, one
lane per (environment, identity) (``sync.budget.lane``), one enrichment client per definition.
Built once per process and reused by every invocation; each message is carried out with the
``Work`` of its definition and lane.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from azure.identity.aio import ManagedIdentityCredential

from sync.budget.cluster import Cluster
from sync.budget.dependency import Dependency
from sync.budget.governor import Governor
from sync.budget.lane import Lane, open_lane
from sync.clients.auth import CredentialToken
from sync.clients.enrichment import SERVICE as ENRICHMENT
from sync.clients.enrichment import EnrichmentClient
from sync.clients.http import new_session
from sync.clock import SYSTEM_CLOCK, Clock
from sync.config.definitions import KEY_SETTING, Definition
from sync.config.lanes import LaneKey
from sync.config.settings import Settings
from sync.failures.circuit import Circuit, CircuitPolicy
from sync.failures.retry import RetryPolicy
from sync.safety.flags import ControlCache
from sync.state import deployment
from sync.state.enrichment_cache import EnrichmentCache
from sync.state.storage import Stores, open_stores
from sync.telemetry import metrics
from sync.work.context import Enricher, Work

ENRICHMENT_CONCURRENCY: Final = 32
"""Enrichment calls in flight per endpoint and process; the API's 429s close its gate beyond."""

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Services:
    """A process's clients: the storage, the lanes, the enrichment endpoints."""

    settings: Settings
    storage: Stores
    lanes: dict[LaneKey, Lane]
    enrichers: dict[str, Enricher]
    """By definition name."""
    circuit_policy: CircuitPolicy
    clock: Clock
    control: ControlCache = field(default_factory=ControlCache)
    """Pause and cancel flags as last read (``sync.safety.flags``)."""
    _session: aiohttp.ClientSession | None = None
    """The enrichment endpoints' connection pool."""
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _refreshers: list[asyncio.Task[None]] = field(default_factory=list)

    def work(self, definition: Definition, lane: LaneKey) -> Work:
        """The work context of a message of ``definition`` written through ``lane``."""
        found = self.lanes[lane]
        return Work(self.settings, definition, found, self.enrichers[definition.name],
                    self.storage, self.circuit_policy, self.control,
                    self.lanes_of(definition))

    def lanes_of(self, definition: Definition) -> tuple[Lane, ...]:
        return tuple(self.lanes[key] for key in definition.lanes)

    @property
    def first_lane(self) -> Lane:
        """The first definition's first lane (single-lane tools and tests)."""
        return self.lanes[self.settings.definitions.first.lanes[0]]

    def first_work(self) -> Work:
        """The first definition through its first lane (single-definition tools and tests)."""
        definition = self.settings.definitions.first
        return self.work(definition, definition.lanes[0])

    @property
    def clusters(self) -> list[Cluster]:
        return [lane.cluster for lane in self.lanes.values()]

    async def start(self) -> None:
        """Read the shared state once per lane (a cold instance starts at the cached hint),
        publish the definitions this host runs (``sync.state.deployment``), then keep the
        state and the control flags fresh in the background."""
        for cluster in self.clusters:
            await cluster.refresh()
        await deployment.publish_quietly(self.storage.state, deployment.published_of(
            self.settings.definitions, self.settings.lanes_environments,
            host=self.control.host, now_s=self.clock.wall_s()))
        self._refreshers = [asyncio.create_task(cluster.run(self._stop))
                            for cluster in self.clusters]
        self._refreshers.append(asyncio.create_task(
            self.control.watch(self.storage.state, self._stop)))

    async def close(self) -> None:
        """Stop the refreshers and close every client; the process is ending."""
        self._stop.set()
        for task in self._refreshers:
            await task
        for lane in self.lanes.values():
            await lane.close()
        await self.storage.close()
        for enricher in self.enrichers.values():
            await enricher.client.close()
        if self._session is not None:
            await self._session.close()


def open_services(settings: Settings, *, clock: Clock = SYSTEM_CLOCK,
                  read_enrichment_key: Callable[[str], str] | None = None) -> Services:
    """Build the clients (no I/O happens until they are used, or ``start`` is awaited).

    ``read_enrichment_key`` answers the current key of an app setting (entry.py reads the
    environment again, so a rotated Key Vault version is picked up); by default the keys the
    settings hold."""
    policy = CircuitPolicy(settings.circuit_threshold, settings.circuit_open_s,
                           settings.circuit_max_open_s)
    storage = open_stores(settings.storage)
    session = new_session(ENRICHMENT_CONCURRENCY * len(settings.definitions),
                          keep_affinity=False)
    retry = RetryPolicy(settings.max_retries)
    circuits = {name: Circuit(name, policy, clock=clock)
                for name in map(_enrichment_circuit, settings.definitions)}
    lanes: dict[LaneKey, Lane] = {}
    used = {key for definition in settings.definitions for key in definition.lanes}
    for environment in settings.lanes_environments:  # only lanes some definition writes through
        for key in environment.lanes:
            if key in used:
                lanes[key] = open_lane(key, environment, settings, storage.state, clock=clock,
                                       policy=policy, shared=circuits)
    cluster = next(iter(lanes.values())).cluster  # shares the enrichment circuits' rows
    enrichers: dict[str, Enricher] = {}
    read_key = read_enrichment_key or settings.enrichment_key
    for definition in settings.definitions:
        name = _enrichment_circuit(definition)
        governor = Governor(ENRICHMENT_CONCURRENCY, service=name, max_wait_s=settings.max_wait_s,
                            clock=clock)
        client = enrichment_client(session, settings, definition, _key_of(
            read_key, definition.enrichment_key_setting), clock=clock,
            on_spent=governor.close_gate)
        enrichers[definition.name] = Enricher(
            client, Dependency(name, governor, circuits[name], retry, clock=clock,
                               shared=cluster.circuit_row(name)),
            enrichment_cache_of(storage, definition))
    return Services(settings, storage, lanes, enrichers, policy, clock,
                    control=ControlCache(clock, host=deployment.host_name()), _session=session)


def enrichment_client(session: aiohttp.ClientSession, settings: Settings,
                      definition: Definition, read_key: Callable[[], str], *,
                      clock: Clock = SYSTEM_CLOCK,
                      on_spent: Callable[[float], None] | None = None) -> EnrichmentClient:
    """A definition's enrichment client, as its spec says: its URL, its key or its managed
    identity's tokens for the spec's scope (azure-identity), its mapping."""
    spec = definition.table.enrichment_spec
    tokens = None
    if spec.auth.type == "managed_identity":
        credential = ManagedIdentityCredential(client_id=spec.auth.client_id) \
            if spec.auth.client_id else ManagedIdentityCredential()
        tokens = CredentialToken(credential, spec.auth.scope, clock=clock,
                                 scope=spec.auth.scope, service="the enrichment API")
    return EnrichmentClient(session, definition.enrichment_url or settings.enrichment_url,
                            read_key, settings.enrichment_timeout_s, spec=spec,
                            mapping=definition.table.mapping, tokens=tokens, clock=clock,
                            on_spent=on_spent)


def enrichment_cache_of(storage: Stores, definition: Definition) -> EnrichmentCache | None:
    """The definition's enrichment cache, when its spec keeps one."""
    ttl_s = definition.table.enrichment_spec.cache_ttl_s
    if ttl_s is None or storage.enrichment_cache is None:
        return None
    return EnrichmentCache(storage.enrichment_cache, definition.name, ttl_s)


def _key_of(read_key: Callable[[str], str], setting: str) -> Callable[[], str]:
    """Reads one app setting's enrichment key each time it is asked."""
    return lambda: read_key(setting)


def _enrichment_circuit(definition: Definition) -> str:
    """The circuit of a definition's enrichment endpoint: ``enrichment`` for the deployment's
    own (ENRICHMENT_URL with ENRICHMENT_API_KEY), else named after the definition."""
    if definition.enrichment_url is None and definition.enrichment_key_setting == KEY_SETTING:
        return ENRICHMENT
    return f"{ENRICHMENT}-{definition.name}"


def watched_of(services: Services) -> metrics.Watched:
    """The live state of ``services`` as the gauges read it at each collection: requests in
    flight over every lane, the largest hint any lane saw, each circuit (a lane's Dataverse
    circuit named ``dataverse`` for the single lane, ``dataverse:<env>/<identity>`` else)."""
    lanes = list(services.lanes.values())
    dependencies = [(lane.dependency.name if lane.key.is_default
                     else f"{lane.dependency.name}:{lane.key}", lane.dependency)
                    for lane in lanes]
    dependencies += [(e.dependency.name, e.dependency) for e in services.enrichers.values()]
    circuits = {name: (lambda circuit=dep.circuit: circuit.state)
                for name, dep in dependencies}

    def hint() -> int | None:
        return max((h for lane in lanes if (h := lane.dataverse.dop_hint) is not None),
                   default=None)

    return metrics.Watched(dop_in_use=lambda: sum(lane.governor.in_flight for lane in lanes),
                           dop_hint=hint, circuits=circuits)


def watch_services(services: Services) -> None:
    """Let the gauges read ``services`` until ``unwatch_services``."""
    metrics.watch(id(services), watched_of(services))


def unwatch_services(services: Services) -> None:
    metrics.unwatch(id(services))
