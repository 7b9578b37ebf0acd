"""What ``sync status`` reads: a run's totals, the queues, and the cluster's shared state.

The numbers are the ledger's (``sync.state.runs.read_run``), the queues' approximate counts, and
the rows ``sync.budget.cluster`` and ``sync.budget.slots`` keep in the state table: the gate,
the circuits, the DOP hint, the slot leases and the instance leases. The local stack's summary
reads the same.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables.aio import TableClient

from sync.budget.cluster import UNKNOWN_HINT, StateKeys, live_instances, read_circuits
from sync.budget.slots import slot_from
from sync.clients.dataverse import SERVICE as DATAVERSE
from sync.clients.enrichment import SERVICE as ENRICHMENT
from sync.config.settings import StorageSettings
from sync.config.storage_names import (
    DEAD_LETTER_TABLE,
    LEDGER_TABLE,
    POISON_QUEUE,
    QUEUES,
    REPORT_TABLE,
    STATE_TABLE,
)
from sync.failures.circuit import CircuitView
from sync.message.contract import DEFAULT_DEFINITION
from sync.message.ids import compact_run_id
from sync.ops.known import check_published
from sync.ops.outcome import NotFound
from sync.ops.target import QUEUE_ROLE, TABLE_ROLE, explain
from sync.safety import canary, dry_run, flags
from sync.safety.canary import CanaryRow
from sync.safety.flags import Flag
from sync.state import runs
from sync.state.letter_index import DEAD
from sync.state.runs import RunTotals
from sync.state.storage import queue_client, storage_credential, table_client

T = TypeVar("T")
SERVICES: Final = (DATAVERSE, ENRICHMENT)
"""Every service with a circuit: shown closed until its circuit first opens."""


class NoRun(NotFound):
    """There is no run to show (none yet, or not the one asked for); the message says so."""


@dataclass(frozen=True, slots=True)
class ClusterState:
    """The shared state as one read found it."""

    gate_until_s: float = 0.0
    gate_code: str = ""
    circuits: dict[str, CircuitView] = field(default_factory=dict)
    dop_hint: int | None = None
    slots_held: dict[str, int] = field(default_factory=dict)
    """Slots held (lease not expired), by instance."""
    instances: int = 0
    """Instances with a live lease (busy)."""
    lanes: dict[str, ClusterState] = field(default_factory=dict)
    """The same for each lane (``prod/a``: gate, circuit) and each environment whose lanes
    share the hint (``prod``: hint, slots, leases); empty for a single-lane deployment."""


@dataclass(frozen=True, slots=True)
class ControlState:
    """The pause or cancel flags of the definition and of the run, and the run's canary."""

    definition: Flag = field(default_factory=lambda: Flag(
        flags.definition_scope(DEFAULT_DEFINITION)))
    run: Flag | None = None
    canary: CanaryRow | None = None


@dataclass(frozen=True, slots=True)
class RunStatus:
    """Everything ``sync status`` shows, read at ``now_s``."""

    now_s: float
    run: RunTotals
    queues: dict[str, int]
    cluster: ClusterState
    overlapping: tuple[RunTotals, ...] = ()
    """The other run(s) of an overlap, when still incomplete."""
    dead_letters_by_state: dict[str, int] = field(default_factory=dict)
    """The run's dead letters in the index now: dead (waiting for a repair), replaying,
    replayed (their records went back to the queue, and count as written once written)."""
    dry_run: dry_run.Preview | None = None
    """The run's dry-run report; None when the run writes."""
    control: ControlState = field(default_factory=ControlState)

    @property
    def poisoned(self) -> int:
        return self.queues.get(POISON_QUEUE, 0)


def elapsed_s(totals: RunTotals, now_s: float) -> float:
    """From the run's start to its completion, or to now while it runs."""
    end_s = totals.run.completed_s if totals.run.completed else now_s
    return max(0.0, end_s - totals.run.started_s)


