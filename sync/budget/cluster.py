"""State every instance shares through Table Storage: the DOP hint, the gate, leases, slots.

- ``dop/hint``: the last ``x-ms-dop-hint`` any instance saw, so a cold instance starts at the
  right concurrency without probing;
- ``gate/dataverse``: throttled until (epoch seconds); a 429 seen by one instance pauses all;
- ``lease/<instance>``: one row per busy instance, renewed while it works, deleted when it goes
  idle; the live ones divide the hint between them (each one's target, sync.budget.slots);
- ``slot/<n>``: the hint as a pool of request slots; an instance sends only on the slots it
  has claimed (sync.budget.slots), so the cluster never holds more than the hint, with 1 or 100
  instances;
- ``circuit/<service>``: the circuit of each dependency (open until, openings, the reason), so
  a service fault seen by one instance stops them all, and a closing reaches them all.

Each process refreshes its view every ``refresh_s`` (claiming, renewing and releasing slots
then, and setting its governor's share to the slots it holds) and publishes a gate at once on a
429. An instance holds no slot until a refresh has claimed one: a joining instance takes only
free slots, and the others give theirs up at their next refresh, never below what they have in
flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.budget.governor import Governor
from sync.budget.slots import SLOT_PARTITION, SlotTable, plan_slots, target_slots, usable
from sync.failures.circuit import Circuit, CircuitView

logger = logging.getLogger(__name__)

UNKNOWN_HINT: Final = 5
"""Slots before any instance has ever seen a hint (what the .NET ServiceClient assumes until
then); the first answer carries the hint, cached from then on for every run."""
HINT_KEY: Final = ("dop", "hint")
GATE_KEY: Final = ("gate", "dataverse")
LEASE_PARTITION: Final = "lease"
CIRCUIT_PARTITION: Final = "circuit"


@dataclass(frozen=True, slots=True)
class StateKeys:
    """Where one lane's rows are: the budget's rows (hint, leases, slots) under ``budget``,
    its own (gate, Dataverse circuit) under ``lane``. Empty prefixes are the single-lane
    deployment's keys (``sync.budget.lane.state_keys`` makes the others)."""

    budget: str = ""
    lane: str = ""

    @property
    def hint(self) -> tuple[str, str]:
        return (self.budget + HINT_KEY[0], HINT_KEY[1])

    @property
    def gate(self) -> tuple[str, str]:
        return (self.lane + GATE_KEY[0], GATE_KEY[1])

    @property
    def leases(self) -> str:
        return self.budget + LEASE_PARTITION

    @property
    def slots(self) -> str:
        return self.budget + SLOT_PARTITION

    @property
    def circuits(self) -> str:
        return self.lane + CIRCUIT_PARTITION


def live_instances(expiries_s: Mapping[str, float], now_s: float) -> list[str]:
    """The instances whose lease has not expired."""
    return [instance for instance, expiry_s in expiries_s.items() if expiry_s > now_s]


def valid_for_s(expiries_s: Mapping[int, float], now_s: float, margin_s: float) -> float:
    """How long the slots held stay this instance's: until the first lease ends, less a margin
    (for clocks that differ between instances); 0 when it holds none."""
    if not expiries_s:
        return 0.0
    return max(0.0, min(expiries_s.values()) - now_s - margin_s)


