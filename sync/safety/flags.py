"""Cluster-wide pause and cancel flags in Table Storage, and the short cache workers read.

One row per scope in the state table (partition ``control``): ``definition:<name>`` or
``run:<run id>``. Its ``State`` is ``running``, ``paused`` or ``cancelled``, with the reason and
when it was set. Operators set it (``sync pause|resume|cancel``), an automatic canary that
fails pauses its definition; each change is an ETag-conditional update of the row (or its
creation), so two writers never lose one another's change silently.

Workers read the flags of a message's definition and run before taking its records, through a
cache that keeps each flag ``CONTROL_CACHE_S`` on the injected clock (a pause reaches every
instance within that time, and a busy instance reads the row at most that often). Each host
also reads the whole partition every ``CONTROL_CACHE_S`` (``ControlCache.watch``), busy or idle.

A host that reads a version of a flag acknowledges it in the flag's own row (``AckedBy``: the
first ``ACK_HOSTS`` hosts, ``FirstAckAt``), with a write conditional on the ETag it read, so an
acknowledgement is always of the version it names. Setting the flag again replaces the row and
so clears them: ``sync pause`` reports which hosts have read the flag since it was set, or that
none has yet. The acknowledgements live and die with the row; they add no row of their own.

Who deletes what:

- a flag row: ``sweep_flags``, called by the planner's timer (``sync.safety.retention``), once
  it was set more than the retention ago and it no longer stops anything: ``running`` rows (a
  resume: the same as no row) and a run's ``cancelled`` row (its messages were counted
  cancelled long since). A paused scope and a cancelled definition stay until an operator
  resumes them;
- a cached flag: the cache itself, once it is older than its ``ttl_s`` (it would be read
  again anyway) and, beyond ``CACHED_FLAGS_MAX`` entries, the oldest first;
- a released run in ``released_runs``: the oldest once there are ``RELEASED_RUNS_MAX`` (each
  producer message is its own run); a run forgotten is only read again. A flag version this
  host acknowledged: the oldest beyond ``CACHED_FLAGS_MAX`` (one forgotten is at most
  acknowledged again, a write the row already shows).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.clock import SYSTEM_CLOCK, Clock

logger = logging.getLogger(__name__)

State = Literal["running", "paused", "cancelled"]
RUNNING: Final = "running"
PAUSED: Final = "paused"
CANCELLED: Final = "cancelled"
CONTROL_PARTITION: Final = "control"
CONTROL_CACHE_S: Final = 5.0
"""How long a worker trusts a flag it read: the longest a pause takes to reach it."""
WRITE_ATTEMPTS: Final = 5
ACK_HOSTS: Final = 8
"""Hosts named in a flag's acknowledgements; later readers need not write (one is enough to
know the flag is read), so a version costs at most this many writes however many hosts run."""
CACHED_FLAGS_MAX: Final = 1024
"""Flags one process keeps at most (the oldest read goes first)."""
RELEASED_RUNS_MAX: Final = 1024
"""Runs a process remembers as released at most (the oldest goes first)."""
DAY_S: Final = 86_400.0


class ControlConflict(Exception):
    """The flag kept changing under this writer; the message says which."""


@dataclass(frozen=True, slots=True)
class Flag:
    """One scope's flag as read."""

    scope: str
    state: State = RUNNING
    reason: str = ""
    set_at_s: float = 0.0
    etag: str = ""
    acked_by: tuple[str, ...] = ()
    """The hosts that read this version of the flag (the first ``ACK_HOSTS``)."""
    first_ack_s: float = 0.0
    """When the first of them did; 0 while none has."""

    @property
    def stops(self) -> bool:
        """Paused or cancelled: workers take none of the scope's records."""
        return self.state != RUNNING


def definition_scope(definition: str) -> str:
    return f"definition:{definition}"


def run_scope(run_id: str) -> str:
    return f"run:{run_id}"


def state_of(value: object) -> State:
    """A stored state; anything unknown reads as paused (the safe side)."""
    if value == RUNNING:
        return "running"
    return "cancelled" if value == CANCELLED else "paused"


