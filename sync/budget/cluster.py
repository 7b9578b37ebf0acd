"""State every instance shares through Table Storage: the DOP hint, the gate, leases, slots.

Each row, and who deletes it:

- ``dop/hint``: the last ``x-ms-dop-hint`` an instance saw, and when (sync.budget.hint): so a
  cold instance starts at the right concurrency without probing. One row, rewritten in place.
- ``gate/dataverse``: throttled until (epoch seconds); a 429 seen by one instance pauses all.
  One row per lane, rewritten in place.
- ``lease/<instance>``: one row per busy instance, renewed while it works (sync.budget.leases);
  its instance deletes it when it goes idle or leaves, and any instance reaps it once it has
  been expired for a lease's length beyond the clock skew (a killed instance's).
- ``slot/<n>``: the hint as a pool of request slots; an instance sends only on the slots it
  has claimed (sync.budget.slots), so the cluster never holds more than the hint, with 1 or 100
  instances. Released in place, never deleted: at most the largest hint seen (<= 1,024 rows).
- ``circuit/<service>``: the circuit of each dependency (open until, openings, the reason, its
  generation), so a service fault seen by one instance stops them all, a closing reaches them
  all, and a half-open circuit sends one probe for the cluster (``sync.budget.circuit_row``:
  every write conditional on the row's ETag, never an older state over a newer one). One row
  per dependency, rewritten in place.

Each busy process refreshes its view every period (claiming, renewing and releasing slots
then, and setting its governor's share to the slots it holds) and publishes a gate at once on a
429; an idle one holding nothing reads and writes nothing. An instance holds no slot until a
refresh has claimed one: a joining instance takes only free slots, and the others give theirs
up at their next refresh, never below what they have in flight. Before any hint is known the
pool is one slot (``UNKNOWN_HINT``) for an instance with requests to send, first come, first
served; the instance that sees the first hint, or a changed one, refreshes at once and
publishes it.

The period is ``SYNC_STATE_REFRESH_S`` while the cluster is small, and spreads as it grows:
each instance measures the entities its refresh read and wrote and waits long enough that all
instances together stay within ``CLUSTER_BUDGET_PER_S`` (``refresh_period_s``; the figures for
up to Flex Consumption's 1,000 instances are in docs/operations.md). Leases and slots last
``LEASE_PERIODS`` periods at least, so a slower refresh still renews them in time.

Clocks: expiries are written on the writer's wall clock and compared on the reader's; the
reader allows ``skew_s`` (``SYNC_CLOCK_SKEW_S``) the safe way: another's slot is free only
``skew_s`` after its expiry, another's lease is live until ``skew_s`` after its expiry, and
another's gate stays closed ``skew_s`` longer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.budget.circuit_row import CIRCUIT_PARTITION, CircuitRow, view_of
from sync.budget.governor import Governor
from sync.budget.hint import HintRow
from sync.budget.leases import REAP_BATCH, LeaseSample, LeaseTable, sample_size
from sync.budget.slots import SLOT_PARTITION, SlotTable, plan_slots, target_slots, usable
from sync.clients.dataverse import HintSeen
from sync.clock import SYSTEM_CLOCK, Clock
from sync.failures.circuit import Circuit, CircuitView

logger = logging.getLogger(__name__)

UNKNOWN_HINT: Final = 1
"""Slots before any instance has seen a hint: one request at a time, within any hint the
service may send (1..1,024). The first answer carries the hint; the instance that saw it
publishes it at once, and every instance's pool is the hint from its next refresh on."""
HINT_KEY: Final = ("dop", "hint")
GATE_KEY: Final = ("gate", "dataverse")
LEASE_PARTITION: Final = "lease"
CLUSTER_BUDGET_PER_S: Final = 1000.0
"""Entities per second the refreshes of all instances may read and write together: half of
one Table partition's scalability target (2,000 entities/s), leaving the rest to gate
publications, circuits, slot races and the error of the instance estimate."""
LEASE_PERIODS: Final = 3
"""A lease or slot lasts at least this many refresh periods (renewed past half of it)."""
GATE_ATTEMPTS: Final = 8
"""Conditional gate writes before a publication waits for the next refresh (each lost race
means another instance wrote a gate: compared again)."""


def live_instances(expiries_s: Mapping[str, float], now_s: float,
                   skew_s: float = 0.0) -> list[str]:
    """The instances whose lease has not expired (give or take ``skew_s``)."""
    return [instance for instance, expiry_s in expiries_s.items() if expiry_s + skew_s > now_s]


