"""The DOP hint row: one truth for every instance, written only from fresh sightings.

``dop/hint`` holds the last ``x-ms-dop-hint`` an instance saw, when it saw it (``SeenAt``, on
its wall clock) and who wrote it. It is written only from a hint seen since the writer's last
refresh (an instance that sends nothing has no fresh sighting and never writes), with an
ETag-conditional write, and never over a newer sighting:

- a different hint replaces the row when it was seen after the row's;
- across instances the clocks may differ by ``skew_s``: a lower hint already replaces a row up
  to ``skew_s`` newer (the safe side), a higher one only a row older by more than ``skew_s``
  (unless the writer wrote the row itself: its own clock orders its own sightings).

One row per budget, overwritten in place: it lives as long as the deployment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.clients.dataverse import HintSeen

WRITE_ATTEMPTS: Final = 3
"""Conditional writes before giving way: each lost race means a newer row to compare with."""


@dataclass(frozen=True, slots=True)
class StoredHint:
    """The hint row as read."""

    hint: int
    seen_at_s: float
    set_by: str = ""
    etag: str = ""


def stored_from(entity: Mapping[str, Any], etag: str = "") -> StoredHint:
    return StoredHint(int(entity["Hint"]), float(entity.get("SeenAt", 0.0)),
                      str(entity.get("SetBy", "")), etag)


def replaces(seen: HintSeen, stored: StoredHint | None, *, writer: str, skew_s: float) -> bool:
    """Whether ``writer``'s sighting replaces the row (see the module)."""
    if stored is None:
        return True
    if seen.hint == stored.hint:
        return False
    if stored.set_by == writer:
        return seen.seen_at_s >= stored.seen_at_s
    if seen.hint < stored.hint:
        return seen.seen_at_s >= stored.seen_at_s - skew_s
    return seen.seen_at_s > stored.seen_at_s + skew_s


class HintRow:
    """One budget's hint row: read it, publish a sighting into it."""

    __slots__ = ("_key", "_table", "writer")

    def __init__(self, table: TableClient, key: tuple[str, str], writer: str) -> None:
        self._table, self._key, self.writer = table, key, writer

    def __repr__(self) -> str:
        return f"HintRow(key={self._key!r}, writer={self.writer!r})"

    async def read(self) -> StoredHint | None:
        try:
            entity = await self._table.get_entity(*self._key)
        except ResourceNotFoundError:
            return None
        return stored_from(entity, entity.metadata.get("etag") or "")

    async def publish(self, seen: HintSeen | None, skew_s: float) -> StoredHint | None:
        """Write ``seen`` (a fresh sighting, or None) where it replaces the row; the row as it
        stands afterwards (None: no hint is known yet)."""
        stored = await self.read()
        for _ in range(WRITE_ATTEMPTS):
            if seen is None or not replaces(seen, stored, writer=self.writer, skew_s=skew_s):
                return stored
            try:
                await self._write(seen, stored)
            except (ResourceExistsError, ResourceModifiedError):
                stored = await self.read()  # another instance wrote first: compare with theirs
                continue
            return StoredHint(seen.hint, seen.seen_at_s, self.writer)
        return stored

    async def _write(self, seen: HintSeen, stored: StoredHint | None) -> None:
        partition, row = self._key
        entity = {"PartitionKey": partition, "RowKey": row, "Hint": seen.hint,
                  "SeenAt": seen.seen_at_s, "SetBy": self.writer}
        if stored is None:
            await self._table.create_entity(entity)
        else:
            await self._table.update_entity(entity, mode=UpdateMode.REPLACE, etag=stored.etag,
                                            match_condition=MatchConditions.IfNotModified)
