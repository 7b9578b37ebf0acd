"""One lane: an identity writing to one environment, with everything that is that user's alone.

Dataverse's service protection limits are per user, per web server, so each lane has its own
token source, HTTP client (connection pool), governor, throttle gate, Dataverse circuit and
leases: a 429 or an open circuit in one lane never slows another. The ``x-ms-dop-hint`` is a
budget for the whole environment unless its ``dop_scope`` is ``identity``: the lanes of one
environment then share its slots (``StateKeys.budget``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import aiohttp
from azure.data.tables.aio import TableClient

from sync.budget.cluster import Cluster, StateKeys, Timing
from sync.budget.dependency import Dependency
from sync.budget.governor import Governor
from sync.clients.auth import TokenSource, lane_token_source
from sync.clients.dataverse import SERVICE as DATAVERSE
from sync.clients.dataverse import DataverseClient
from sync.clients.http import new_session
from sync.clock import Clock
from sync.config.lanes import Environment, LaneKey
from sync.config.settings import Settings
from sync.failures.circuit import Circuit, CircuitPolicy
from sync.failures.errors import Throttled
from sync.failures.retry import RetryPolicy

logger = logging.getLogger(__name__)


def no_slot_retry_s(refresh_s: float) -> float:
    """When work an instance had no slot for comes back on the queue: after two refreshes,
    by which the holders have given back what is above their part (at least a second)."""
    return max(1.0, 2 * refresh_s)


def state_keys(key: LaneKey, dop_scope: str) -> StateKeys:
    """Where a lane's shared rows live: the single lane of a one-environment deployment keeps
    the plain keys; others are prefixed by environment (the budget, unless it is per identity)
    and by lane (gate, circuit)."""
    if key.is_default:
        return StateKeys()
    lane = f"{key.environment}.{key.identity}|"
    budget = lane if dop_scope == "identity" else f"{key.environment}|"
    return StateKeys(budget=budget, lane=lane)


@dataclass(slots=True)
class Activity:
    """When this lane last started an invocation (on the injected clock): an idle lane gives
    up its lease."""

    clock: Clock
    last_start_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.last_start_s = self.clock.monotonic_s()

    def touch(self) -> None:
        self.last_start_s = self.clock.monotonic_s()

    def within(self, seconds: float) -> bool:
        return self.clock.monotonic_s() - self.last_start_s < seconds


@dataclass(slots=True)
class Lane:
    """One identity in one environment: its clients and its share of the shared state."""

    key: LaneKey
    session: aiohttp.ClientSession
    tokens: TokenSource
    dataverse: DataverseClient
    governor: Governor
    cluster: Cluster
    dependency: Dependency
    """Every Dataverse request of this lane goes through it: circuit, governor, triage."""
    activity: Activity

    async def close(self) -> None:
        """Give back the slots and the lease, close the clients (the process is ending)."""
        try:
            await self.cluster.leave()
        except Exception:  # its slots and lease come back when they expire
            logger.exception("slots of lane %s not given back", self.key,
                             extra={"event": "leave_failed"})
        await self.tokens.close()
        await self.session.close()


def open_lane(key: LaneKey, environment: Environment, settings: Settings, state: TableClient,
              *, clock: Clock, policy: CircuitPolicy, shared: dict[str, Circuit]) -> Lane:
    """Build a lane's clients (no I/O until used). ``shared``: the deployment's circuits (the
    enrichment endpoints'), kept fresh by this lane's cluster view too."""
    cap = settings.dataverse_max_concurrency
    session = new_session(cap, keep_affinity=settings.keep_affinity)
    identity = environment.identity(key.identity)
    tokens = lane_token_source(settings, environment, identity)
    dataverse = DataverseClient(session, environment.url, tokens, settings.dataverse_timeout_s,
                                clock=clock)
    governor = Governor(0, ceiling=cap, max_wait_s=settings.max_wait_s,  # no slot before start
                        waits_in_place=True,
                        no_slot_retry_s=no_slot_retry_s(settings.state_refresh_s), clock=clock)
    dataverse.on_headroom = governor.note_headroom
    activity = Activity(clock)
    circuit = Circuit(DATAVERSE, policy, clock=clock)
    timing = Timing(settings.state_refresh_s, settings.lease_s, settings.clock_skew_s)
    cluster = Cluster(state, governor, cap=cap, timing=timing,
                      seen_hint=lambda: dataverse.hint_seen,
                      busy=lambda: (governor.in_flight > 0 or governor.idle_s() < settings.lease_s
                                    or activity.within(settings.lease_s)),
                      clock=clock, circuits={DATAVERSE: circuit, **shared},
                      keys=state_keys(key, environment.dop_scope),
                      own_circuits=frozenset({DATAVERSE}))
    dataverse.on_hint = lambda _: cluster.hint_changed()
    governor.on_starved = cluster.starved

    async def publish_gate(error: Throttled) -> None:
        await cluster.publish_gate(error.retry_after_s, error.code)

    dependency = Dependency(DATAVERSE, governor, circuit, RetryPolicy(settings.max_retries),
                            clock=clock, shared=cluster.circuit_row(DATAVERSE),
                            publish_gate=publish_gate,
                            lane=str(key))
    return Lane(key, session, tokens, dataverse, governor, cluster, dependency, activity)
