"""Instance leases: one row per busy instance, the live ones read as a bounded sample.

A busy instance keeps a ``lease/<instance id>`` row whose ``ExpiresAt`` it renews at every
refresh; the live leases divide the hint between them (``sync.budget.slots.target_slots``).

Who deletes a lease row, and when:

- its instance, when it goes idle or leaves (``drop``);
- any instance, once the row has been expired for ``grace_s`` beyond the clock skew
  (``reap``, an ETag-conditional delete, so a lease renewed meanwhile is kept): an instance
  killed or scaled in leaves its row behind, and the next busy instance's reap removes it.

The read is bounded: a refresh reads the first ``sample_size`` live leases in key order, never
the whole partition. With fewer live leases than that the sample is all of them (exact); with
more, the instances ranked past the sample hold no slot anyway (``sample_size`` is above the
hint), and the count is estimated from where the last sampled key lies in the key space
(instance ids are uuid4 hex: their first 12 digits are uniform).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

LEASE_SAMPLE: Final = 32
"""Live leases a refresh reads at least (more when the hint is larger): enough to estimate
the instance count within about a fifth when there are more."""
QUERY_TOP_MAX: Final = 1000
"""The most rows one Table query page returns."""
REAP_BATCH: Final = 20
"""Dead leases one reap deletes at most (the next reap goes on)."""
_KEY_DIGITS: Final = 12
_KEY_SPACE: Final = float(16 ** _KEY_DIGITS)


@dataclass(frozen=True, slots=True)
class LeaseSample:
    """The first live leases in key order, and how many live leases there are."""

    instances: tuple[str, ...]
    estimated: float
    """Live leases: ``len(instances)`` when the sample is all of them, else an estimate."""
    complete: bool


def sample_size(pool: int) -> int:
    """Leases a refresh reads: more than the pool (so every instance that may hold a slot is
    in it), at least ``LEASE_SAMPLE``, at most a query page."""
    return min(QUERY_TOP_MAX, max(pool + 1, LEASE_SAMPLE))


def estimate_instances(keys: Sequence[str], size: int) -> LeaseSample:
    """The sample of ``keys`` (the first live ones, ``size`` asked for) and the count it
    implies: exact below ``size``; else ``size`` divided by the key-space fraction the last key
    reaches (the ``size``-th of N uniform keys lies near ``size / N``)."""
    ordered = tuple(sorted(keys))
    if len(ordered) < size:
        return LeaseSample(ordered, float(len(ordered)), complete=True)
    fraction = int(ordered[-1][:_KEY_DIGITS], 16) / _KEY_SPACE if ordered else 1.0
    return LeaseSample(ordered, max(float(size), size / max(fraction, 1.0 / _KEY_SPACE)),
                       complete=False)


def _number(value: float) -> str:
    """A float as an OData double literal."""
    return repr(float(value))


class LeaseTable:
    """The lease rows of one budget: renew, drop, sample and reap them."""

    __slots__ = ("_partition", "_table", "instance")

    def __init__(self, table: TableClient, instance: str, partition: str) -> None:
        self._table, self.instance, self._partition = table, instance, partition

    def __repr__(self) -> str:
        return f"LeaseTable(instance={self.instance!r}, partition={self._partition!r})"

    async def renew(self, expires_s: float) -> None:
        await self._table.upsert_entity({"PartitionKey": self._partition,
                                         "RowKey": self.instance, "ExpiresAt": expires_s},
                                        mode=UpdateMode.REPLACE)

    async def drop(self) -> None:
        """Delete this instance's lease (it is idle or leaving)."""
        with contextlib.suppress(ResourceNotFoundError):
            await self._table.delete_entity(self._partition, self.instance)

    async def sample(self, now_s: float, skew_s: float, size: int) -> LeaseSample:
        """The first ``size`` leases live by this clock give or take ``skew_s`` (a lease that
        may still be live on its own instance's clock counts), in key order."""
        rows = self._table.query_entities(
            f"PartitionKey eq '{self._partition}' and ExpiresAt gt {_number(now_s - skew_s)}",
            select=["RowKey"], results_per_page=size)
        keys: list[str] = []
        async for page in rows.by_page():
            keys += [str(row["RowKey"]) async for row in page]
            break  # one page: the first ``size`` in key order
        return estimate_instances(keys[:size], size)

    async def reap(self, now_s: float, skew_s: float, grace_s: float) -> int:
        """Delete up to ``REAP_BATCH`` leases expired for longer than ``grace_s`` (plus the
        skew), each only if unchanged since read; how many went."""
        cutoff_s = now_s - skew_s - grace_s
        rows = self._table.query_entities(
            f"PartitionKey eq '{self._partition}' and ExpiresAt lt {_number(cutoff_s)}",
            select=["RowKey"], results_per_page=REAP_BATCH)
        found = []
        async for page in rows.by_page():
            found = [row async for row in page]
            break
        gone = 0
        for row in found:
            # ResourceModifiedError: renewed since read (it lives); not found: reaped already
            with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
                await self._table.delete_entity(self._partition, str(row["RowKey"]),
                                                etag=row.metadata["etag"],
                                                match_condition=MatchConditions.IfNotModified)
                gone += 1
        return gone