def rate_per_s(totals: RunTotals, now_s: float) -> float:
    """Records done per second since the run started."""
    seconds = elapsed_s(totals, now_s)
    return totals.done / seconds if seconds > 0 else 0.0


def eta_s(totals: RunTotals, now_s: float) -> float | None:
    """Seconds left at the current rate: 0 when complete, None while nothing is done yet or
    the plan is still paging (the total is not known)."""
    if totals.run.completed:
        return 0.0
    rate = rate_per_s(totals, now_s)
    if rate <= 0 or not totals.run.plan_complete:
        return None
    return totals.open / rate


def circuit_state(view: CircuitView, now_s: float) -> str:
    """closed, open or half-open, as a circuit in any instance would see it now."""
    if view.trips == 0:
        return "closed"
    return "open" if view.open_until_s > now_s else "half-open"


async def read_status(storage: StorageSettings, run_id: str | None, now_s: float, *,
                      definition: str | None = None) -> RunStatus:
    """Read one run (the latest by default, or the latest of ``definition``) and the state
    around it; ``NoRun`` or a ``TargetError`` an operator can act on."""
    credential = storage_credential(storage)
    try:
        async with (table_client(storage, LEDGER_TABLE, credential) as ledger,
                    table_client(storage, STATE_TABLE, credential) as state,
                    table_client(storage, REPORT_TABLE, credential) as reports):
            if definition is not None:
                await _guard(check_published(state, definition), f"table {STATE_TABLE}",
                             TABLE_ROLE)
            totals = await _guard(_find_run(ledger, run_id, definition), f"table {LEDGER_TABLE}",
                                  TABLE_ROLE)
            others = await _guard(_overlapping(ledger, totals), f"table {LEDGER_TABLE}",
                                  TABLE_ROLE)
            cluster = await _guard(read_cluster(state, now_s), f"table {STATE_TABLE}",
                                   TABLE_ROLE)
            report = await _guard(dry_run.read_report(reports, totals.run.run_id),
                                  f"table {REPORT_TABLE}", TABLE_ROLE)
            flags = await _guard(read_control(state, totals.run.run_id, totals.run.definition),
                                 f"table {STATE_TABLE}",
                                 TABLE_ROLE)
        async with table_client(storage, DEAD_LETTER_TABLE, credential) as letters:
            states = await _guard(dead_letter_states(letters, totals.run.run_id),
                                  f"table {DEAD_LETTER_TABLE}", TABLE_ROLE)
        queues = await read_queue_counts(storage, credential)
    finally:
        if credential is not None:
            await credential.close()
    return RunStatus(now_s, totals, queues, cluster, others, dead_letters_by_state=states,
                     dry_run=report, control=flags)


async def dead_letter_states(letters: TableClient, run_id: str) -> dict[str, int]:
    """How many of the run's dead letters are in each state of the index (none when the index
    table does not exist yet)."""
    rows = letters.query_entities("PartitionKey eq @run", parameters={"run": run_id},
                                  select=["State"])
    try:
        return dict(Counter([str(row.get("State") or DEAD) async for row in rows]))
    except ResourceNotFoundError:
        return {}


async def read_control(state: TableClient, run_id: str,
                       definition: str = DEFAULT_DEFINITION) -> ControlState:
    """The run's definition's and the run's flags and the run's canary, as the state table
    holds them."""
    return ControlState(
        definition=await flags.read_flag(state, flags.definition_scope(definition)),
        run=await flags.read_flag(state, flags.run_scope(run_id)),
        canary=await canary.read_canary(state, run_id))


async def _find_run(ledger: TableClient, run_id: str | None,
                    definition: str | None = None) -> RunTotals:
    if run_id is None and definition is not None:
        chosen = await runs.latest_run_id(ledger, runs.definition_index(definition))
        if chosen is None:
            raise NoRun(f"no plan of definition {definition!r} in the ledger yet")
    else:
        chosen = compact_run_id(run_id) if run_id else await runs.latest_run_id(ledger)
    if chosen is None:
        raise NoRun("no runs yet: the ledger holds no plan and no producer's message (the "
                    "first plan runs on the SYNC_SCHEDULE timer)")
    totals = await runs.read_run(ledger, chosen)
    if totals is None:
        raise NoRun(f"no run {chosen!r} in the ledger (run ids look like "
                    "run-20261122T020000Z-1a2b3c, or a producer's batch id)")
    return totals


