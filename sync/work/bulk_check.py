"""The pre-write check of a bulk group. ``UpdateMultiple`` cannot carry ``If-Match``, so before a
bulk write the group's ETags are read again (one read per ``CHECK_IDS_PER_READ`` records); the
records whose ETag moved go the conflict path (``sync.work.rereads``) and the rest are written.
A record changed between this read and the write is overwritten: the window the fallback
accepts. The check runs when the definition asks for it (``bulk_etag_check``)."""

from __future__ import annotations

import asyncio
from typing import Final

from sync.clients.dataverse import SERVICE as DATAVERSE
from sync.clients.dataverse import Version
from sync.failures.errors import Deferred, RecordFault, ServiceFault, SyncError
from sync.work import conflicts
from sync.work.chunks import chunk
from sync.work.context import Work
from sync.work.message_run import MessageRun
from sync.work.rereads import Rereads
from sync.work.settle import wait_for_service
from sync.work.write_requests import Enriched

CHECK_IDS_PER_READ: Final = 100
"""Records per ETag read of a bulk group's pre-write check (keeps the URL under 8 KB)."""


class BulkCheck:
    """The records of one message whose ETags a pre-write check has confirmed."""

    __slots__ = ("_checked", "_rereads", "_run", "_work")

    def __init__(self, work: Work, run: MessageRun, rereads: Rereads) -> None:
        self._work, self._run, self._rereads = work, run, rereads
        self._checked: set[str] = set()

    def needed(self, items: list[Enriched]) -> bool:
        """A bulk group whose records carry ETags not yet confirmed, when the definition asks
        for the check and the planner's read is no longer fresh (a record written again alone
        goes as a PATCH with its ETag)."""
        work = self._work
        return (work.settings.write_mode == "bulk"
                and work.definition.bulk_etag_check
                and not self._fresh()
                and not (len(items) == 1 and self._rereads.is_reread(items[0][0].id))
                and any(r.etag and r.id not in self._checked for r, _ in items))

    def _fresh(self) -> bool:
        """Whether the planner read this message's records recently enough to be its check
        (``bulk_etag_check_after_s``, less the clock skew allowed between instances)."""
        read_at = self._run.message.read_at
        if read_at is None:
            return False
        age_s = self._work.dataverse_dep.clock.wall_s() - read_at + self._work.settings.clock_skew_s
        return age_s < self._work.definition.bulk_etag_check_after_s

    async def check(self, items: list[Enriched]) -> list[Enriched]:
        """The group's ETags read now; the records whose ETag moved go the conflict path; the
        rest are answered to be written (none when the check could not read: they wait)."""
        ids = [record.id for record, _ in items if record.etag]
        try:
            found = await asyncio.gather(*(self._versions(list(part))
                                           for part in chunk(ids, CHECK_IDS_PER_READ)))
        except (Deferred, ServiceFault, RecordFault) as error:
            self._not_checked(items, error)
            return []
        versions = {key: value for part in found for key, value in part.items()}
        self._checked.update(ids)
        moved = [(item, versions[item[0].id]) for item in items
                 if item[0].id in versions and versions[item[0].id].etag != item[0].etag]
        await asyncio.gather(*(self._rereads.changed(item, None, version)
                               for item, version in moved))
        moved_ids = {item[0].id for item, _ in moved}
        return [item for item in items if item[0].id not in moved_ids]

    async def _versions(self, ids: list[str]) -> dict[str, Version]:
        """One governed read of the ETags (and values) of ``ids``."""
        work = self._work
        table = work.definition
        return await work.dataverse_dep.call(
            lambda: work.dataverse.read_versions(table.entity_set, table.key, ids,
                                                 conflicts.read_columns(table)),
            self._run, kind="read", closes_circuit=False)

    def _not_checked(self, items: list[Enriched], error: SyncError) -> None:
        """The check could not read: the group waits (a throttle or an open circuit defers
        it; any other fault is the service's here, never the records')."""
        if isinstance(error, Deferred):
            self._run.deferred(error)
            return
        fault = error if isinstance(error, ServiceFault) else ServiceFault(DATAVERSE, str(error))
        wait_for_service(self._run, [record for record, _ in items], fault,
                         self._work.circuit_policy,
                         open_for_s=self._work.dataverse_dep.circuit.open_for_s())
