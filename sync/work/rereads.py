"""A record that changed since it was read (a 412 on its ETag, or a bulk pre-write check that
found its ETag moved): read it again, enrich it again if its input changed, and write it alone
under the definition's edit policy (``sync.work.conflicts`` decides what), at most
``MAX_CONFLICT_READS`` times per delivery; then it waits on the queue (a race is never its
fault)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from sync.budget.dependency import Dependency
from sync.clients.dataverse import SERVICE as DATAVERSE
from sync.clients.dataverse import Version
from sync.failures.errors import Deferred, RecordFault, ServiceFault, SyncError
from sync.message.contract import RecordRef
from sync.work import conflicts
from sync.work.context import Work
from sync.work.enrich import enrich_one
from sync.work.message_run import MessageRun
from sync.work.settle import DeadLetter, wait_for_service
from sync.work.write_requests import Enriched, fields_of

logger = logging.getLogger(__name__)

T = TypeVar("T")
MAX_CONFLICT_READS: Final = 3
"""Times one delivery reads a record again after it changed since the read; then it waits."""
CONFLICT_DELAY_S: Final = 5.0
"""How long a record whose ETag kept moving waits on the queue before it is tried again."""
WriteAlone = Callable[[Enriched], Awaitable[None]]


class Rereads:
    """The records of one message read again after a change, with the times each was."""

    __slots__ = ("_dead_letter", "_read_times", "_run", "_work", "_write_alone")

    def __init__(self, work: Work, run: MessageRun, dead_letter: DeadLetter,
                 write_alone: WriteAlone) -> None:
        self._work, self._run, self._dead_letter = work, run, dead_letter
        self._write_alone = write_alone
        self._read_times: Counter[str] = Counter()

    def is_reread(self, record_id: str) -> bool:
        """Whether the record was read again in this delivery (it is then written alone)."""
        return record_id in self._read_times

    async def changed(self, item: Enriched, fault: SyncError | None,
                      version: Version | None = None) -> None:
        """The record changed since it was read: read it again (unless ``version`` is that
        read), re-enrich it if its input changed, and write it alone under the edit policy.
        A record sent back keeps the planner's read (its ETag and values): the next delivery
        meets the 412 again and tells the person's edits from that read, so ``keep`` holds
        across deliveries."""
        record = item[0]
        self._read_times[record.id] += 1
        if self._read_times[record.id] > MAX_CONFLICT_READS:
            logger.info("record %s kept changing; back on the queue", record.id,
                        extra={"event": "record_conflict_requeued"})
            self._run.failed(record, fault or ServiceFault(DATAVERSE, "changed since read"),
                             reason=conflicts.CHANGED_SINCE_READ)
            self._run.wait(CONFLICT_DELAY_S)
            return
        version = version or await self._read_again(record)
        if version is None:
            return
        again = await self._refreshed(item, version)
        if again is None:
            return
        if fields_of(again):
            await self._write_alone(again)
        else:
            self._run.unchanged(record.id)

    async def _read_again(self, record: RecordRef) -> Version | None:
        """One GET of the record through the governed call; None when it failed (settled)."""
        work = self._work
        table = work.definition
        return await self._for_record(
            record, work.dataverse_dep,
            lambda: work.dataverse.read_record(table.entity_set, record.id,
                                               conflicts.read_columns(table)),
            kind="read", closes_circuit=False)

    async def _refreshed(self, item: Enriched, version: Version) -> Enriched | None:
        """The record as read again, with what the edit policy lets it write; None when it
        has nothing to write or waits."""
        record, columns = item
        table = self._work.definition
        value = conflicts.input_now(version, table.input_column)
        if value is None:
            logger.info("record %s: its input was cleared since the read; nothing written",
                        record.id, extra={"event": "record_input_cleared"})
            self._run.unchanged(record.id)
            return None
        now = conflicts.reread(record, version, conflicts.carried_columns(table), value)
        if conflicts.inputs_changed(record, now, table.extra_inputs):
            enriched = await enrich_one(self._work, self._run, now)
            if enriched is None:  # it waits, or is dead-lettered for a fault of its own
                return None
            columns = enriched
        return now, conflicts.to_write(record.current, version.values, columns,
                                       table.edit_policy)

    async def _for_record(self, record: RecordRef, dependency: Dependency,
                          send: Callable[[], Awaitable[T]], **options: Any) -> T | None:
        """One governed call made for ``record`` alone; None when it failed, the record then
        settled: deferred, dead-lettered for a fault of its own, or waiting on the service."""
        try:
            return await dependency.call(send, self._run, **options)
        except Deferred as error:
            self._run.deferred(error)
        except RecordFault as fault:
            await self._dead_letter(record, fault)
        except ServiceFault as fault:
            wait_for_service(self._run, [record], fault, self._work.circuit_policy)
        return None
