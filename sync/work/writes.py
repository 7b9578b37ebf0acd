"""Writing enriched records to Dataverse, in the configured mode, along one path for all modes.

A record whose enriched values equal the values read (``sync.message.changes``) is not
written: it is counted unchanged. The others are written with their changed columns only.

A write group is what one request carries: one record (``single``: a PATCH), up to
``SYNC_BATCH_OPERATIONS`` (``batch``: a ``$batch`` with continue-on-error) or up to
``SYNC_BULK_TARGETS`` (``bulk``: ``UpdateMultiple``, which rolls back whole). A PATCH carries
``If-Match`` with the record's ETag from the read (``*`` when it was not read); UpdateMultiple
cannot, so a bulk group's ETags are read first and the records whose ETag moved are taken out of
it. Every write carries the definition's bulk-job options (bypass custom logic, suppress duplicate
detection). Every group goes through the one governed call (sync.budget.dependency), and its outcome
is settled the same way whatever the mode:

- written: each record is marked written;
- deferred (a throttle, an open circuit): the records wait on the queue;
- a record fault: alone, the record is dead-lettered; in a group, the group is split (to the
  size a "too many operations" answer names, else in halves) until the record at fault is alone;
- an ambiguous fault: a group is split (while the circuit lets requests go: once it opens, the
  parts wait); a record alone is the record's fault when its siblings succeeded since it first
  failed (after ``SYNC_RECORD_PROBES`` deliveries), else the service's;
- a service or configuration fault (a 401, a missing privilege, an outage; after the retries):
  the records wait on the queue, at least what is left of the circuit's opening, never split
  and never dead-lettered; in a ``$batch``, parts that failed so wait too (the fault counts
  toward the circuit once), and only the ambiguous ones are sent again one by one;
- changed since the read (a 412, or a moved ETag in a bulk group): ``sync.work.rereads``.

The request of each mode is ``sync.work.write_requests``; a bulk group's ETag check
``sync.work.bulk_check``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, TypeVar

from sync.failures.errors import (
    AmbiguousFault,
    Deferred,
    RecordFault,
    ServiceFault,
    SyncError,
    Throttled,
)
from sync.work.bulk_check import BulkCheck
from sync.work.chunks import chunk
from sync.work.context import Work
from sync.work.message_run import MessageRun
from sync.work.rereads import Rereads
from sync.work.settle import DeadLetter, has_evidence, judge_alone, wait_for_service
from sync.work.write_requests import Enriched, Part, fields_of, is_conflict, send

logger = logging.getLogger(__name__)

T = TypeVar("T")
NOT_FAILED: Final = float("inf")
_ALLOWED: Final = re.compile(r"(\d[\d,]*)\D{0,3}\s*operations|MaxBatchSize\D{0,3}(\d+)", re.I)


def allowed_size(error: RecordFault) -> int | None:
    """The largest request size a "too many operations" error names, if it is one."""
    match = _ALLOWED.search(error.message)
    if error.status != 400 or match is None:
        return None
    return int((match.group(1) or match.group(2)).replace(",", ""))


def smaller(size: int, allowed: int | None) -> int:
    """The next request size after a too-large one: the allowed size, else half."""
    return max(1, min(size // 2, allowed) if allowed else size // 2)


def group_size(work: Work) -> int:
    """Records per request in the configured mode."""
    settings = work.settings
    return {"single": 1, "batch": settings.batch_operations,
            "bulk": settings.bulk_targets}[settings.write_mode]


class Writer:
    """Writes one message's enriched records; settles every outcome in one place."""

    __slots__ = ("_bulk_check", "_dead_letter", "_rereads", "_run", "_work")

    def __init__(self, work: Work, run: MessageRun, dead_letter: DeadLetter) -> None:
        self._work, self._run, self._dead_letter = work, run, dead_letter
        self._rereads = Rereads(work, run, dead_letter, self._write_alone)
        self._bulk_check = BulkCheck(work, run, self._rereads)

    async def write_all(self, items: Sequence[Enriched]) -> None:
        """Write every changed item in groups of the configured size, concurrently."""
        changed = [item for item in items if not self._unchanged(item)]
        await self._each(list(chunk(changed, group_size(self._work))))

    def _unchanged(self, item: Enriched) -> bool:
        if fields_of(item):
            return False
        self._run.unchanged(item[0].id)
        return True

    async def _write_alone(self, item: Enriched) -> None:
        await self._group([item])

    async def _each(self, groups: Sequence[Sequence[Enriched]],
                    failed_since_s: float = NOT_FAILED,
                    ambiguous: AmbiguousFault | None = None) -> None:
        """Each group as one request; ``failed_since_s``: when the request they were split
        from first failed (the scope's evidence counts successes sent since then), and
        ``ambiguous``: the fault it met, if ambiguous."""
        await asyncio.gather(*(self._group(list(group), failed_since_s, ambiguous)
                               for group in groups))

    async def _group(self, items: list[Enriched], failed_since_s: float = NOT_FAILED,
                     ambiguous: AmbiguousFault | None = None) -> None:
        if self._bulk_check.needed(items):
            items = await self._bulk_check.check(items)
            if not items:
                return
        first_failure = _FirstFailure(self._work.dataverse_dep.clock.monotonic_s,
                                      failed_since_s, ambiguous)
        alone = len(items) == 1 and self._rereads.is_reread(items[0][0].id)
        try:
            results = await self._work.dataverse_dep.call(
                first_failure.wrap(lambda: send(self._work, items, alone=alone)), self._run,
                split_ambiguous=len(items) > 1)
        except Deferred as error:
            await self._deferred_after(items, first_failure)
            self._run.deferred(error)
        except RecordFault as fault:
            await self._refused(items, fault)
        except AmbiguousFault as fault:
            await self._ambiguous(items, fault, first_failure.sent_s)
        except ServiceFault as fault:
            self._wait(items, fault)
        else:
            await self._settle(items, results, first_failure.last_sent_s)

    async def _settle(self, items: list[Enriched], parts: list[Part] | None,
                      sent_s: float) -> None:
        if parts is None:
            for record, _ in items:
                self._run.written(record.id)
            return
        await self._settle_parts(items, parts, sent_s)

    async def _settle_parts(self, items: list[Enriched], parts: list[Part],
                            sent_s: float) -> None:
        """A $batch answered: each part is an outcome of its own, judged by the same triage."""
        moved: list[tuple[Enriched, RecordFault]] = []
        again: list[tuple[Enriched, SyncError]] = []
        waiting: list[tuple[Enriched, ServiceFault]] = []
        for item, fault in zip(items, parts, strict=True):
            if fault is None:
                self._run.written(item[0].id)
            elif isinstance(fault, Throttled):
                await self._work.dataverse_dep.on_throttled(fault, self._run)
                self._run.deferred(fault)
            elif isinstance(fault, RecordFault) and is_conflict(fault):
                moved.append((item, fault))
            elif isinstance(fault, RecordFault):
                await self._dead_letter(item[0], fault)
            elif isinstance(fault, ServiceFault) and not isinstance(fault, AmbiguousFault):
                waiting.append((item, fault))
            else:
                again.append((item, fault))
        if any(part is None for part in parts):  # written beside the parts that failed: the
            # scope's evidence, stamped as the request was sent (the governed call's own
            # stamp, a moment earlier, is not since the failure)
            self._work.dataverse_dep.scope.succeeded(sent_s)
        await asyncio.gather(*(self._rereads.changed(item, fault) for item, fault in moved))
        if waiting:
            await self._service_parts(waiting)
        if again:
            await self._again(again, sent_s)

    async def _service_parts(self, waiting: list[tuple[Enriched, ServiceFault]]) -> None:
        """Parts the service failed for reasons of its own (or of the configuration): not sent
        again one by one; the fault counts toward the circuit once and the records wait."""
        fault = waiting[0][1]
        await self._work.dataverse_dep.record_failure(fault)
        self._wait([item for item, _ in waiting], fault)

    async def _again(self, items: list[tuple[Enriched, SyncError]],
                     failed_since_s: float) -> None:
        """Parts that failed ambiguously go one by one, so the triage and the scope decide
        each under the governed call and its retries; their siblings in the same $batch were
        sent with them (the scope's evidence). Each keeps its part's fault: one held back
        before it is sent again (the circuit opened meanwhile) is still judged on it."""
        await asyncio.gather(*(
            self._group([item], failed_since_s,
                        fault if isinstance(fault, AmbiguousFault) else None)
            for item, fault in items))

    async def _refused(self, items: list[Enriched], fault: RecordFault) -> None:
        if len(items) == 1 and is_conflict(fault):
            await self._rereads.changed(items[0], fault)
            return
        if len(items) == 1:
            await self._dead_letter(items[0][0], fault)
            return
        size = smaller(len(items), allowed_size(fault))
        logger.info("request of %d refused (%s); resending in parts of %d", len(items),
                    fault.code or fault.status, size, extra={"event": "request_split"})
        await self._each(list(chunk(items, size)))

    async def _ambiguous(self, items: list[Enriched], fault: AmbiguousFault,
                         first_failure_s: float) -> None:
        if len(items) > 1:
            await self._each(list(chunk(items, smaller(len(items), None))), first_failure_s,
                             fault)
            return
        work = self._work
        await judge_alone(self._run, items[0][0], fault, first_failure_s=first_failure_s,
                          dependency=work.dataverse_dep,
                          probes=work.settings.record_probes,
                          policy=work.circuit_policy, dead_letter=self._dead_letter)

    async def _deferred_after(self, items: list[Enriched], first_failure: _FirstFailure) -> None:
        """A record that failed ambiguously and is then deferred (a throttle, the circuit
        opening) keeps the evidence its siblings gave meanwhile: judged now, so it is not lost
        when it comes back alone."""
        fault = first_failure.ambiguous
        if len(items) != 1 or fault is None:
            return
        dependency = self._work.dataverse_dep
        if has_evidence(self._run, items[0][0], first_failure.sent_s, dependency, fault):
            await self._ambiguous(items, fault, first_failure.sent_s)

    def _wait(self, items: list[Enriched], fault: ServiceFault) -> None:
        wait_for_service(self._run, [record for record, _ in items], fault,
                         self._work.circuit_policy,
                         open_for_s=self._work.dataverse_dep.circuit.open_for_s())


class _FirstFailure:
    """Remembers when the first failed attempt of a call was sent (the scope's evidence)."""

    __slots__ = ("_now_s", "ambiguous", "last_sent_s", "sent_s")

    def __init__(self, now_s: Callable[[], float], since_s: float = NOT_FAILED,
                 ambiguous: AmbiguousFault | None = None) -> None:
        self._now_s = now_s
        self.sent_s = since_s
        self.last_sent_s = NOT_FAILED
        self.ambiguous = ambiguous
        """The last ambiguous fault the call met (or the request it was split from), if any."""

    def wrap(self, send: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
        async def sent() -> T:
            started_s = self.last_sent_s = self._now_s()
            try:
                return await send()
            except ServiceFault as fault:
                self.sent_s = min(self.sent_s, started_s)
                if isinstance(fault, AmbiguousFault):
                    self.ambiguous = fault
                raise

        return sent