def flag_from(scope: str, entity: Mapping[str, Any], etag: str = "") -> Flag:
    acked = tuple(h for h in str(entity.get("AckedBy") or "").split(",") if h)
    return Flag(scope=scope, state=state_of(entity.get("State", RUNNING)),
                reason=str(entity.get("Reason", "")), set_at_s=float(entity.get("SetAt", 0.0)),
                etag=etag, acked_by=acked, first_ack_s=float(entity.get("FirstAckAt") or 0.0))


def needs_ack(flag: Flag, host: str) -> bool:
    """Whether ``host`` should acknowledge ``flag``: a stored flag it is not named in yet,
    while fewer than ``ACK_HOSTS`` are."""
    return bool(host and flag.etag and host not in flag.acked_by
                and len(flag.acked_by) < ACK_HOSTS)


async def acknowledge(table: TableClient, flag: Flag, host: str, now_s: float) -> bool:
    """Name ``host`` in the row of the flag version it read; False when the row changed since
    (set again, or another host acknowledged first: the next read tries again)."""
    if not needs_ack(flag, host):
        return False
    fields = {"PartitionKey": CONTROL_PARTITION, "RowKey": flag.scope,
              "AckedBy": ",".join((*flag.acked_by, host)),
              "FirstAckAt": flag.first_ack_s or now_s}
    try:
        await table.update_entity(fields, mode=UpdateMode.MERGE, etag=flag.etag,
                                  match_condition=MatchConditions.IfNotModified)
    except (ResourceModifiedError, ResourceNotFoundError):
        return False
    return True


async def read_flags(table: TableClient) -> list[Flag]:
    """Every stored flag, in one query of the partition."""
    rows = table.query_entities("PartitionKey eq @partition",
                                parameters={"partition": CONTROL_PARTITION})
    return [flag_from(str(row["RowKey"]), row, row.metadata.get("etag") or "")
            async for row in rows]


async def read_flag(table: TableClient, scope: str) -> Flag:
    """The scope's flag; ``running`` when it was never set."""
    try:
        entity = await table.get_entity(CONTROL_PARTITION, scope)
    except ResourceNotFoundError:
        return Flag(scope)
    return flag_from(scope, entity, entity.metadata.get("etag") or "")


async def set_flag(table: TableClient, scope: str, state: State, reason: str,
                   now_s: float) -> Flag:
    """Set the scope's flag with an ETag-conditional write; ``ControlConflict`` when it kept
    changing under us for ``WRITE_ATTEMPTS`` reads."""
    fields = {"PartitionKey": CONTROL_PARTITION, "RowKey": scope, "State": state,
              "Reason": reason, "SetAt": now_s}
    for _ in range(WRITE_ATTEMPTS):
        current = await read_flag(table, scope)
        try:
            if current.etag:
                await table.update_entity(fields, mode=UpdateMode.REPLACE, etag=current.etag,
                                          match_condition=MatchConditions.IfNotModified)
            else:
                await table.create_entity(fields)
        except (ResourceModifiedError, ResourceExistsError, ResourceNotFoundError):
            continue
        logger.info("%s set to %s: %s", scope, state, reason or "-",
                    extra={"event": "control_set", "scope": scope, "state": state})
        return Flag(scope, state, reason, now_s)
    raise ControlConflict(f"{scope} kept changing while it was being set; try again")


class RecentSet:
    """A set that keeps its ``most`` latest additions (the oldest goes first)."""

    __slots__ = ("_items", "most")

    def __init__(self, most: int) -> None:
        self.most = most
        self._items: OrderedDict[Hashable, None] = OrderedDict()

    def __repr__(self) -> str:
        return f"RecentSet(most={self.most}, items={len(self._items)})"

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: Hashable) -> None:
        self._items[item] = None
        self._items.move_to_end(item)
        while len(self._items) > self.most:
            self._items.popitem(last=False)