def valid_for_s(expiries_s: Mapping[int, float], now_s: float, margin_s: float) -> float:
    """How long the slots held stay this instance's: until the first lease ends, less a margin
    (the time a refresh may take); 0 when it holds none."""
    if not expiries_s:
        return 0.0
    return max(0.0, min(expiries_s.values()) - now_s - margin_s)


def refresh_period_s(refresh_s: float, instances: float, entities: int,
                     budget_per_s: float = CLUSTER_BUDGET_PER_S) -> float:
    """How long to wait before the next refresh: ``refresh_s``, or longer when ``instances``
    refreshes of ``entities`` each would make more than ``budget_per_s`` together."""
    return max(refresh_s, instances * entities / budget_per_s)


def worst_refresh_entities(hint: int, instances: int, circuits: int = 2) -> int:
    """The most entities one busy instance's refresh reads and writes: its lease (1), the
    hint (read, and written from a fresh sighting: 2), the lease sample, the gate (1), every
    slot row and a change to each (2 per slot of the hint; only an instance that holds or wants
    a slot reads them), the circuits, and a reap of ``REAP_BATCH`` dead leases (2 each)."""
    return (1 + 2 + min(instances, sample_size(hint)) + 1 + 2 * hint + circuits
            + 2 * REAP_BATCH)


def gate_until_s(row: Mapping[str, Any], instance: str, skew_s: float) -> float:
    """Until when a gate row closes this instance's gate: its own as written, another's
    ``skew_s`` longer (the writer's clock may be ahead of this one)."""
    until_s = float(row["Until"])
    return until_s if row.get("SetBy") == instance else until_s + skew_s


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


