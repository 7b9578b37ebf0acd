"""Writing enriched records to Dataverse in the configured mode, each request under the governor.

- ``single``: one ``PATCH`` with ``If-Match: *`` per record, in parallel (the seeds' pattern);
- ``batch``: ``$batch`` requests of ``SYNC_BATCH_OPERATIONS`` PATCHes with continue-on-error;
- ``bulk``: ``UpdateMultiple`` requests of ``SYNC_BULK_TARGETS`` targets; a failing request
  rolls back whole, so it is split in halves until the record at fault is alone.

A request answered "too many operations" is split and sent again. Every record ends written,
dead-lettered, or unfinished because a service throttled (the worker re-enqueues those).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

from sync.admission import admitted
from sync.batchrun import BatchRun
from sync.batchwire import Operation, OperationResult
from sync.chunks import chunk
from sync.contract import RecordRef
from sync.dataverse import SERVICE as DATAVERSE
from sync.dataverse import record_path
from sync.errors import PermanentError, SyncError, Throttled, TransientError
from sync.http import error_code_and_message, parse_retry_after_s
from sync.retry import backoff_s, with_retries
from sync.services import Services

logger = logging.getLogger(__name__)

T = TypeVar("T")
Enriched = tuple[RecordRef, dict[str, Any]]
DeadLetter = Callable[[RecordRef, SyncError], Awaitable[None]]
_ALLOWED: Final = re.compile(r"(\d[\d,]*)\D{0,3}\s*operations|MaxBatchSize\D{0,3}(\d+)", re.I)


def allowed_size(error: PermanentError) -> int | None:
    """The largest request size a "too many operations" error names, if it is one."""
    match = _ALLOWED.search(error.message)
    if error.status != 400 or match is None:
        return None
    return int((match.group(1) or match.group(2)).replace(",", ""))


def smaller(size: int, allowed: int | None) -> int:
    """The next request size after a too-large one: the allowed size, else half."""
    return max(1, min(size // 2, allowed) if allowed else size // 2)


async def write_all(services: Services, run: BatchRun, items: Sequence[Enriched],
                    dead_letter: DeadLetter) -> None:
    """Write every item in the configured mode."""
    settings = services.settings
    if settings.write_mode == "single":
        await asyncio.gather(*(_single(services, run, item, dead_letter) for item in items))
    elif settings.write_mode == "batch":
        await asyncio.gather(*(_batch(services, run, list(group), dead_letter)
                               for group in chunk(items, settings.batch_operations)))
    else:
        await asyncio.gather(*(_bulk(services, run, list(group), dead_letter)
                               for group in chunk(items, settings.bulk_targets)))


async def _governed(services: Services, run: BatchRun, call: Callable[[], Awaitable[T]]) -> T:
    """One request under the governor; a 429 closes the local and the cluster gate."""
    async def on_429(error: Throttled) -> None:
        run.count_429(error)
        try:
            await services.cluster.publish_gate(error.retry_after_s, error.code)
        except Exception:
            logger.exception("gate not published; this instance still waits",
                             extra={"event": "gate_publish_failed"})

    return await admitted(services.governor, DATAVERSE, call, on_429=on_429,
                          stopped=lambda: run.stop_delay(DATAVERSE))


async def _with_retries(services: Services, run: BatchRun,
                        call: Callable[[], Awaitable[T]]) -> T:
    def note(_: TransientError) -> None:
        run.counts.transient_retries += 1

    return await with_retries(lambda: _governed(services, run, call),
                              services.settings.max_retries, note)


async def _single(services: Services, run: BatchRun, item: Enriched,
                  dead_letter: DeadLetter) -> None:
    record, columns = item
    entity_set = services.settings.definition.entity_set
    try:
        await _with_retries(services, run, lambda: services.dataverse.update(
            entity_set, record.id, columns))
    except Throttled as error:
        run.throttled(error)
    except SyncError as error:
        await dead_letter(record, error)
    else:
        run.written(record.id)


async def _batch(services: Services, run: BatchRun, items: list[Enriched],
                 dead_letter: DeadLetter) -> None:
    pending = items
    for attempt in range(services.settings.max_retries + 1):
        if attempt:
            run.counts.transient_retries += len(pending)
            await asyncio.sleep(backoff_s(attempt, random.random()))  # noqa: S311 (jitter)
        pending = await _batch_once(services, run, pending, dead_letter)
        if not pending or run.stopped(DATAVERSE):
            return
    for record, _ in pending:
        await dead_letter(record, TransientError(DATAVERSE, "kept failing inside $batch"))


async def _batch_once(services: Services, run: BatchRun, items: list[Enriched],
                      dead_letter: DeadLetter) -> list[Enriched]:
    """Send one $batch; answer the items that failed transiently."""
    entity_set = services.settings.definition.entity_set
    operations = [Operation("PATCH", record_path(entity_set, record.id), {"If-Match": "*"},
                            columns) for record, columns in items]
    try:
        results = await _with_retries(services, run,
                                      lambda: services.dataverse.execute_batch(operations))
    except Throttled as error:
        run.throttled(error)
        return []
    except PermanentError as error:
        return await _too_large_or_failed(services, run, items, error, dead_letter,
                                          writer=_batch)
    except TransientError as error:
        for record, _ in items:
            await dead_letter(record, error)
        return []
    return await _settle(run, items, results, dead_letter)


async def _settle(run: BatchRun, items: list[Enriched], results: list[OperationResult],
                  dead_letter: DeadLetter) -> list[Enriched]:
    retry: list[Enriched] = []
    for index, item in enumerate(items):
        result = results[index] if index < len(results) else None
        if result is None or result.status >= 500:
            retry.append(item)
        elif result.status == 429:
            code, _ = error_code_and_message(result.body)
            retry_after_s = parse_retry_after_s(result.headers.get("Retry-After"))
            inside = Throttled(DATAVERSE, retry_after_s, code)
            run.count_429(inside)
            run.throttled(inside)
        elif result.status >= 400:
            code, message = error_code_and_message(result.body)
            await dead_letter(item[0], PermanentError(DATAVERSE, result.status, code, message))
        else:
            run.written(item[0].id)
    return retry


async def _bulk(services: Services, run: BatchRun, items: list[Enriched],
                dead_letter: DeadLetter) -> None:
    table = services.settings.definition
    targets = [(record.id, columns) for record, columns in items]
    try:
        await _with_retries(services, run, lambda: services.dataverse.update_multiple(
            table.entity_set, table.logical_name, table.key, targets))
    except Throttled as error:
        run.throttled(error)
    except PermanentError as error:
        await _too_large_or_failed(services, run, items, error, dead_letter, writer=_bulk)
    except TransientError as error:
        for record, _ in items:
            await dead_letter(record, error)
    else:
        for record, _ in items:
            run.written(record.id)


Writer = Callable[[Services, BatchRun, list[Enriched], DeadLetter], Awaitable[None]]


async def _too_large_or_failed(services: Services, run: BatchRun, items: list[Enriched],
                               error: PermanentError, dead_letter: DeadLetter, *,
                               writer: Writer) -> list[Enriched]:
    """Split a refused request and send the halves; a single record at fault is dead-lettered."""
    if len(items) == 1:
        await dead_letter(items[0][0], error)
        return []
    size = smaller(len(items), allowed_size(error))
    logger.info("request of %d refused (%s); resending in parts of %d", len(items),
                error.code or error.status, size, extra={"event": "request_split"})
    await asyncio.gather(*(writer(services, run, list(part), dead_letter)
                           for part in chunk(items, size)))
    return []