class ControlCache:
    """Flags as this process last read them, each trusted for ``ttl_s`` on ``clock``; each
    version read is acknowledged as ``host`` (none when empty). See the module for how long an
    entry stays."""

    __slots__ = ("_acked", "_clock", "_flags", "host", "released_runs", "ttl_s")

    def __init__(self, clock: Clock = SYSTEM_CLOCK, ttl_s: float = CONTROL_CACHE_S,
                 host: str = "") -> None:
        self._clock, self.ttl_s, self.host = clock, ttl_s, host
        self._flags: OrderedDict[str, tuple[Flag, float]] = OrderedDict()
        """By scope, the oldest read first."""
        self._acked: RecentSet = RecentSet(CACHED_FLAGS_MAX)
        """Flag versions (scope and when set) this host has acknowledged."""
        self.released_runs = RecentSet(RELEASED_RUNS_MAX)
        """Runs whose canary released them (for good: no need to read it again)."""

    def __repr__(self) -> str:
        return (f"ControlCache(ttl_s={self.ttl_s:g}, flags={len(self._flags)}, "
                f"host={self.host!r})")

    def __len__(self) -> int:
        """Flags cached now."""
        return len(self._flags)

    @property
    def clock(self) -> Clock:
        return self._clock

    async def flag(self, table: TableClient, scope: str) -> Flag:
        """The scope's flag: the cached one while fresh, else read again."""
        now_s = self._clock.monotonic_s()
        cached = self._flags.get(scope)
        if cached is not None and now_s - cached[1] < self.ttl_s:
            return cached[0]
        found = await read_flag(table, scope)
        await self._remember(table, found, now_s)
        return found

    async def _remember(self, table: TableClient, found: Flag, now_s: float) -> None:
        """Cache a flag as read at ``now_s`` and acknowledge its version once."""
        self._keep(found.scope, found, now_s)
        version = (found.scope, found.set_at_s)
        if not self.host or not found.etag or version in self._acked:
            return
        if not needs_ack(found, self.host) or await acknowledge(
                table, found, self.host, self._clock.wall_s()):
            self._acked.add(version)

    async def read_all(self, table: TableClient) -> None:
        """Read every stored flag at once (fresh in the cache, acknowledged)."""
        now_s = self._clock.monotonic_s()
        for found in await read_flags(table):
            await self._remember(table, found, now_s)

    async def watch(self, table: TableClient, stop: asyncio.Event) -> None:
        """Read every flag each ``ttl_s`` until ``stop``: an idle host sees (and acknowledges)
        a pause as soon as a busy one would."""
        while not stop.is_set():
            try:
                await self.read_all(table)
            except AzureError as error:
                logger.warning("the control flags could not be read: %s", type(error).__name__,
                               extra={"event": "control_read_failed"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.ttl_s)

    def _keep(self, scope: str, found: Flag, now_s: float) -> None:
        """Cache ``found``; forget the entries past their time, and the oldest beyond the
        most kept."""
        self._flags[scope] = (found, now_s)
        self._flags.move_to_end(scope)
        while self._flags:
            oldest, (_, read_s) = next(iter(self._flags.items()))
            if now_s - read_s < self.ttl_s and len(self._flags) <= CACHED_FLAGS_MAX:
                break
            del self._flags[oldest]

    async def stopping(self, table: TableClient, definition: str, run_id: str) -> Flag | None:
        """The flag that stops this message (cancelled before paused), or None."""
        flags = [await self.flag(table, definition_scope(definition)),
                 await self.flag(table, run_scope(run_id))]
        stops = [f for f in flags if f.stops]
        return min(stops, key=lambda f: f.state != CANCELLED, default=None)


def retired(flag: Flag, cutoff_s: float) -> bool:
    """A flag row past its retention that no longer stops anything (see the module)."""
    if flag.set_at_s >= cutoff_s:
        return False
    return flag.state == RUNNING or (flag.state == CANCELLED and flag.scope.startswith("run:"))


async def sweep_flags(table: TableClient, now_s: float, retention_days: int) -> int:
    """Delete the flag rows set more than ``retention_days`` ago that stop nothing (each
    only if unchanged since read); how many went."""
    cutoff_s = now_s - retention_days * DAY_S
    rows = table.query_entities(f"PartitionKey eq '{CONTROL_PARTITION}' and SetAt lt "
                                f"{float(cutoff_s)!r}")
    gone = 0
    async for entity in rows:
        flag = flag_from(str(entity["RowKey"]), entity, entity.metadata.get("etag") or "")
        if not retired(flag, cutoff_s):
            continue
        with contextlib.suppress(ResourceModifiedError):  # set again meanwhile: it stays
            await table.delete_entity(CONTROL_PARTITION, flag.scope, etag=flag.etag,
                                      match_condition=MatchConditions.IfNotModified)
            gone += 1
    return gone
