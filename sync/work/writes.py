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
- an ambiguous fault: a group is split; a record alone is the record's fault when its siblings
  succeeded since it first failed (after ``SYNC_RECORD_PROBES`` deliveries), else the service's;
- a service fault (after the retries): the records wait on the queue, never dead-lettered;
- changed since the read (a 412, or a moved ETag in a bulk group): the record is read again and
  written alone under the definition's edit policy (``sync.work.conflicts``), at most
  ``MAX_CONFLICT_READS`` times, then it waits on the queue (a race is never its fault).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

from sync.budget.dependency import Dependency
from sync.clients.dataverse import SERVICE as DATAVERSE
from sync.clients.dataverse import Version, record_path
from sync.clients.odata_batch import Operation, OperationResult
from sync.failures.errors import (
    AmbiguousFault,
    Deferred,
    RecordFault,
    ServiceFault,
    SyncError,
    Throttled,
)
from sync.failures.triage import classify_answer
from sync.message.changes import changed_columns
from sync.message.contract import RecordRef
from sync.work import conflicts
from sync.work.chunks import chunk
from sync.work.context import Work
from sync.work.message_run import MessageRun
from sync.work.settle import DeadLetter, has_evidence, judge_alone, service_delay_s

logger = logging.getLogger(__name__)

T = TypeVar("T")
NOT_FAILED: Final = float("inf")
Enriched = tuple[RecordRef, dict[str, Any]]
MAX_CONFLICT_READS: Final = 3
"""Times one delivery reads a record again after it changed since the read; then it waits."""
CONFLICT_DELAY_S: Final = 5.0
"""How long a record whose ETag kept moving waits on the queue before it is tried again."""
CHECK_IDS_PER_READ: Final = 100
"""Records per ETag read of a bulk group's pre-write check (keeps the URL under 8 KB)."""
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


def fields_of(item: Enriched) -> dict[str, Any]:
    """The columns a write sets: those whose enriched value differs from the value read."""
    record, columns = item
    return changed_columns(record.current, columns)


def if_match(record: RecordRef) -> str:
    """The record's ETag from the read; ``*`` (exists, any version) when it was not read."""
    return record.etag or "*"


