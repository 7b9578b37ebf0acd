"""process_batch: enrich and write every record of a message, bounded by the process's governor.

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
from dataclasses import dataclass, field
from typing import Final

from sync import ledger
from sync.contract import NEVER_EXPIRE, BatchMessage, RecordRef, decode_batch
from sync.deadletter import message_envelope, record_envelope
from sync.errors import ContractError, SyncError, Throttled, TransientError
from sync.ledger import BatchCounts
from sync.retry import with_retries
from sync.services import Services

logger = logging.getLogger(__name__)

REQUEUE_JITTER_MAX_S: Final = 2.0
"""Spread added to Retry-After so re-enqueued batches do not all return in the same second."""


@dataclass(slots=True)
class _BatchRun:
    """The live state of one message's fan-out."""

    message: BatchMessage
    counts: BatchCounts = field(default_factory=BatchCounts)
    finished: set[str] = field(default_factory=set)
    retry_after_s: float | None = None

    def throttled(self, error: Throttled) -> None:
        self.counts.throttled_by_code[error.code or f"{error.service}-429"] += 1
        self.retry_after_s = max(self.retry_after_s or 0.0, error.retry_after_s)

    def unfinished(self) -> tuple[RecordRef, ...]:
        return tuple(r for r in self.message.records if r.id not in self.finished)


async def process_message(services: Services, body: bytes) -> BatchCounts:
    """Carry out one batch message (its body already base64-decoded)."""
    try:
        message = decode_batch(body)
    except ContractError as error:
        return await _reject(services, body, error.reason)
    run = _BatchRun(message)
    await asyncio.gather(*(_carry_out(services, run, record) for record in message.records))
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


async def _carry_out(services: Services, run: _BatchRun, record: RecordRef) -> None:
    if run.retry_after_s is not None:
        return
    try:
        await _enrich_and_write(services, run, record)
    except Throttled as error:
        run.throttled(error)
        return
    except SyncError as error:
        if not await _dead_letter(services, run, record, error):
            return
        run.counts.dead_lettered += 1
    else:
        run.counts.written += 1
    run.finished.add(record.id)


async def _enrich_and_write(services: Services, run: _BatchRun, record: RecordRef) -> None:
    retries = services.settings.max_retries

    def note(_: TransientError) -> None:
        run.counts.transient_retries += 1

    async def enrich() -> dict[str, object]:
        async with services.enrichment_slots:
            return await services.enrichment.columns_for(record.input)

    async def write(columns: dict[str, object]) -> None:
        async with services.governor:
            if run.retry_after_s is not None:
                raise Throttled("dataverse", run.retry_after_s)
            await services.dataverse.update(services.settings.entity_set, record.id, columns)

    columns = await with_retries(enrich, retries, note)
    await with_retries(lambda: write(columns), retries, note)


async def _dead_letter(services: Services, run: _BatchRun, record: RecordRef,
                       error: SyncError) -> bool:
    logger.warning("record %s dead-lettered: %s", record.id, error,
                   extra={"event": "record_dead_lettered", "batch_id": run.message.batch_id})
    try:
        await services.dead_letters.send_message(
            record_envelope(run.message.batch_id, record, error), time_to_live=NEVER_EXPIRE)
    except Exception:
        logger.exception("dead letter for record %s not saved; it stays unfinished", record.id,
                          extra={"event": "dead_letter_failed"})
        return False
    return True


def requeue_delay_s(retry_after_s: float, rand: float) -> int:
    """Visibility delay of re-enqueued work: Retry-After plus jitter, in whole seconds."""
    return max(1, math.ceil(retry_after_s + rand * REQUEUE_JITTER_MAX_S))


async def _requeue_unfinished(services: Services, run: _BatchRun) -> None:
    remaining = run.unfinished()
    if not remaining:
        return
    message = BatchMessage(batch_id=run.message.batch_id, records=remaining,
                           attempt=run.message.attempt + 1)
    delay_s = requeue_delay_s(run.retry_after_s or 0.0, random.random())  # noqa: S311 (jitter)
    await services.batches.send_message(message.to_json(), visibility_timeout=delay_s,
                                        time_to_live=NEVER_EXPIRE)
    run.counts.reenqueued += len(remaining)
    logger.info("batch %s: %d records back on the queue in %d s", run.message.batch_id,
                len(remaining), delay_s, extra={"event": "batch_requeued"})
