"""process_batch: enrich every record of a message, then write them in the configured mode.

Each record ends in one of three places: written to Dataverse, on the dead-letter queue with its
reason, or (when a service throttles) in the one new message that carries the unfinished records
back to the queue, invisible for Retry-After. The function raises only when it could not save
unfinished work, so the host retries the message and nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from typing import Any, Final

from sync import ledger
from sync.admission import admitted
from sync.batchrun import BatchRun
from sync.contract import NEVER_EXPIRE, BatchMessage, RecordRef, decode_batch
from sync.deadletter import message_envelope, record_envelope
from sync.enrichment import SERVICE as ENRICHMENT
from sync.errors import ContractError, SyncError, Throttled, TransientError
from sync.ledger import BatchCounts
from sync.retry import with_retries
from sync.services import Services
from sync.writes import DeadLetter, Enriched, write_all

logger = logging.getLogger(__name__)

REQUEUE_JITTER_MAX_S: Final = 2.0
"""Spread added to Retry-After so re-enqueued batches do not all return in the same second."""


async def process_message(services: Services, body: bytes) -> BatchCounts:
    """Carry out one batch message (its body already base64-decoded)."""
    try:
        message = decode_batch(body)
    except ContractError as error:
        return await _reject(services, body, error.reason)
    run = BatchRun(message)

    async def dead_letter(record: RecordRef, error: SyncError) -> None:
        await _dead_letter(services, run, record, error)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(_enrich(services, run, r, dead_letter))
                 for r in message.records]
    enriched = [item for task in tasks if (item := task.result()) is not None]
    if enriched:
        await write_all(services, run, enriched, dead_letter)
    await _requeue_unfinished(services, run)
    await ledger.record_batch(services.ledger, message.batch_id, message.attempt, run.counts)
    logger.info("batch %s attempt %d: %d written, %d dead-lettered, %d re-enqueued",
                message.batch_id, message.attempt, run.counts.written,
                run.counts.dead_lettered, run.counts.reenqueued,
                extra={"event": "batch_done", "batch_id": message.batch_id})
    return run.counts


async def _reject(services: Services, body: bytes, reason: str) -> BatchCounts:
    logger.warning("batch message rejected: %s", reason,
                   extra={"event": "message_rejected", "reason": reason})
    await services.poison.send_message(message_envelope(body, reason), time_to_live=NEVER_EXPIRE)
    return BatchCounts(rejected_messages=1)


async def _enrich(services: Services, run: BatchRun, record: RecordRef,
                  dead_letter: DeadLetter) -> Enriched | None:
    """The record with its enriched columns; None when it was dead-lettered or throttled."""
    if run.stopped(ENRICHMENT):
        return None

    def note(_: TransientError) -> None:
        run.counts.transient_retries += 1

    async def on_429(error: Throttled) -> None:
        run.count_429(error)

    async def call() -> dict[str, Any]:
        return await admitted(
            services.enrichment_governor, ENRICHMENT,
            lambda: services.enrichment.columns_for(record.input,
                                                    services.settings.definition.mapping),
            on_429=on_429, stopped=lambda: run.stop_delay(ENRICHMENT))

    try:
        return record, await with_retries(call, services.settings.max_retries, note)
    except Throttled as error:
        run.throttled(error)
    except SyncError as error:
        await dead_letter(record, error)
    return None


async def _dead_letter(services: Services, run: BatchRun, record: RecordRef,
                       error: SyncError) -> None:
    """Put one record on the dead-letter queue; if that fails it stays unfinished."""
    logger.warning("record %s dead-lettered: %s", record.id, error,
                   extra={"event": "record_dead_lettered", "batch_id": run.message.batch_id})
    try:
        await services.dead_letters.send_message(
            record_envelope(run.message.batch_id, record, error), time_to_live=NEVER_EXPIRE)
    except Exception:
        logger.exception("dead letter for record %s not saved; it stays unfinished", record.id,
                         extra={"event": "dead_letter_failed"})
        return
    run.dead_lettered(record.id)


def requeue_delay_s(retry_after_s: float, rand: float) -> int:
    """Visibility delay of re-enqueued work: Retry-After plus jitter, in whole seconds."""
    return max(1, math.ceil(retry_after_s + rand * REQUEUE_JITTER_MAX_S))


async def _requeue_unfinished(services: Services, run: BatchRun) -> None:
    remaining = run.unfinished()
    if not remaining:
        return
    message = BatchMessage(batch_id=run.message.batch_id, records=remaining,
                           attempt=run.message.attempt + 1)
    delay_s = requeue_delay_s(run.retry_after_s or 0.0, random.random())  # noqa: S311 (jitter)
    await services.batches.send_message(message.to_json(), visibility_timeout=delay_s,
                                        time_to_live=NEVER_EXPIRE)
    run.counts.reenqueued += len(remaining)
    run.counts.requeue_delay_s += delay_s
    logger.info("batch %s: %d records back on the queue in %d s", run.message.batch_id,
                len(remaining), delay_s, extra={"event": "batch_requeued"})
