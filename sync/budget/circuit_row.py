"""The cluster's row of one circuit (``circuit/<service>`` in the state table, under the lane's
prefix for a lane's Dataverse circuit): the state every instance adopts.

Owner and lifetime: one row per dependency, overwritten in place by whichever instance changes
the circuit; it never grows, and a deployment's rows number its dependencies.

Every write is conditional: on the ETag of the row as this process read it (or on its absence),
and only when the row's ``Generation`` is not newer than the state this process last saw or wrote.
A write carries the next generation, so an older state never replaces a newer one (a closing
published late cannot undo an opening made since), and a process that finds the row newer
adopts it instead. The writes are:

- ``publish``: the circuit's state as it is when the write goes (an opening, a closing, a failed
  probe's reason); this process's writes go one at a time, in order (``Circuit.lock``);
- ``claim_probe``: a half-open circuit's probe claims the next, longer opening before it is
  sent; only one instance's claim can succeed on one version of the row, so the cluster sends one
  probe per back-off period, and every other instance waits that opening out. The claim moves
  the row's time, not its count of openings: the prober publishes that once the probe's answer
  is in (one more opening when it failed, a closing when it succeeded), so a watcher of the row
  (``sync local``'s blocked judge) sees the circuit open again only after a probe failed.
  The claim also writes when it was made (``ClaimedAt``): while it is fresh every instance
  tells the requests it holds back to come again in a second (``Circuit.holds_for_s``), since
  the probe's answer may close the circuit at any moment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.failures.circuit import Circuit, CircuitView

CIRCUIT_PARTITION: Final = "circuit"
WRITE_ATTEMPTS: Final = 3
"""Writes of one state tried before giving up to a row that keeps moving (each try first reads
the row again, and adopts it when it is newer)."""
MAX_REASON_CHARS: Final = 1000


def view_of(row: Mapping[str, Any] | None) -> CircuitView:
    """The circuit state a row holds (a closed, never-shared circuit when there is none)."""
    if row is None:
        return CircuitView()
    return CircuitView(float(row.get("OpenUntil", 0.0)), int(row.get("Trips", 0)),
                       str(row.get("Reason", "")), int(row.get("Generation", 0)),
                       float(row.get("ClaimedAt", 0.0)))


def same_state(one: CircuitView, other: CircuitView) -> bool:
    """Whether two views say the same thing, whatever their generations."""
    return ((one.open_until_s, one.trips, one.reason[:MAX_REASON_CHARS], one.claimed_s)
            == (other.open_until_s, other.trips, other.reason[:MAX_REASON_CHARS],
                other.claimed_s))


class CircuitRow:
    """One circuit's row, as this process reads and writes it."""

    __slots__ = ("_circuit", "_instance", "_partition", "_table")

    def __init__(self, table: TableClient, partition: str, circuit: Circuit,
                 instance: str) -> None:
        self._table, self._partition, self._circuit = table, partition, circuit
        self._instance = instance

    def __repr__(self) -> str:
        return f"CircuitRow({self._partition}/{self._circuit.service}, {self._circuit!r})"

    async def publish(self) -> None:
        """Write the circuit's current state, unless the row is newer (then it is adopted)
        or already says the same."""
        circuit = self._circuit
        async with circuit.lock:
            for _ in range(WRITE_ATTEMPTS):
                row = await self._get()
                shared = view_of(row)
                if circuit.adopt(shared) or same_state(circuit.view, shared):
                    return
                generation = max(shared.generation, circuit.generation) + 1
                try:
                    await self._write(row, dataclasses.replace(circuit.view,
                                                               generation=generation))
                except (ResourceModifiedError, ResourceExistsError):
                    continue  # another instance wrote first: read theirs and judge again
                circuit.synced(generation)
                return

    async def claim_probe(self) -> bool:
        """Claim the half-open probe: the row takes the circuit's next opening. False when the
        row changed first (another instance claimed the probe, opened or closed the circuit):
        the circuit has adopted the row's state."""
        circuit = self._circuit
        async with circuit.lock:
            row = await self._get()
            shared = view_of(row)
            if circuit.adopt(shared):
                return False
            generation = max(shared.generation, circuit.generation) + 1
            claim = dataclasses.replace(circuit.next_opening(), generation=generation)
            try:
                await self._write(row, dataclasses.replace(claim, trips=circuit.view.trips),
                                  probe=True)
            except (ResourceModifiedError, ResourceExistsError):
                circuit.adopt(view_of(await self._get()))
                return False
            circuit.adopt(claim)  # this process counts the opening its probe would fail into
            return True

    async def _get(self) -> Any:
        try:
            return await self._table.get_entity(self._partition, self._circuit.service)
        except ResourceNotFoundError:
            return None

    async def _write(self, row: Any, view: CircuitView, *, probe: bool = False) -> None:
        """Write ``view`` (as its generation) where ``row`` (None: no row) still is."""
        entity = {"PartitionKey": self._partition, "RowKey": self._circuit.service,
                  "OpenUntil": view.open_until_s, "Trips": view.trips,
                  "Reason": view.reason[:MAX_REASON_CHARS], "Generation": view.generation,
                  "SetBy": self._instance, "Probe": probe, "ClaimedAt": view.claimed_s}
        if row is None:
            await self._table.create_entity(entity)
        else:
            await self._table.update_entity(entity, mode=UpdateMode.REPLACE,
                                            etag=row.metadata["etag"],
                                            match_condition=MatchConditions.IfNotModified)
