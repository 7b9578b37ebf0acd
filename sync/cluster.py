"""State every instance shares through Table Storage: the DOP hint, the throttle gate, leases.

- ``dop/hint``: the last ``x-ms-dop-hint`` any instance saw, so a cold instance starts at the
  right concurrency without probing;
- ``gate/dataverse``: throttled until (epoch seconds); a 429 seen by one instance pauses all;
- ``lease/<instance>``: one row per busy instance, renewed while it works; the live ones
  divide the hint between them;
- ``circuit/<service>``: the circuit of each dependency (open until, openings, the reason), so
  a service fault seen by one instance stops them all, and a closing reaches them all.

Each process refreshes its view every ``refresh_s`` and publishes a gate at once on a 429.
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

from sync.failures.circuit import Circuit, CircuitView
from sync.governor import Governor

logger = logging.getLogger(__name__)

UNKNOWN_HINT: Final = 5
"""Concurrency before any hint is known (what the .NET ServiceClient reports until then)."""
HINT_KEY: Final = ("dop", "hint")
GATE_KEY: Final = ("gate", "dataverse")
LEASE_PARTITION: Final = "lease"
CIRCUIT_PARTITION: Final = "circuit"


def share_of(hint: int, instances: int, cap: int) -> int:
    """This instance's part of the hint: an even split, at least 1, at most ``cap``."""
    return max(1, min(cap, hint // max(1, instances)))


def live_leases(expiries_s: list[float], now_s: float) -> int:
    """How many leases have not expired."""
    return sum(1 for expiry_s in expiries_s if expiry_s > now_s)


async def read_circuits(table: TableClient) -> dict[str, CircuitView]:
    """Every dependency's circuit as the cluster shares it."""
    rows = table.query_entities(f"PartitionKey eq '{CIRCUIT_PARTITION}'")
    return {str(row["RowKey"]): CircuitView(float(row.get("OpenUntil", 0.0)),
                                            int(row.get("Trips", 0)), str(row.get("Reason", "")))
            async for row in rows}


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What one refresh read."""

    hint: int | None
    instances: int
    gate_until_s: float


class Cluster:
    """This process's link to the shared state; ``run`` keeps it fresh in the background."""

    def __init__(self, table: TableClient, governor: Governor, *, cap: int, refresh_s: float,
                 lease_s: float, seen_hint: Callable[[], int | None],
                 busy: Callable[[], bool], clock: Callable[[], float] = time.time,
                 circuits: Mapping[str, Circuit] | None = None) -> None:
        self._table, self._governor, self._cap = table, governor, cap
        self._circuits = dict(circuits or {})
        self._refresh_s, self._lease_s = refresh_s, lease_s
        self._seen_hint, self._busy, self._clock = seen_hint, busy, clock
        self.instance_id = uuid.uuid4().hex
        self.view = ClusterView(hint=None, instances=1, gate_until_s=0.0)

    def __repr__(self) -> str:
        return f"Cluster(instance_id={self.instance_id!r}, view={self.view})"

    async def refresh(self) -> ClusterView:
        """Renew the lease (when busy), publish a newer hint, read the state, apply it."""
        now_s = self._clock()
        if self._busy():
            await self._upsert(LEASE_PARTITION, self.instance_id, ExpiresAt=now_s + self._lease_s)
        hint = await self._shared_hint()
        leases = [float(e["ExpiresAt"]) async for e in self._table.query_entities(
            f"PartitionKey eq '{LEASE_PARTITION}'", select=["ExpiresAt"])]
        gate = await self._get(*GATE_KEY)
        view = ClusterView(hint=hint, instances=max(1, live_leases(leases, now_s)),
                           gate_until_s=float(gate["Until"]) if gate else 0.0)
        self._apply(view, now_s)
        await self._read_circuits()
        return view

    async def publish_circuit(self, service: str, view: CircuitView) -> None:
        """Share a circuit's opening or closing with every instance."""
        await self._upsert(CIRCUIT_PARTITION, service, OpenUntil=view.open_until_s,
                           Trips=view.trips, Reason=view.reason[:1000], SetBy=self.instance_id)

    async def _read_circuits(self) -> None:
        if not self._circuits:
            return
        for service, view in (await read_circuits(self._table)).items():
            circuit = self._circuits.get(service)
            if circuit is not None:
                circuit.apply(view)

    async def publish_gate(self, retry_after_s: float, code: str) -> None:
        """Close the gate for every instance until now + ``retry_after_s`` (later wins)."""
        until_s = self._clock() + retry_after_s
        for _ in range(3):
            current = await self._get(*GATE_KEY)
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
        self._governor.set_share(share_of(view.hint or UNKNOWN_HINT, view.instances, self._cap),
                                 view.instances)
        if view.gate_until_s > now_s:
            self._governor.close_gate(view.gate_until_s - now_s)

    async def _shared_hint(self) -> int | None:
        seen = self._seen_hint()
        stored = await self._get(*HINT_KEY)
        stored_hint = int(stored["Hint"]) if stored else None
        if seen is not None and seen != stored_hint:
            await self._upsert(*HINT_KEY, Hint=seen, SeenAt=self._clock())
            return seen
        return stored_hint

    async def _write_gate(self, current: Any, until_s: float, code: str) -> None:
        entity = {"PartitionKey": GATE_KEY[0], "RowKey": GATE_KEY[1], "Until": until_s,
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