async def read_circuits(table: TableClient,
                        partition: str = CIRCUIT_PARTITION) -> dict[str, CircuitView]:
    """Every dependency's circuit as the cluster shares it (one lane's, or the shared ones)."""
    rows = table.query_entities(f"PartitionKey eq '{partition}'")
    return {str(row["RowKey"]): CircuitView(float(row.get("OpenUntil", 0.0)),
                                            int(row.get("Trips", 0)), str(row.get("Reason", "")))
            async for row in rows}


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What one refresh read, and the slots this instance holds after it."""

    hint: int | None
    instances: int
    gate_until_s: float
    slots: int = 0


class Cluster:
    """This process's link to the shared state; ``run`` keeps it fresh in the background."""

    def __init__(self, table: TableClient, governor: Governor, *, cap: int, refresh_s: float,
                 lease_s: float, seen_hint: Callable[[], int | None],
                 busy: Callable[[], bool], clock: Callable[[], float] = time.time,
                 circuits: Mapping[str, Circuit] | None = None,
                 keys: StateKeys = StateKeys(), own_circuits: frozenset[str] = frozenset()
                 ) -> None:
        """``circuits`` by name; those in ``own_circuits`` are the lane's (under its keys), the
        others the deployment's (the shared ``circuit`` partition)."""
        self._table, self._governor, self._cap = table, governor, cap
        self._circuits = dict(circuits or {})
        self.keys, self._own_circuits = keys, own_circuits
        self._refresh_s, self._lease_s = refresh_s, lease_s
        self._seen_hint, self._busy, self._clock = seen_hint, busy, clock
        self.instance_id = uuid.uuid4().hex
        self._slots = SlotTable(table, self.instance_id, keys.slots)
        self._leased = False
        self.view = ClusterView(hint=None, instances=1, gate_until_s=0.0)

    def __repr__(self) -> str:
        return f"Cluster(instance_id={self.instance_id!r}, view={self.view})"

    async def refresh(self) -> ClusterView:
        """Renew the lease (when busy), publish a newer hint, read the state, settle this
        instance's slots and apply it all."""
        now_s = self._clock()
        busy = self._busy()
        await self._mark_lease(busy, now_s)
        hint = await self._shared_hint()
        leases = {str(e["RowKey"]): float(e["ExpiresAt"]) async for e in
                  self._table.query_entities(f"PartitionKey eq '{self.keys.leases}'",
                                             select=["RowKey", "ExpiresAt"])}
        live = live_instances(leases, now_s)
        gate = await self._get(*self.keys.gate)
        view = ClusterView(hint=hint, instances=max(1, len(live)),
                           gate_until_s=float(gate["Until"]) if gate else 0.0)
        target = target_slots(hint or UNKNOWN_HINT, self.instance_id, live, self._cap) \
            if busy else 0
        slots = await self._settle_slots(hint or UNKNOWN_HINT, target, view.instances, now_s)
        self._apply(ClusterView(view.hint, view.instances, view.gate_until_s, slots), now_s)
        await self._read_circuits()
        return self.view

    async def leave(self) -> None:
        """Send nothing more, give back every slot and the lease (the process is ending)."""
        self._governor.set_share(0)
        now_s = self._clock()
        await self._slots.release_all(await self._slots.read(), now_s)
        await self._mark_lease(False, now_s)

    async def _settle_slots(self, pool: int, target: int, instances: int, now_s: float) -> int:
        """Claim, renew and release slots toward ``target``; the governor's share never
        exceeds the slots held, and is lowered before any is given back."""
        rows = await self._slots.read()
        held = {i: s.expires_s for i, s in rows.items() if s.held_by(self.instance_id, now_s)}
        margin_s = self._refresh_s
        self._governor.set_share(min(self._governor.share, usable(list(held), pool, target)),
                                 instances, valid_for_s(held, now_s, margin_s))
        plan = plan_slots(self.instance_id, rows, hint=pool, target=target,
                          in_flight=self._governor.in_flight, now_s=now_s, lease_s=self._lease_s)
        after = await self._slots.apply(plan, rows, now_s + self._lease_s)
        share = usable(list(after), pool, target)
        self._governor.set_share(share, instances, valid_for_s(after, now_s, margin_s))
        return len(after)

    async def _mark_lease(self, busy: bool, now_s: float) -> None:
        if busy:
            await self._upsert(self.keys.leases, self.instance_id, ExpiresAt=now_s + self._lease_s)
            self._leased = True
        elif self._leased:
            with contextlib.suppress(ResourceNotFoundError):
                await self._table.delete_entity(self.keys.leases, self.instance_id)
            self._leased = False

    async def publish_circuit(self, service: str, view: CircuitView) -> None:
        """Share a circuit's opening or closing with every instance."""
        await self._upsert(self._circuit_partition(service), service,
                           OpenUntil=view.open_until_s,
                           Trips=view.trips, Reason=view.reason[:1000], SetBy=self.instance_id)

    def _circuit_partition(self, service: str) -> str:
        return self.keys.circuits if service in self._own_circuits else CIRCUIT_PARTITION

    async def _read_circuits(self) -> None:
        partitions = {self._circuit_partition(name) for name in self._circuits}
        for partition in sorted(partitions):
            for service, view in (await read_circuits(self._table, partition)).items():
                circuit = self._circuits.get(service)
                if circuit is not None and self._circuit_partition(service) == partition:
                    circuit.apply(view)

    async def publish_gate(self, retry_after_s: float, code: str) -> None:
        """Close the gate for every instance until now + ``retry_after_s`` (later wins)."""
        until_s = self._clock() + retry_after_s
        for _ in range(3):
            current = await self._get(*self.keys.gate)
            if current is not None and float(current["Until"]) >= until_s:
                return
            try:
                await self._write_gate(current, until_s, code)
                return
            except (ResourceModifiedError, ResourceExistsError):
                continue  # another instance wrote first: read theirs and compare again

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh every ``refresh_s`` until ``stop`` is set; a failed refresh is logged."""
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception:
                logger.exception("cluster state refresh failed", extra={"event": "refresh_failed"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._refresh_s)

    def _apply(self, view: ClusterView, now_s: float) -> None:
        self.view = view
        if view.gate_until_s > now_s:
            self._governor.close_gate(view.gate_until_s - now_s)

    async def _shared_hint(self) -> int | None:
        seen = self._seen_hint()
        stored = await self._get(*self.keys.hint)
        stored_hint = int(stored["Hint"]) if stored else None
        if seen is not None and seen != stored_hint:
            await self._upsert(*self.keys.hint, Hint=seen, SeenAt=self._clock())
            return seen
        return stored_hint

    async def _write_gate(self, current: Any, until_s: float, code: str) -> None:
        partition, row = self.keys.gate
        entity = {"PartitionKey": partition, "RowKey": row, "Until": until_s,
                  "Code": code, "SetBy": self.instance_id}
        if current is None:
            await self._table.create_entity(entity)
        else:
            await self._table.update_entity(entity, mode=UpdateMode.REPLACE,
                                            etag=current.metadata["etag"],
                                            match_condition=MatchConditions.IfNotModified)

    async def _get(self, partition: str, row: str) -> Any:
        try:
            return await self._table.get_entity(partition, row)
        except ResourceNotFoundError:
            return None

    async def _upsert(self, partition: str, row: str, **fields: Any) -> None:
        await self._table.upsert_entity({"PartitionKey": partition, "RowKey": row, **fields},
                                        mode=UpdateMode.REPLACE)