async def read_circuits(table: TableClient,
                        partition: str = CIRCUIT_PARTITION) -> dict[str, CircuitView]:
    """Every dependency's circuit as the cluster shares it (one lane's, or the shared ones)."""
    rows = table.query_entities(f"PartitionKey eq '{partition}'")
    return {str(row["RowKey"]): view_of(row) async for row in rows}


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What one refresh read, and the slots this instance holds after it."""

    hint: int | None
    instances: int
    gate_until_s: float
    slots: int = 0


@dataclass(frozen=True, slots=True)
class Timing:
    """How often an instance refreshes and how long its leases last, and the clock skew its
    comparisons allow."""

    refresh_s: float
    lease_s: float
    skew_s: float = 0.0


class Cluster:
    """This process's link to the shared state; ``run`` keeps it fresh in the background."""

    def __init__(self, table: TableClient, governor: Governor, *, cap: int, timing: Timing,
                 seen_hint: Callable[[], HintSeen | None],
                 busy: Callable[[], bool], clock: Clock = SYSTEM_CLOCK,
                 circuits: Mapping[str, Circuit] | None = None,
                 keys: StateKeys = StateKeys(), own_circuits: frozenset[str] = frozenset()
                 ) -> None:
        """``circuits`` by name; those in ``own_circuits`` are the lane's (under its keys), the
        others the deployment's (the shared ``circuit`` partition)."""
        self._table, self._governor, self._cap = table, governor, cap
        self._circuits = dict(circuits or {})
        self.keys, self._own_circuits = keys, own_circuits
        self.timing = timing
        self._seen_hint, self._busy, self._clock = seen_hint, busy, clock
        self.instance_id = uuid.uuid4().hex
        self._slots = SlotTable(table, self.instance_id, keys.slots)
        self._leases = LeaseTable(table, self.instance_id, keys.leases)
        self._hint = HintRow(table, keys.hint, self.instance_id)
        self._leased = False
        self._held = 0
        self._considered: HintSeen | None = None
        """The last sighting this instance considered publishing."""
        self._next_reap_s = float("-inf")
        self._pending_gate: tuple[float, str] | None = None
        self._woken = asyncio.Event()
        self._refreshing = asyncio.Lock()
        """One refresh at a time (the refresher's, woken early, and a caller's)."""
        self.entities = 0
        """Entities the last refresh read and wrote."""
        self.period_s = timing.refresh_s
        """The wait before the next refresh (``refresh_period_s``)."""
        self.view = ClusterView(hint=None, instances=1, gate_until_s=0.0)

    def __repr__(self) -> str:
        return (f"Cluster(instance_id={self.instance_id!r}, view={self.view}, "
                f"period_s={self.period_s:g})")

    @property
    def lifetime_s(self) -> float:
        """How long a lease or slot written now lasts."""
        return max(self.timing.lease_s, LEASE_PERIODS * self.period_s)

    def hint_changed(self) -> None:
        """This process saw a new hint: refresh now (publish it) rather than at the period."""
        self._woken.set()

    def starved(self) -> None:
        """A request waits for a slot: an instance that was idle (no lease, no I/O since), or
        any while no hint is known (the one slot goes to demand), refreshes now rather than at
        the period; otherwise a busy one's period stands (the budget)."""
        if not self._leased or self.view.hint is None:
            self._woken.set()

    async def refresh(self) -> ClusterView:
        """Renew the lease (when busy), publish a fresh hint, read the state, settle this
        instance's slots and apply it all; an idle instance holding nothing does no I/O. One
        at a time: two at once would race each other for this instance's own slots."""
        async with self._refreshing:
            return await self._refresh()

    async def _refresh(self) -> ClusterView:
        now_s = self._clock.wall_s()
        busy = self._busy()
        fresh = self._fresh_sighting()
        if not (busy or self._leased or self._held or fresh or self._pending_gate):
            self.entities, self.period_s = 0, self.timing.refresh_s
            return self.view
        self.entities = 0
        await self._mark_lease(busy, now_s)
        hint = await self._publish_hint(fresh)
        pool = hint or UNKNOWN_HINT
        sample = await self._sample(busy, now_s, pool)
        gate = await self._read_gate()
        target = self._target(hint, sample) if busy else 0
        instances = max(1, round(sample.estimated))
        slots = await self._settle_slots(pool, target, min(instances, pool), now_s)
        self._apply(ClusterView(hint, instances, gate, slots), now_s)
        if busy:
            await self._read_circuits()
            self.entities += len(self._circuits)
            await self._reap(now_s)
        self.period_s = refresh_period_s(self.timing.refresh_s, sample.estimated, self.entities)
        return self.view

    async def leave(self) -> None:
        """Send nothing more, give back every slot and the lease (the process is ending)."""
        self._governor.set_share(0)
        async with self._refreshing:
            now_s = self._clock.wall_s()
            await self._slots.release_all(await self._slots.read(), now_s)
            self._held = 0
            await self._mark_lease(False, now_s)

    def _target(self, hint: int | None, sample: LeaseSample) -> int:
        """This busy instance's part of the hint; before any hint is known, the one slot of
        the unknown pool to an instance that asked to send within a lease, first come, first
        served (not to whichever ranks first: the planner's first read is not starved by an
        instance that has nothing to send)."""
        if hint is None:
            governor = self._governor
            demand = (governor.in_flight > 0 or governor.waiting > 0
                      or governor.idle_s() < self.timing.lease_s)
            return UNKNOWN_HINT if demand else 0
        return target_slots(hint, self.instance_id, sample.instances, self._cap)

    def _fresh_sighting(self) -> HintSeen | None:
        """The hint seen since the last refresh considered one (None: none since)."""
        seen, last = self._seen_hint(), self._considered
        if seen is None or seen is last or (last is not None and seen.seen_at_s < last.seen_at_s):
            return None
        return seen

    async def _publish_hint(self, fresh: HintSeen | None) -> int | None:
        stored = await self._hint.publish(fresh, self.timing.skew_s)
        self.entities += 2 if fresh is not None else 1
        if fresh is not None:
            self._considered = fresh
        return None if stored is None else stored.hint

    async def _sample(self, busy: bool, now_s: float, pool: int) -> LeaseSample:
        if not busy:
            return LeaseSample((), 1.0, complete=True)
        sample = await self._leases.sample(now_s, self.timing.skew_s, sample_size(pool))
        self.entities += len(sample.instances)
        return sample

    async def _read_gate(self) -> float:
        gate = await self._get(*self.keys.gate)
        self.entities += 1
        if self._pending_gate is not None:
            until_s, code = self._pending_gate
            self._pending_gate = None
            await self._publish_until(until_s, code, gate)
        return 0.0 if gate is None else gate_until_s(gate, self.instance_id, self.timing.skew_s)

    async def _settle_slots(self, pool: int, target: int, instances: int, now_s: float) -> int:
        """Claim, renew and release slots toward ``target``; the governor's share never
        exceeds the slots held, and is lowered before any is given back. An instance that
        wants none and holds none reads none."""
        if target == 0 and self._held == 0 and self._governor.in_flight == 0:
            self._governor.set_share(0, instances)
            return 0
        rows = await self._slots.read()
        held = {i: s.expires_s for i, s in rows.items() if s.held_by(self.instance_id, now_s)}
        margin_s = self.timing.refresh_s
        self._governor.set_share(min(self._governor.share, usable(list(held), pool, target)),
                                 instances, valid_for_s(held, now_s, margin_s))
        lifetime_s = self.lifetime_s
        plan = plan_slots(self.instance_id, rows, hint=pool, target=target,
                          in_flight=self._governor.in_flight, now_s=now_s, lease_s=lifetime_s,
                          skew_s=self.timing.skew_s)
        after = await self._slots.apply(plan, rows, now_s + lifetime_s)
        self.entities += len(rows) + len(plan.claim) + len(plan.renew) + len(plan.release)
        share = usable(list(after), pool, target)
        self._governor.set_share(share, instances, valid_for_s(after, now_s, margin_s))
        self._held = len(after)
        return len(after)

    async def _mark_lease(self, busy: bool, now_s: float) -> None:
        if busy:
            await self._leases.renew(now_s + self.lifetime_s)
            self._leased = True
            self.entities += 1
        elif self._leased:
            await self._leases.drop()
            self._leased = False
            self.entities += 1

    async def _reap(self, now_s: float) -> None:
        """Now and then (once per lease length), delete leases dead for longer than that."""
        if now_s < self._next_reap_s:
            return
        self._next_reap_s = now_s + self.timing.lease_s
        gone = await self._leases.reap(now_s, self.timing.skew_s, grace_s=self.lifetime_s)
        self.entities += 2 * gone
        if gone:
            logger.info("%d dead instances' leases deleted", gone,
                        extra={"event": "leases_reaped", "leases": gone})

    def circuit_row(self, service: str) -> CircuitRow:
        """The shared row of the circuit named ``service``, for this instance to write."""
        return CircuitRow(self._table, self._circuit_partition(service),
                          self._circuits[service], self.instance_id)

    async def publish_circuit(self, service: str) -> None:
        """Share a circuit's current state (an opening, a closing) with every instance."""
        await self.circuit_row(service).publish()

    def _circuit_partition(self, service: str) -> str:
        return self.keys.circuits if service in self._own_circuits else CIRCUIT_PARTITION

    async def _read_circuits(self) -> None:
        """Adopt each circuit's shared state where it is newer than this process's."""
        partitions = {self._circuit_partition(name) for name in self._circuits}
        for partition in sorted(partitions):
            for service, view in (await read_circuits(self._table, partition)).items():
                circuit = self._circuits.get(service)
                if circuit is not None and self._circuit_partition(service) == partition:
                    async with circuit.lock:
                        circuit.adopt(view)

    async def publish_gate(self, retry_after_s: float, code: str) -> bool:
        """Close the gate for every instance until now + ``retry_after_s`` (later wins);
        whether it is published. One that keeps losing races is logged and tried again at the
        next refresh, never dropped."""
        until_s = self._clock.wall_s() + retry_after_s
        return await self._publish_until(until_s, code, await self._get(*self.keys.gate))

    async def _publish_until(self, until_s: float, code: str, current: Any) -> bool:
        for _ in range(GATE_ATTEMPTS):
            if current is not None and float(current["Until"]) >= until_s:
                return True
            try:
                await self._write_gate(current, until_s, code)
                return True
            except (ResourceModifiedError, ResourceExistsError):
                current = await self._get(*self.keys.gate)  # another wrote first: compare
        logger.warning("gate until %.1f not published after %d conflicting writes; the next "
                       "refresh tries again", until_s, GATE_ATTEMPTS,
                       extra={"event": "gate_not_published", "code": code})
        self._pending_gate = max(self._pending_gate or (until_s, code), (until_s, code))
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh every period until ``stop`` is set, or at once when a new hint is seen; a
        failed refresh is logged."""
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception:
                logger.exception("cluster state refresh failed", extra={"event": "refresh_failed"})
            await self._pause(stop)

    async def _pause(self, stop: asyncio.Event) -> None:
        """Until the period has passed on the clock, ``stop`` is set or a new hint is seen. A
        timer, not a sleep: on a test's clock in burst mode the refresher never moves time."""
        timer = self._clock.call_later(self.period_s, self._woken.set)
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._woken.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            for wait in waits:
                wait.cancel()
            self._woken.clear()

    def _apply(self, view: ClusterView, now_s: float) -> None:
        self.view = view
        if view.gate_until_s > now_s:
            self._governor.close_gate(view.gate_until_s - now_s)

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
