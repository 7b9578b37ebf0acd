"""What one message is carried out with (``Work``), and what a process offers to build it
(``WorkSource``: ``sync.services.Services`` is the one that runs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sync.budget.dependency import Dependency
from sync.budget.lane import Lane
from sync.clients.dataverse import DataverseClient
from sync.clients.enrichment import EnrichmentClient
from sync.clock import Clock
from sync.config.definitions import Definition
from sync.config.lanes import LaneKey
from sync.config.settings import Settings
from sync.config.table_definition import SyncDefinition
from sync.failures.circuit import CircuitPolicy
from sync.safety.flags import ControlCache
from sync.state.enrichment_cache import EnrichmentCache
from sync.state.storage import Stores


@dataclass(slots=True)
class Enricher:
    """One enrichment endpoint: its client, its governed call (governor, circuit) and its
    cache (None: the definition keeps no cache)."""

    client: EnrichmentClient
    dependency: Dependency
    cache: EnrichmentCache | None = None


@dataclass(frozen=True, slots=True)
class Work:
    """What one message is carried out with: its definition, the lane it writes through, the
    enrichment endpoint of its definition and the shared storage."""

    settings: Settings
    named: Definition
    lane: Lane
    enricher: Enricher
    storage: Stores
    circuit_policy: CircuitPolicy
    control: ControlCache
    lanes: tuple[Lane, ...] = ()
    """Every lane of the definition (this one included): where unfinished work may go."""

    @property
    def definition(self) -> SyncDefinition:
        """The table, mapping and options of the message's definition."""
        return self.named.table

    @property
    def dataverse(self) -> DataverseClient:
        return self.lane.dataverse

    @property
    def dataverse_dep(self) -> Dependency:
        return self.lane.dependency

    @property
    def enrichment(self) -> EnrichmentClient:
        return self.enricher.client

    @property
    def enrichment_dep(self) -> Dependency:
        return self.enricher.dependency


class WorkSource(Protocol):
    """What the worker and the planner need of a process: its settings, storage and clock,
    and the ``Work`` of a definition through one of its lanes."""

    @property
    def settings(self) -> Settings: ...

    @property
    def storage(self) -> Stores: ...

    @property
    def clock(self) -> Clock: ...

    def work(self, definition: Definition, lane: LaneKey) -> Work: ...

    def lanes_of(self, definition: Definition) -> tuple[Lane, ...]: ...
