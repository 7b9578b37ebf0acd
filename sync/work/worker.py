"""process_batch: enrich every record of a message, then write them in the configured mode.

Each record ends in one of three places: written to Dataverse, on the dead-letter queue for a
fault of its own (with the reason), or back on the queue in the one fresh message that carries
the unfinished records with their history, invisible for the longest delay a fault asked for
(Retry-After, an open circuit, a service fault's back-off). The function raises only when it
could not save unfinished work, so the host retries the message and nothing is lost.

Before taking the records, ``sync.work.holds`` applies the pause and cancel flags and the
run's canary (held records go back as a new message; cancelled ones are counted so). A record
whose enriched values equal what Dataverse holds is not written: it is counted unchanged
(``sync.work.writes``). After the message's ledger row is written (its counts and the Dataverse
requests it used), its run (``sync.state.runs``) is completed if every planned record is now
written, dead-lettered, unchanged or cancelled; a producer's message starts its own run.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import random
import time
from collections import Counter
from typing import Any, Final

from azure.data.tables.aio import TableClient

from sync.budget import routing
from sync.budget.lane import Lane
from sync.clients.dataverse import SERVICE as DATAVERSE
from sync.clients.enrichment import domain_of
from sync.config.lanes import LaneKey
from sync.config.settings import Settings
from sync.failures.errors import AmbiguousFault, ContractError, Deferred, RecordFault, ServiceFault
from sync.message.contract import NEVER_EXPIRE, Message, RecordRef, decode_message, fitting_groups
from sync.message.counts import MessageCounts
from sync.message.ids import is_planned, run_id_of
from sync.safety import before_images, dry_run
from sync.state import ledger, letter_index, runs
from sync.state.dead_letters import Origin, message_envelope, reason_of, record_envelope
from sync.state.storage import Stores
from sync.telemetry.tracing import describe_message
from sync.work.context import Work, WorkSource
from sync.work.holds import check_holds, watching
from sync.work.message_run import MessageRun, now_iso
from sync.work.settle import judge_alone, service_delay_s
from sync.work.write_requests import Enriched
from sync.work.writes import Writer

logger = logging.getLogger(__name__)

REQUEUE_JITTER_MAX_S: Final = 2.0
"""Spread added to the delay so re-enqueued messages do not all return in the same second."""


def decode_queue_body(body: bytes) -> bytes:
    """A message as the queue holds it (base64 text) to its JSON bytes; ContractError if not."""
    try:
        return base64.b64decode(body.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ContractError("message is not base64 (producers encode the JSON with "
                            "TextBase64EncodePolicy)") from None


async def process_queue_message(services: WorkSource, raw: bytes) -> MessageCounts:
    """Carry out one message as the trigger hands it over (base64 text, decoded here so a
    message that is not base64 reaches the poison queue with its reason)."""
    try:
        body = decode_queue_body(raw)
    except ContractError as error:
        return await _reject(services.storage, services.settings, raw, error.reason)
    return await process_message(services, body)


async def process_message(services: WorkSource, body: bytes) -> MessageCounts:
    """Carry out one message (its body already base64-decoded) with the work context of
    its definition and lane."""
    try:
        message = decode_message(body)
        work = _work_for(services, message)
    except ContractError as error:
        return await _reject(services.storage, services.settings, body, error.reason)
    return await process_work(work, message)


def _work_for(services: WorkSource, message: Message) -> Work:
    """The definition and lane a message names (a lane picked when it names none);
    ContractError when the deployment has no such definition, or the definition no such lane."""
    definitions = services.settings.definitions
    definition = definitions.get(message.definition)
    if definition is None:
        raise ContractError(f"unknown definition {message.definition!r}; this deployment "
                            f"defines: {', '.join(definitions.names)}")
    if message.lane is None:
        return services.work(definition, routing.pick(services.lanes_of(definition)).key)
    lane = LaneKey(*message.lane)
    if lane not in definition.lanes:
        known = ", ".join(map(str, definition.lanes))
        raise ContractError(f"lane {lane} is not a lane of definition {definition.name} "
                            f"({known})")
    return services.work(definition, lane)


async def process_work(work: Work, message: Message) -> MessageCounts:
    """Carry out a decoded message through its lane."""
    describe_message(message)
    work.lane.activity.touch()
    run_id = run_id_of(message.batch_id)
    clock = work.dataverse_dep.clock
    if message.attempt == 0 and not is_planned(message.batch_id):
        await runs.start_message_run(work.storage.ledger, run_id, len(message.records),
                                     clock.wall_s(), definition=work.named.name)
    checked = await check_holds(work, message)  # paused, cancelled, or waiting for a canary
    if checked.message is None:
        checked.counts.definition = work.named.name
        return checked.counts
    run = MessageRun(checked.message,
                     preview=dry_run.Preview() if work.definition.dry_run else None)
    run.counts.definition = work.named.name
    try:
        async with watching(work, run):
            await _carry_out(work, run)
    except Exception:
        logger.exception("message %s stopped by an unexpected error; its unfinished records go "
                         "back on the queue", message.batch_id,
                         extra={"event": "batch_error", "batch_id": message.batch_id})
        run.wait(service_delay_s(run, work.circuit_policy))
    await _requeue_unfinished(work, run)
    await ledger.record_message(work.storage.ledger, message.batch_id, message.attempt,
                              run.counts)
    logger.info("message %s attempt %d (%s): %d written, %d unchanged, %d dead-lettered, "
                "%d re-enqueued, %d Dataverse requests", message.batch_id, message.attempt,
                work.lane.key, run.counts.written, run.counts.unchanged,
                run.counts.dead_lettered, run.counts.reenqueued, run.counts.requests.total,
                extra={"event": "batch_done", "batch_id": message.batch_id,
                       "lane": str(work.lane.key)})
    if not run.counts.reenqueued:  # records sent back are open: the run cannot be complete
        await runs.complete_if_done(work.storage.ledger, run_id, clock.wall_s())
    return run.counts


async def _carry_out(work: Work, run: MessageRun) -> None:
    async def dead_letter(record: RecordRef, fault: RecordFault | AmbiguousFault) -> None:
        await _dead_letter(work, run, record, fault)

    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(_enrich(work, run, r)) for r in run.message.records]
    enriched = [item for task in tasks if (item := task.result()) is not None]
    if run.preview is not None:  # a dry run: compare and report, write nothing
        for record_id in await dry_run.settle(work.storage.reports, run.message, run.preview,
                                              enriched):
            run.previewed(record_id)
    elif enriched:
        try:
            await Writer(work, run, dead_letter).write_all(enriched)
        finally:  # what was written keeps its before-image, even if the writer stopped
            await before_images.keep(work.storage.before_images, run.message, run.written_ids,
                                     enriched,
                                     retention_days=work.settings.rollback_retention_days,
                                     entity_set=work.definition.entity_set,
                                     now_s=work.dataverse_dep.clock.wall_s())


async def _reject(storage: Stores, settings: Settings, body: bytes,
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


async def _enrich(work: Work, run: MessageRun, record: RecordRef) -> Enriched | None:
    """The record with its enriched columns; None when it is dead-lettered or waits."""
    dependency = work.enrichment_dep
    if run.stopped(dependency.name):
        return None
    try:
        domain_of(record.input)
    except RecordFault as fault:
        await _dead_letter(work, run, record, fault)
        return None
    first_failure_s = dependency.clock.monotonic_s()
    mapping = work.definition.mapping
    try:
        columns = await dependency.call(
            lambda: work.enrichment.columns_for(record.input, mapping), run)
    except Deferred as error:
        run.deferred(error)
    except RecordFault as fault:
        await _dead_letter(work, run, record, fault)
    except AmbiguousFault as fault:
        await judge_alone(run, record, fault, first_failure_s=first_failure_s,
                          dependency=dependency, probes=work.settings.record_probes,
                          policy=work.circuit_policy,
                          dead_letter=lambda r, f: _dead_letter(work, run, r, f))
    except ServiceFault as fault:
        run.failed(record, fault, reason="service_fault")
        run.wait(service_delay_s(run, work.circuit_policy))
    else:
        return record, columns
    return None


async def _dead_letter(work: Work, run: MessageRun, record: RecordRef,
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
    envelope = record_envelope(origin, record, fault, history, now_iso())
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


def next_lane(work: Work, run: MessageRun) -> tuple[Lane | None, float]:
    """Where the unfinished records go, and after how long: when only this lane stopped the
    message (its throttle or its circuit) and another lane of the definition is open, to
    whichever lane is open when a worker takes them (None: not pinned), at once; otherwise
    back to this lane after the delay the faults asked for. Unpinned, the work spreads over
    the lanes open at the time instead of piling onto the one open now."""
    if (set(run.stopped_services) == {DATAVERSE} and not run.reasons
            and routing.away_from(work.lane, work.lanes) is not None):
        return None, 0.0
    return work.lane, run.delay_s


def requeue_delay_s(delay_s: float, rand: float) -> int:
    """Visibility delay of re-enqueued work: the delay plus jitter, in whole seconds."""
    return max(1, math.ceil(delay_s + rand * REQUEUE_JITTER_MAX_S))


async def _requeue_unfinished(work: Work, run: MessageRun) -> None:
    remaining = run.unfinished()
    if not remaining:
        return
    lane, wait_s = next_lane(work, run)
    delay_s = requeue_delay_s(wait_s, random.random())  # noqa: S311 (jitter)
    attempt = run.message.attempt + 1
    for number, group in enumerate(fitting_groups(remaining, len(remaining))):
        batch_id = run.message.batch_id if number == 0 else f"{run.message.batch_id}.{number}"
        message = Message(batch_id=batch_id[:128], records=group, attempt=attempt,
                               definition=run.message.definition,
                               lane=lane.key.wire if lane is not None else None)
        await work.storage.batches.send_message(message.to_json(), visibility_timeout=delay_s,
                                                time_to_live=NEVER_EXPIRE)
    if lane is None:
        logger.info("message %s: %d records routed away from lane %s to any open lane",
                    run.message.batch_id, len(remaining), work.lane.key,
                    extra={"event": "lane_routed", "from_lane": str(work.lane.key)})
    reasons = Counter(run.reason_unfinished(record.id) for record in remaining)
    run.counts.reenqueued_by_reason.update(reasons)
    run.counts.reenqueued += len(remaining)
    run.counts.requeue_delay_s += delay_s
    logger.info("message %s: %d records back on the queue in %d s (%s)", run.message.batch_id,
                len(remaining), delay_s, dict(reasons),
                extra={"event": "batch_requeued", "reasons": dict(reasons)})
