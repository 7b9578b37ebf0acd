"""Filing what a message cannot finish: a record that failed for a fault of its own goes to the
dead-letter queue, a message that breaks the contract to the poison queue, each indexed
(``sync.state.letter_index``) so operators can list and replay it."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from azure.data.tables.aio import TableClient

from sync.config.settings import Settings
from sync.failures.errors import AmbiguousFault, RecordFault
from sync.message.contract import RecordRef
from sync.message.counts import MessageCounts
from sync.message.ids import run_id_of
from sync.state import letter_index
from sync.state.dead_letters import Origin, message_envelope, reason_of, record_envelope
from sync.state.storage import Stores
from sync.work.context import Work
from sync.work.message_run import MessageRun, now_iso
from sync.work.settle import service_delay_s

logger = logging.getLogger(__name__)


async def reject(storage: Stores, settings: Settings, body: bytes,
                  reason: str) -> MessageCounts:
    logger.warning("message rejected: %s", reason,
                   extra={"event": "message_rejected", "reason": reason})
    envelope = message_envelope(body, reason, now_iso())
    sent = await storage.poison.send_message(envelope, time_to_live=_retention_s(settings))
    echo = json.loads(envelope)
    await _index(storage.poison_index, letter_index.poison_entity(
        echo["message"], reason=reason, source="worker", message_id=sent.id, at=echo["at"],
        expires_at_s=_expiry_s(settings), truncated=echo["truncated"]))
    return MessageCounts(rejected_messages=1)


def _retention_s(settings: Settings) -> int:
    return letter_index.retention_s(settings.deadletter_retention_days)


def _expiry_s(settings: Settings) -> float:
    return time.time() + _retention_s(settings)


async def _index(table: TableClient, entity: dict[str, Any]) -> None:
    """Index a dead letter or poison message; the queue message is kept if this fails (a
    `sync poison list` and `sync deadletters list --scan` index it from the queue)."""
    try:
        await letter_index.put(table, entity)
    except Exception:
        logger.exception("%s not indexed in %s", entity["RowKey"], table.table_name,
                         extra={"event": "index_failed", "table": table.table_name})


async def dead_letter(work: Work, run: MessageRun, record: RecordRef,
                       fault: RecordFault | AmbiguousFault) -> None:
    """Put one record on the dead-letter queue; if that fails it stays unfinished. A dry run
    counts it as failed instead (a replayed dead letter would be written)."""
    reason = reason_of(fault)
    if run.preview is not None:
        run.preview.fail(record.id, reason)
        return
    batch_id = run.message.batch_id
    origin = Origin(work.definition.entity_set, run_id_of(batch_id), batch_id, work.named.name)
    logger.warning("record %s dead-lettered (%s): %s", record.id, reason, fault,
                   extra={"event": "record_dead_lettered", "batch_id": batch_id,
                          "reason": reason})
    history = run.history_of(record)
    inputs = {column: record.current.get(column) for column in work.definition.extra_inputs
              } if record.current is not None else None
    envelope = record_envelope(origin, record, fault, history, now_iso(), inputs=inputs)
    try:
        sent = await work.storage.dead_letters.send_message(envelope,
                                                        time_to_live=_retention_s(work.settings))
    except Exception:
        logger.exception("dead letter for record %s not saved; it stays unfinished", record.id,
                         extra={"event": "dead_letter_failed"})
        run.wait(service_delay_s(run, work.circuit_policy))
        return
    await _index(work.storage.dead_letter_index, letter_index.dead_letter_entity(
        json.loads(envelope), sent.id, _expiry_s(work.settings)))
    run.dead_lettered(record.id, reason)
