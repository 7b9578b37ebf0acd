"""Writing enriched records to Dataverse, in the configured mode, along one path for all modes.

A write group is what one request carries: one record (``single``: a PATCH with
``If-Match: *``), up to ``SYNC_BATCH_OPERATIONS`` (``batch``: a ``$batch`` with
continue-on-error) or up to ``SYNC_BULK_TARGETS`` (``bulk``: ``UpdateMultiple``, which rolls back
whole). Every group goes through the one governed call (sync.dependency), and its outcome is
settled the same way whatever the mode:

- written: each record is marked written;
- deferred (a throttle, an open circuit): the records wait on the queue;
- a record fault: alone, the record is dead-lettered; in a group, the group is split (to the
  size a "too many operations" answer names, else in halves) until the record at fault is alone;
- an ambiguous fault: a group is split; a record alone is the record's fault when its siblings
  succeeded since it first failed (after ``SYNC_RECORD_PROBES`` deliveries), else the service's;
- a service fault (after the retries): the records wait on the queue, never dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

from sync.batchwire import Operation, OperationResult
from sync.chunks import chunk
from sync.contract import RecordRef
from sync.dataverse import SERVICE as DATAVERSE
from sync.dataverse import record_path
from sync.errors import (
    AmbiguousFault,
    Deferred,
    RecordFault,
    ServiceFault,
    SyncError,
    Throttled,
)
from sync.failures.triage import classify_answer
from sync.messagerun import MessageRun
from sync.services import Services
from sync.settle import DeadLetter, judge_alone, service_delay_s

logger = logging.getLogger(__name__)

T = TypeVar("T")
NOT_FAILED: Final = float("inf")
Enriched = tuple[RecordRef, dict[str, Any]]
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


def group_size(services: Services) -> int:
    """Records per request in the configured mode."""
    settings = services.settings
    return {"single": 1, "batch": settings.batch_operations,
            "bulk": settings.bulk_targets}[settings.write_mode]


class Writer:
    """Writes one message's enriched records; settles every outcome in one place."""

    __slots__ = ("_dead_letter", "_run", "_services")

    def __init__(self, services: Services, run: MessageRun, dead_letter: DeadLetter) -> None:
        self._services, self._run, self._dead_letter = services, run, dead_letter

    async def write_all(self, items: Sequence[Enriched]) -> None:
        """Write every item in groups of the configured size, concurrently."""
        await self._each(list(chunk(items, group_size(self._services))))

    async def _each(self, groups: Sequence[Sequence[Enriched]],
                    failed_since_s: float = NOT_FAILED) -> None:
        """Each group as one request; ``failed_since_s``: when the request they were split
        from first failed (the scope's evidence counts successes sent since then)."""
        await asyncio.gather(*(self._group(list(group), failed_since_s) for group in groups))

    async def _group(self, items: list[Enriched], failed_since_s: float = NOT_FAILED) -> None:
        first_failure = _FirstFailure(self._services.dataverse_dep.clock.monotonic_s,
                                      failed_since_s)
        suspect = all(self._run.history_of(record).strikes > 0 for record, _ in items)
        try:
            results = await self._services.dataverse_dep.call(
                first_failure.wrap(lambda: self._send(items)), self._run,
                split_ambiguous=len(items) > 1, suspect=suspect)
        except Deferred as error:
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
        """One request for the group in the configured mode; per-part outcomes for $batch."""
        services = self._services
        table = services.settings.definition
        if services.settings.write_mode == "batch":
            operations = [Operation("PATCH", record_path(table.entity_set, record.id),
                                    {"If-Match": "*"}, columns) for record, columns in items]
            return parts_of(await services.dataverse.execute_batch(operations),
                            f"PATCH {table.entity_set} in $batch")
        if len(items) == 1 and services.settings.write_mode == "single":
            record, columns = items[0]
            await services.dataverse.update(table.entity_set, record.id, columns)
            return None
        await services.dataverse.update_multiple(
            table.entity_set, table.logical_name, table.key,
            [(record.id, columns) for record, columns in items])
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
        for item, fault in zip(items, parts, strict=True):
            if fault is None:
                self._run.written(item[0].id)
            elif isinstance(fault, Throttled):
                await self._services.dataverse_dep.on_throttled(fault, self._run)
                self._run.deferred(fault)
            elif isinstance(fault, RecordFault):
                await self._dead_letter(item[0], fault)
            else:
                again.append(item)
        if again:
            await self._again(again, sent_s)

    async def _again(self, items: list[Enriched], failed_since_s: float) -> None:
        """Parts that failed for the service's reasons (or ambiguously) go one by one, so
        the triage and the scope decide each under the governed call and its retries; their
        siblings in the same $batch were sent with them (the scope's evidence)."""
        await self._each([[item] for item in items], failed_since_s)

    async def _refused(self, items: list[Enriched], fault: RecordFault) -> None:
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
        services = self._services
        await judge_alone(self._run, items[0][0], fault, first_failure_s=first_failure_s,
                          dependency=services.dataverse_dep,
                          probes=services.settings.record_probes,
                          policy=services.circuit_policy, dead_letter=self._dead_letter)

    def _wait(self, items: list[Enriched], fault: ServiceFault) -> None:
        for record, _ in items:
            self._run.failed(record, fault, reason="service_fault")
        self._run.wait(service_delay_s(self._run, self._services.circuit_policy))


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

    __slots__ = ("_now_s", "last_sent_s", "sent_s")

    def __init__(self, now_s: Callable[[], float], since_s: float = NOT_FAILED) -> None:
        self._now_s = now_s
        self.sent_s = since_s
        self.last_sent_s = NOT_FAILED

    def wrap(self, send: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
        async def sent() -> T:
            started_s = self.last_sent_s = self._now_s()
            try:
                return await send()
            except ServiceFault:
                self.sent_s = min(self.sent_s, started_s)
                raise

        return sent