class Writer:
    """Writes one message's enriched records; settles every outcome in one place."""

    __slots__ = ("_checked", "_conflicts", "_dead_letter", "_run", "_work")

    def __init__(self, work: Work, run: MessageRun, dead_letter: DeadLetter) -> None:
        self._work, self._run, self._dead_letter = work, run, dead_letter
        self._conflicts: Counter[str] = Counter()
        """Records read again after a change since the read, with the times."""
        self._checked: set[str] = set()
        """Records whose ETag a bulk pre-write check has confirmed."""

    async def write_all(self, items: Sequence[Enriched]) -> None:
        """Write every changed item in groups of the configured size, concurrently."""
        changed = [item for item in items if not self._unchanged(item)]
        await self._each(list(chunk(changed, group_size(self._work))))

    def _unchanged(self, item: Enriched) -> bool:
        if fields_of(item):
            return False
        self._run.unchanged(item[0].id)
        return True

    async def _each(self, groups: Sequence[Sequence[Enriched]],
                    failed_since_s: float = NOT_FAILED) -> None:
        """Each group as one request; ``failed_since_s``: when the request they were split
        from first failed (the scope's evidence counts successes sent since then)."""
        await asyncio.gather(*(self._group(list(group), failed_since_s) for group in groups))

    async def _group(self, items: list[Enriched], failed_since_s: float = NOT_FAILED) -> None:
        if self._needs_check(items):
            items = await self._check(items)
            if not items:
                return
        first_failure = _FirstFailure(self._work.dataverse_dep.clock.monotonic_s,
                                      failed_since_s)
        try:
            results = await self._work.dataverse_dep.call(
                first_failure.wrap(lambda: self._send(items)), self._run,
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

    async def _send(self, items: list[Enriched]) -> list[Part] | None:
        """One request for the group in the configured mode; per-part outcomes for $batch. A
        record written again after a change since the read goes alone, as a PATCH."""
        work = self._work
        table = work.definition
        headers = table.write_headers
        mode = work.settings.write_mode
        if len(items) == 1 and (mode == "single" or items[0][0].id in self._conflicts):
            record = items[0][0]
            await work.dataverse.update(table.entity_set, record.id, fields_of(items[0]),
                                            if_match=if_match(record), headers=headers)
            return None
        if mode == "batch":
            operations = [Operation("PATCH", record_path(table.entity_set, item[0].id),
                                    {**headers, "If-Match": if_match(item[0])}, fields_of(item))
                          for item in items]
            return parts_of(await work.dataverse.execute_batch(operations),
                            f"PATCH {table.entity_set} in $batch")
        await work.dataverse.update_multiple(
            table.entity_set, table.logical_name, table.key,
            [(item[0].id, fields_of(item)) for item in items], headers=headers)
        return None

    def _needs_check(self, items: list[Enriched]) -> bool:
        """A bulk group whose records carry ETags not yet confirmed (UpdateMultiple cannot
        carry them), when the definition asks for the check."""
        work = self._work
        return (work.settings.write_mode == "bulk"
                and work.definition.bulk_etag_check
                and not (len(items) == 1 and items[0][0].id in self._conflicts)
                and any(r.etag and r.id not in self._checked for r, _ in items))

    async def _check(self, items: list[Enriched]) -> list[Enriched]:
        """The pre-write check of a bulk group: its ETags read now (a read per
        ``CHECK_IDS_PER_READ`` records); the records whose ETag moved go the conflict path,
        the rest are answered to be written. A record changed between this read and the
        write is overwritten: the window the fallback accepts."""
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
        await asyncio.gather(*(self._conflicted(item, None, version) for item, version in moved))
        moved_ids = {item[0].id for item, _ in moved}
        return [item for item in items if item[0].id not in moved_ids]

    async def _versions(self, ids: list[str]) -> dict[str, Version]:
        """One governed read of the ETags (and values) of ``ids``."""
        work = self._work
        table = work.definition
        return await work.dataverse_dep.call(
            lambda: work.dataverse.read_versions(table.entity_set, table.key, ids,
                                                     self._select()),
            self._run, kind="read", closes_circuit=False)

    def _not_checked(self, items: list[Enriched], error: SyncError) -> None:
        """The check could not read: the group waits (a throttle or an open circuit defers
        it; any other fault is the service's here, never the records')."""
        if isinstance(error, Deferred):
            self._run.deferred(error)
            return
        fault = error if isinstance(error, ServiceFault) else ServiceFault(DATAVERSE, str(error))
        self._wait(items, fault)

    def _select(self) -> tuple[str, ...]:
        """What a record is read again for: its input and its mapped columns."""
        table = self._work.definition
        return (table.input_column, *self._mapped())

    def _mapped(self) -> tuple[str, ...]:
        table = self._work.definition
        return tuple(c for c in table.mapping if c not in (table.key, table.input_column))

    async def _conflicted(self, item: Enriched, fault: SyncError | None,
                          version: Version | None = None) -> None:
        """The record changed since it was read: read it again (unless ``version`` is that
        read), re-enrich it if its input changed, and write it alone under the edit policy.
        A record sent back keeps the planner's read (its ETag and values): the next delivery
        meets the 412 again and tells the person's edits from that read, so ``keep`` holds
        across deliveries."""
        record = item[0]
        self._conflicts[record.id] += 1
        if self._conflicts[record.id] > MAX_CONFLICT_READS:
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
        if again is not None and not self._unchanged(again):
            await self._group([again])

    async def _read_again(self, record: RecordRef) -> Version | None:
        """One GET of the record through the governed call; None when it failed (settled)."""
        work = self._work
        table = work.definition
        return await self._for_record(
            record, work.dataverse_dep,
            lambda: work.dataverse.read_record(table.entity_set, record.id, self._select()),
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
        if value != record.input:
            enriched = await self._enrich_again(record, value)
            if enriched is None:
                return None
            columns = enriched
        now = conflicts.reread(record, version, self._mapped(), value)
        return now, conflicts.to_write(record.current, version.values, columns,
                                       table.edit_policy)

    async def _enrich_again(self, record: RecordRef, value: str) -> dict[str, Any] | None:
        """The enrichment of the record's new input; None when it failed (the record waits,
        or is dead-lettered for a fault of its own)."""
        work = self._work
        mapping = work.definition.mapping
        return await self._for_record(
            record, work.enrichment_dep,
            lambda: work.enrichment.columns_for(value, mapping))

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
            self._wait([(record, {})], fault)
        return None

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
        again: list[Enriched] = []
        moved: list[tuple[Enriched, RecordFault]] = []
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
            else:
                again.append(item)
        await asyncio.gather(*(self._conflicted(item, fault) for item, fault in moved))
        if again:
            await self._again(again, sent_s)

    async def _again(self, items: list[Enriched], failed_since_s: float) -> None:
        """Parts that failed for the service's reasons (or ambiguously) go one by one, so
        the triage and the scope decide each under the governed call and its retries; their
        siblings in the same $batch were sent with them (the scope's evidence)."""
        await self._each([[item] for item in items], failed_since_s)

    async def _refused(self, items: list[Enriched], fault: RecordFault) -> None:
        if len(items) == 1 and is_conflict(fault):
            await self._conflicted(items[0], fault)
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
            await self._each(list(chunk(items, smaller(len(items), None))), first_failure_s)
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
        if has_evidence(self._run, items[0][0], first_failure.sent_s, dependency):
            await self._ambiguous(items, fault, first_failure.sent_s)

    def _wait(self, items: list[Enriched], fault: ServiceFault) -> None:
        for record, _ in items:
            self._run.failed(record, fault, reason="service_fault")
        self._run.wait(service_delay_s(self._run, self._work.circuit_policy))


def is_conflict(fault: RecordFault) -> bool:
    """A 412 on a write: the record changed since the ETag sent was read."""
    return fault.status == 412 and fault.reason == conflicts.CHANGED_SINCE_READ


Part = SyncError | None
"""One $batch part's outcome: None when it succeeded, else the error the triage names."""


def parts_of(results: Sequence[OperationResult], where: str) -> list[Part]:
    """Each part judged; when every part failed for the service's reasons the whole request
    raises the first of them, so the governed call retries it and the circuit counts it."""
    parts = [classify_answer(DATAVERSE, r.status, r.headers, r.body, where=where)
             for r in results]
    service = [part for part in parts if isinstance(part, ServiceFault)]
    if service and len(service) == len(parts):
        raise service[0]
    return parts


class _FirstFailure:
    """Remembers when the first failed attempt of a call was sent (the scope's evidence)."""

    __slots__ = ("_now_s", "ambiguous", "last_sent_s", "sent_s")

    def __init__(self, now_s: Callable[[], float], since_s: float = NOT_FAILED) -> None:
        self._now_s = now_s
        self.sent_s = since_s
        self.last_sent_s = NOT_FAILED
        self.ambiguous: AmbiguousFault | None = None
        """The last ambiguous fault the call met, if any."""

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
