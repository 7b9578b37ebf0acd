"""Cluster-wide pause and cancel flags in Table Storage, and the short cache workers read.

One row per scope in the state table (partition ``control``): ``definition:<name>`` or
``run:<run id>``. Its ``State`` is ``running``, ``paused`` or ``cancelled``, with the reason and
when it was set. Operators set it (``sync pause|resume|cancel``), an automatic canary that
fails pauses its definition; each change is an ETag-conditional update of the row (or its
creation), so two writers never lose one another's change silently.

Workers read the flags of a message's definition and run before taking its records, through a
cache that keeps each flag ``CONTROL_CACHE_S`` on the injected clock (a pause reaches every
instance within that time, and a busy instance reads the row at most that often).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from azure.core import MatchConditions
from azure.core.exceptions import (
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
    return Flag(scope=scope, state=state_of(entity.get("State", RUNNING)),
                reason=str(entity.get("Reason", "")), set_at_s=float(entity.get("SetAt", 0.0)),
                etag=etag)


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


class ControlCache:
    """Flags as this process last read them, each trusted for ``ttl_s`` on ``clock``."""

    __slots__ = ("_clock", "_flags", "released_runs", "ttl_s")

    def __init__(self, clock: Clock = SYSTEM_CLOCK, ttl_s: float = CONTROL_CACHE_S) -> None:
        self._clock, self.ttl_s = clock, ttl_s
        self._flags: dict[str, tuple[Flag, float]] = {}
        self.released_runs: set[str] = set()
        """Runs whose canary released them (for good: no need to read it again)."""

    def __repr__(self) -> str:
        return f"ControlCache(ttl_s={self.ttl_s:g}, flags={len(self._flags)})"

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
        self._flags[scope] = (found, now_s)
        return found

    async def stopping(self, table: TableClient, definition: str, run_id: str) -> Flag | None:
        """The flag that stops this message (cancelled before paused), or None."""
        flags = [await self.flag(table, definition_scope(definition)),
                 await self.flag(table, run_scope(run_id))]
        stops = [f for f in flags if f.stops]
        return min(stops, key=lambda f: f.state != CANCELLED, default=None)