async def _overlapping(ledger: TableClient, totals: RunTotals) -> tuple[RunTotals, ...]:
    ids = [i for i in (totals.run.previous_run_id, totals.run.overlapped_by) if i]
    found = [await runs.read_run(ledger, i) for i in ids]
    return tuple(t for t in found if t is not None and not t.run.completed)


async def read_cluster(state: TableClient, now_s: float) -> ClusterState:
    """The gate, circuits, hint, slots and leases as the state table holds them: the
    single-lane keys, and each lane's and environment's own (``lanes``)."""
    single = await read_scope(state, now_s, StateKeys())
    lanes = {scope_name(prefix): await read_scope(state, now_s, StateKeys(prefix, prefix))
             for prefix in await lane_prefixes(state)}
    return dataclasses.replace(single, circuits={**dict.fromkeys(SERVICES, CircuitView()),
                                                 **single.circuits}, lanes=lanes)


async def lane_prefixes(state: TableClient) -> list[str]:
    """The key prefixes of the lanes (``prod.a|``: gate, circuit) and of the environments
    whose lanes share a budget (``prod|``: hint, slots, leases) that have rows."""
    found = {str(row["PartitionKey"]).split("|", 1)[0] + "|"
             async for row in state.list_entities(select=["PartitionKey"])
             if "|" in str(row["PartitionKey"])}
    return sorted(found)


def scope_name(prefix: str) -> str:
    """``prod.a|`` -> ``prod/a`` (a lane), ``prod|`` -> ``prod`` (an environment's budget)."""
    return prefix.rstrip("|").replace(".", "/", 1)


async def read_scope(state: TableClient, now_s: float, keys: StateKeys) -> ClusterState:
    """One scope's gate, circuits, hint, slots and leases."""
    gate = await _get(state, *keys.gate)
    hint = await _get(state, *keys.hint)
    held: dict[str, int] = {}
    async for row in state.query_entities(f"PartitionKey eq '{keys.slots}'"):
        slot = slot_from(row, None)
        if not slot.free(now_s):
            held[slot.holder] = held.get(slot.holder, 0) + 1
    leases = {str(e["RowKey"]): float(e["ExpiresAt"]) async for e in
              state.query_entities(f"PartitionKey eq '{keys.leases}'")}
    return ClusterState(gate_until_s=float(gate["Until"]) if gate else 0.0,
                        gate_code=str(gate.get("Code", "")) if gate else "",
                        circuits=await read_circuits(state, keys.circuits),
                        dop_hint=int(hint["Hint"]) if hint else None, slots_held=held,
                        instances=len(live_instances(leases, now_s)))


async def read_queue_counts(storage: StorageSettings,
                            credential: Any = None) -> dict[str, int]:
    """Each queue's approximate message count (visible, delayed and in flight alike)."""
    counts: dict[str, int] = {}
    for name in QUEUES:
        async with queue_client(storage, name, credential) as queue:
            properties = await _guard(queue.get_queue_properties(), f"queue {name}", QUEUE_ROLE)
        counts[name] = properties.approximate_message_count or 0
    return counts


async def _guard(step: Awaitable[T], resource: str, role: str) -> T:
    try:
        return await step
    except AzureError as error:
        raise explain(error, resource, role) from None


async def _get(table: TableClient, partition: str, row: str) -> Mapping[str, Any] | None:
    try:
        return await table.get_entity(partition, row)
    except ResourceNotFoundError:
        return None


def hint_or_default(cluster: ClusterState) -> int:
    """The hint the slots are cut from: the cached one, else what instances assume."""
    return cluster.dop_hint if cluster.dop_hint is not None else UNKNOWN_HINT

