"""Request slots: the DOP hint as a fixed pool of rows every instance leases from.

The hint is a budget for the whole client, so it is kept as ``hint`` rows in the ``slot``
partition of ``SyncState``. An instance sends only while it holds slots, at most one request
per slot:

- a slot is claimed with an ETag-guarded write (create when the row is new, replace with
  If-Match when it is free: never held, released, or its lease expired), so two instances never
  hold the same slot, and the cluster never holds more slots than the hint;
- a held slot is renewed (If-Match) when half its lease has passed; a slot not renewed expires,
  so a killed instance's slots come back after its lease;
- expiry is written on the holder's clock and judged on the reader's: another instance takes
  an expired slot only ``skew_s`` after its expiry (clocks that differ by up to ``skew_s``
  never see one slot held twice), while the holder stops using it before its own expiry;
- an instance releases the slots above its target, but never below what it has in flight; an
  idle instance's target is zero;
- the target is the instance's even part of the hint among the busy instances, in the order of
  their ids; the first ``hint % n`` get one more, so with more instances than the hint some hold
  none.

The arithmetic is pure (``target_slots``, ``plan_slots``); ``SlotTable`` does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

SLOT_PARTITION: Final = "slot"


@dataclass(frozen=True, slots=True)
class Slot:
    """One slot row as read: who holds it until when (an empty holder: free)."""

    index: int
    holder: str
    expires_s: float
    etag: str | None = None
    """The row's ETag; None for a slot whose row does not exist yet."""

    def free(self, now_s: float, skew_s: float = 0.0) -> bool:
        """Free for anyone: released, or expired ``skew_s`` ago (the holder's clock may be
        behind this one by that much)."""
        return not self.holder or self.expires_s + skew_s <= now_s

    def claimable_by(self, instance: str, now_s: float, skew_s: float) -> bool:
        """Free, or ``instance``'s own slot (its expiry is on ``instance``'s clock)."""
        return self.holder == instance or self.free(now_s, skew_s)

    def held_by(self, instance: str, now_s: float) -> bool:
        return self.holder == instance and self.expires_s > now_s


@dataclass(frozen=True, slots=True)
class SlotPlan:
    """What one refresh does with the slots: which to claim, renew and release."""

    claim: tuple[int, ...] = ()
    renew: tuple[int, ...] = ()
    release: tuple[int, ...] = ()
    keep: tuple[int, ...] = ()
    """The slots held, still valid, that stay held (renewed or not)."""


def slot_key(index: int) -> str:
    """The row key of slot ``index``: zero-padded so the rows sort by index."""
    return f"{index:05d}"


def target_slots(hint: int, instance: str, busy: Iterable[str], cap: int) -> int:
    """This instance's part of ``hint`` among the ``busy`` instances (itself included): an even
    split in the order of their ids, the first ``hint % n`` one more, at most ``cap``."""
    ranked = sorted({*busy, instance})
    rank, count = ranked.index(instance), len(ranked)
    return min(cap, hint // count + (1 if rank < hint % count else 0))


def plan_slots(instance: str, slots: Mapping[int, Slot], *, hint: int, target: int,
               in_flight: int, now_s: float, lease_s: float, skew_s: float = 0.0) -> SlotPlan:
    """Claim free slots below the hint up to ``target`` (expired ones ``skew_s`` past their
    expiry); release what is held beyond it (slots at or past the hint first), keeping at
    least ``in_flight``; renew what is kept and past half its lease."""
    mine = sorted((i for i, slot in slots.items() if slot.held_by(instance, now_s)),
                  key=lambda i: (i >= hint, i))
    valid = min(target, sum(1 for i in mine if i < hint))
    keep = mine[:max(valid, in_flight)]
    free = [i for i in range(hint) if i not in mine and
            (i not in slots or slots[i].claimable_by(instance, now_s, skew_s))]
    claim = free[:max(0, target - valid)]
    renew = [i for i in keep if slots[i].expires_s - now_s < lease_s / 2]
    return SlotPlan(claim=tuple(claim), renew=tuple(renew), release=tuple(mine[len(keep):]),
                    keep=tuple(keep))


def usable(held: Sequence[int], hint: int, target: int) -> int:
    """How many requests the held slots allow: those below the hint, at most the target."""
    return min(target, sum(1 for i in held if i < hint))


def slot_from(row: Mapping[str, Any], etag: str | None) -> Slot:
    return Slot(int(row["RowKey"]), str(row.get("Holder", "")), float(row.get("ExpiresAt", 0.0)),
                etag)


class SlotTable:
    """The slot rows of one table: read them, and claim, renew or release one with its ETag."""

    __slots__ = ("_partition", "_table", "instance")

    def __init__(self, table: TableClient, instance: str,
                 partition: str = SLOT_PARTITION) -> None:
        self._table, self.instance, self._partition = table, instance, partition

    def __repr__(self) -> str:
        return f"SlotTable(instance={self.instance!r})"

    async def read(self) -> dict[int, Slot]:
        rows = self._table.query_entities(f"PartitionKey eq '{self._partition}'")
        return {slot.index: slot for slot in
                [slot_from(row, row.metadata["etag"]) async for row in rows]}

    async def apply(self, plan: SlotPlan, slots: Mapping[int, Slot],
                    expires_s: float) -> dict[int, float]:
        """Carry out ``plan``; answer the slots held afterwards with their expiry (a lost race
        is not held)."""
        missing = Slot(0, "", 0.0)
        claimed = await asyncio.gather(*(self._take(i, slots.get(i, missing), expires_s)
                                         for i in plan.claim))
        renewed = await asyncio.gather(*(self._take(i, slots[i], expires_s) for i in plan.renew))
        await asyncio.gather(*(self._give_back(slots[i]) for i in plan.release))
        held = {i: slots[i].expires_s for i in plan.keep}
        for index, ok in zip(plan.renew, renewed, strict=True):
            if ok:
                held[index] = expires_s
            else:
                del held[index]  # it lapsed and another instance took it
        held.update({i: expires_s for i, ok in zip(plan.claim, claimed, strict=True) if ok})
        return held

    async def release_all(self, slots: Mapping[int, Slot], now_s: float) -> None:
        """Give back every slot this instance holds (it is leaving)."""
        await asyncio.gather(*(self._give_back(slot) for slot in slots.values()
                               if slot.held_by(self.instance, now_s)))

    async def _take(self, index: int, current: Slot, expires_s: float) -> bool:
        entity = {"PartitionKey": self._partition, "RowKey": slot_key(index),
                  "Holder": self.instance, "ExpiresAt": expires_s}
        try:
            if current.etag is None:
                await self._table.create_entity(entity)
            else:
                await self._table.update_entity(entity, mode=UpdateMode.REPLACE,
                                                etag=current.etag,
                                                match_condition=MatchConditions.IfNotModified)
        except (ResourceExistsError, ResourceModifiedError):
            return False  # another instance wrote it first
        return True

    async def _give_back(self, slot: Slot) -> None:
        if slot.etag is None:
            return
        entity = {"PartitionKey": self._partition, "RowKey": slot_key(slot.index), "Holder": "",
                  "ExpiresAt": 0.0}
        # ResourceModifiedError: it expired and another instance holds it now: nothing to do
        with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
            await self._table.update_entity(entity, mode=UpdateMode.REPLACE, etag=slot.etag,
                                            match_condition=MatchConditions.IfNotModified)
