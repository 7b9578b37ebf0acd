"""Filing what a message cannot finish: a record that failed for a fault of its own goes to the
dead-letter queue, a message that breaks the contract to the poison queue, each indexed
(``sync.state.letter_index``) so operators can list and replay it.

A record that breaks the contract alone (the planner's guard, a producer's record the worker
sets apart) is dead-lettered as ``unusable_input`` with the reason, and counted in a ledger row
of its own, so its siblings go on; one that names no record id goes alone to the poison queue.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

from azure.data.tables.aio import TableClient

from sync.config.settings import Settings
from sync.failures.errors import AmbiguousFault, RecordFault
from sync.message.contract import (
    MAX_INPUT_CHARS,
    Message,
    RecordHistory,
    RecordRef,
    Refused,
    Scalar,
)
from sync.message.counts import MessageCounts
from sync.message.ids import refused_batch_id, run_id_of
from sync.state import ledger, letter_index
from sync.state.dead_letters import Origin, message_envelope, reason_of, record_envelope
from sync.state.storage import Stores
from sync.work.context import Work
from sync.work.message_run import MessageRun, now_iso
from sync.work.settle import service_delay_s

logger = logging.getLogger(__name__)

UNUSABLE: Final = "unusable_input"
ECHOED_INPUT_CHARS: Final = MAX_INPUT_CHARS + 1
"""How much of an unusable input its dead letter echoes: enough to show it, and a too-long input
stays too long, so a replay refuses it instead of enriching a cut one."""


async def reject(storage: Stores, settings: Settings, body: bytes,
                  reason: str, *, now_s: float) -> MessageCounts:
    """Send a message that cannot be carried out to the poison queue, with ``reason``, and
    index it (its row expires the retention after ``now_s``, the worker's clock)."""
    logger.warning("message rejected: %s", reason,
                   extra={"event": "message_rejected", "reason": reason})
    envelope = message_envelope(body, reason, now_iso())
    sent = await storage.poison.send_message(envelope, time_to_live=_retention_s(settings))
    echo = json.loads(envelope)
    await _index(storage.poison_index, letter_index.poison_entity(
        echo["message"], reason=reason, source="worker", message_id=sent.id, at=echo["at"],
        expires_at_s=_expiry_s(settings, now_s), truncated=echo["truncated"]))
    return MessageCounts(rejected_messages=1)


def _retention_s(settings: Settings) -> int:
    return letter_index.retention_s(settings.deadletter_retention_days)


def _expiry_s(settings: Settings, now_s: float) -> float:
    return now_s + _retention_s(settings)


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
    inputs = {column: record.current.get(column) for column in work.definition.extra_inputs
              } if record.current is not None else None
    try:
        await _send_dead_letter(work, origin, record, fault, run.history_of(record),
                                inputs=inputs)
    except Exception:
        logger.exception("dead letter for record %s not saved; it stays unfinished", record.id,
                         extra={"event": "dead_letter_failed"})
        run.wait(service_delay_s(run, work.circuit_policy))
        return
    run.dead_lettered(record.id, reason)


async def _send_dead_letter(work: Work, origin: Origin, record: RecordRef,
                            fault: RecordFault | AmbiguousFault, history: RecordHistory, *,
                            inputs: Mapping[str, Scalar] | None = None) -> None:
    """Send one dead letter and index it (an index that fails is logged, the letter kept);
    ``inputs``: the other columns the definition's enrichment reads, for a replay."""
    envelope = record_envelope(origin, record, fault, history, now_iso(), inputs=inputs)
    sent = await work.storage.dead_letters.send_message(envelope,
                                                    time_to_live=_retention_s(work.settings))
    await _index(work.storage.dead_letter_index, letter_index.dead_letter_entity(
        json.loads(envelope), sent.id,
        _expiry_s(work.settings, work.dataverse_dep.clock.wall_s())))


def unusable(reason: str) -> RecordFault:
    """The fault of a record that breaks the message contract on its own."""
    return RecordFault("sync", 0, "InvalidInput", reason, reason=UNUSABLE)


async def dead_letter_unusable(work: Work, batch_id: str, attempt: int,
                               items: Sequence[tuple[RecordRef, str]]) -> MessageCounts:
    """Dead-letter each record with the reason it breaks the contract, and count them in the
    ledger row of ``batch_id`` (their own). Raises when a dead letter cannot be saved: the
    caller's message (or plan) is retried, and the same rows are written again."""
    origin = Origin(work.definition.entity_set, run_id_of(batch_id), batch_id, work.named.name)
    for record, reason in items:
        logger.warning("record %s dead-lettered (%s): %s", record.id, UNUSABLE, reason,
                       extra={"event": "record_dead_lettered", "batch_id": batch_id,
                              "reason": UNUSABLE})
        echo = dataclasses.replace(record, input=record.input[:ECHOED_INPUT_CHARS],
                                   current=None)
        await _send_dead_letter(work, origin, echo, unusable(reason), RecordHistory())
    counts = MessageCounts(dead_lettered=len(items),
                           dead_lettered_by_reason=Counter({UNUSABLE: len(items)}))
    await ledger.record_message(work.storage.ledger, batch_id, attempt, counts)
    return counts


async def file_refused(work: Work, message: Message) -> MessageCounts:
    """The records of ``message`` that broke the contract alone: each that names its id is
    dead-lettered as unusable input, each that names none goes alone to the poison queue."""
    named = [(RecordRef(r.id, r.input), r.reason) for r in message.refused if r.id is not None]
    counts = MessageCounts()
    if named:
        counts = await dead_letter_unusable(work, refused_batch_id(message.batch_id),
                                            message.attempt, named)
    for refused in message.refused:
        if refused.id is None:
            counts.add(await reject(work.storage, work.settings, alone(message, refused),
                                    refused.reason, now_s=work.dataverse_dep.clock.wall_s()))
    return counts


def alone(message: Message, refused: Refused) -> bytes:
    """The message as it would hold only ``refused`` (what its poison entry echoes)."""
    body = json.loads(dataclasses.replace(message, records=(), refused=()).to_json())
    body["records"] = [refused.item]
    return json.dumps(body).encode("utf-8", "surrogatepass")
