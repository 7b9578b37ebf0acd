"""process_batch: enrich every record of a message, then write them in the configured mode.

Each record ends in one of three places: written to Dataverse, on the dead-letter queue for a
fault of its own (with the reason), or back on the queue in the one fresh message that carries
the unfinished records with their history, invisible for the longest delay a fault asked for
(Retry-After, an open circuit, a service fault's back-off). The function raises only when it
could not save unfinished work, so the host retries the message and nothing is lost.

A record that breaks the contract on its own (an input too long or not text, from a producer or
from a message made before the planner guarded its records) is set apart when the message is
read and dead-lettered as ``unusable_input`` with the reason (``sync.work.filing``); its
siblings are carried out.

Before taking the records, ``sync.work.holds`` applies the pause and cancel flags and the
run's canary (held records go back as a new message; cancelled ones are counted so). A record
whose enriched values equal what Dataverse holds is not written: it is counted unchanged
(``sync.work.writes``). After the message's ledger row is written (its counts and the Dataverse
requests it used), its run (``sync.state.runs``) is completed if every planned record is now
written, dead-lettered, unchanged or cancelled; a producer's message starts its own run.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from sync.budget import routing
from sync.config.lanes import LaneKey
from sync.failures.errors import AmbiguousFault, ContractError, RecordFault
from sync.message.contract import Message, RecordRef, read_message
from sync.message.counts import MessageCounts
from sync.message.ids import is_planned, run_id_of
from sync.message.outgoing import Outgoing
from sync.safety import before_images, dry_run
from sync.state import ledger, runs
from sync.state.ledger_rows import counts_from, parts_fit, unsent_parts
from sync.state.storage import STORAGE_ERRORS
from sync.telemetry.tracing import describe_message
from sync.work import refusals
from sync.work.bugs import settle_bug
from sync.work.context import Work, WorkSource
from sync.work.enrich import enrich_all
from sync.work.filing import dead_letter, file_refused, reject
from sync.work.holds import check_holds, watching
from sync.work.message_run import MessageRun
from sync.work.requeue import remainder, send_back_until_open, send_back_whole, send_parts
from sync.work.settle import service_delay_s
from sync.work.stops import closed_on_arrival, deadline, held_back
from sync.work.writes import Writer

logger = logging.getLogger(__name__)


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
        return await reject(services.storage, services.settings, raw, error.reason,
                            now_s=services.clock.wall_s())
    return await process_message(services, body)


async def process_message(services: WorkSource, body: bytes) -> MessageCounts:
    """Carry out one message (its body already base64-decoded) with the work context of
    its definition and lane."""
    try:
        message = read_message(body)
        work = _work_for(services, message)
    except ContractError as error:
        return await reject(services.storage, services.settings, body, error.reason,
                            now_s=services.clock.wall_s())
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
    """Carry out a decoded message through its lane; the records the contract refused alone
    are filed first. A storage call that fails before the records are taken (the run's start,
    the holds) sends the message back whole by visibility, so an outage never counts a dequeue
    against it."""
    describe_message(message)
    work.lane.activity.touch()
    try:
        refused = await _started(work, message)
    except STORAGE_ERRORS as error:
        if message.refused:  # they travel only in the body the host delivers again
            raise
        return await send_back_whole(work, message, error)
    if not message.records:
        await runs.complete_if_done(work.storage.ledger, run_id_of(message.batch_id),
                                    work.dataverse_dep.clock.wall_s())
        return refused
    counts = await _carry_out_records(work, dataclasses.replace(message, refused=()))
    counts.add(refused)
    return counts


async def _started(work: Work, message: Message) -> MessageCounts:
    """A producer's first delivery starts its run; the records the contract refused alone are
    dead-lettered (``sync.work.filing``)."""
    if message.attempt == 0 and not is_planned(message.batch_id):
        await runs.start_message_run(work.storage.ledger, run_id_of(message.batch_id),
                                     len(message.records) + len(message.refused),
                                     work.dataverse_dep.clock.wall_s(),
                                     definition=work.named.name)
    return await file_refused(work, message)


async def _carry_out_records(work: Work, message: Message) -> MessageCounts:
    """The holds, then the message's records, then its commit (``commit``). A delivery
    whose row is there already was committed by another delivery of the message (a host that
    died before deleting it, or one still at work when its lease ran out): its records are not
    taken again, since taking them again would count them twice (``_settled``). A message
    not carried out before that arrives while its lane is closed goes back as it came
    (``closed_on_arrival``)."""
    try:
        row = await ledger.message_row(work.storage.ledger, message.batch_id, message.attempt)
        if row is not None:
            return await _settled(work, message, row)
        if (closed := closed_on_arrival(work)) is not None:
            return await send_back_until_open(work, message, closed)
        checked = await check_holds(work, message)  # paused, cancelled, or waiting for a canary
    except STORAGE_ERRORS as error:
        return await send_back_whole(work, message, error)
    if checked.message is None:
        checked.counts.definition = work.named.name
        return checked.counts
    run = MessageRun(checked.message,
                     preview=dry_run.Preview() if work.definition.dry_run else None)
    run.counts.definition = work.named.name
    await _carried_out(work, run)
    parts = remainder(work, run)
    logger.info("message %s attempt %d (%s): %d written, %d unchanged, %d dead-lettered, "
                "%d re-enqueued, %d Dataverse requests", message.batch_id, message.attempt,
                work.lane.key, run.counts.written, run.counts.unchanged,
                run.counts.dead_lettered, run.counts.reenqueued, run.counts.requests.total,
                extra={"event": "batch_done", "batch_id": message.batch_id,
                       "lane": str(work.lane.key)})
    return await commit(work, message, run.counts, parts)


async def commit(work: Work, message: Message, counts: MessageCounts,
                 parts: tuple[Outgoing, ...]) -> MessageCounts:
    """Commit the delivery: its ledger row (keeping the remainder's parts), then the parts,
    then its run completed if done (not while records of it are back on the queue). Parts too
    large for a row go first. A storage error before the row sends the message back whole;
    after it, the error is raised and the next delivery sends what the row keeps."""
    kept = parts if parts_fit(parts) else ()
    try:
        if not kept:
            await send_parts(work, parts)
        row = await ledger.commit_message(work.storage.ledger, message.batch_id,
                                          message.attempt, counts, kept)
    except STORAGE_ERRORS as error:
        return await send_back_whole(work, message, error)
    if row is not None:  # another delivery committed first: its counts and parts stand
        logger.info("message %s attempt %d was committed by another delivery; this one's "
                    "counts and remainder are dropped", message.batch_id, message.attempt,
                    extra={"event": "message_redelivered", "batch_id": message.batch_id})
        return await _settled(work, message, row)
    await _send_kept(work, message, kept)
    await _complete_unless_reenqueued(work, message, counts)
    return counts


async def _settled(work: Work, message: Message, row: Mapping[str, Any]) -> MessageCounts:
    """A delivery another one committed: the parts its row keeps unsent are sent (the same
    ids, so whichever delivery of a part commits first counts it), its counts tallied again
    (the committer may have died before its tally), and its run completed if done."""
    logger.info("message %s attempt %d was carried out already; settled", message.batch_id,
                message.attempt,
                extra={"event": "message_redelivered", "batch_id": message.batch_id})
    await _send_kept(work, message, unsent_parts(row))
    counts = counts_from(row)
    await ledger.tally(work.storage.ledger, message.batch_id, counts)
    await _complete_unless_reenqueued(work, message, counts)
    return MessageCounts(definition=work.named.name)


async def _send_kept(work: Work, message: Message, parts: tuple[Outgoing, ...]) -> None:
    """Send the parts a committed row keeps, then mark them sent."""
    if parts:
        await send_parts(work, parts)
        await ledger.parts_sent(work.storage.ledger, message.batch_id, message.attempt)


async def _complete_unless_reenqueued(work: Work, message: Message,
                                      counts: MessageCounts) -> None:
    """Complete the message's run if it is done; not while records of it are back on the
    queue."""
    if not counts.reenqueued:
        await runs.complete_if_done(work.storage.ledger, run_id_of(message.batch_id),
                                    work.dataverse_dep.clock.wall_s())


async def _carried_out(work: Work, run: MessageRun) -> None:
    """The records carried out under the pause watch and the deadline. A storage outage
    leaves the unfinished records waiting for the service; any other exception is a bug
    (``sync.work.bugs``)."""
    try:
        async with watching(work, run), deadline(work, run, work.control.clock):
            await _carry_out(work, run)
    except STORAGE_ERRORS:
        logger.exception("message %s stopped by a storage error; its unfinished records go "
                         "back on the queue", run.message.batch_id,
                         extra={"event": "batch_error", "batch_id": run.message.batch_id})
        run.wait(service_delay_s(run, work.circuit_policy))
    except Exception as error:  # a bug: counted, alerted, poisoned when due
        await settle_bug(work, run, error)


async def _carry_out(work: Work, run: MessageRun) -> None:
    async def file(record: RecordRef, fault: RecordFault | AmbiguousFault) -> None:
        if isinstance(fault, RecordFault) and await refusals.refused(work, run, record, fault):
            return  # most records meet it: the definition's fault, not this record's
        await dead_letter(work, run, record, fault)

    if held_back(work, run) or await refusals.stopped(work, run):  # pay for nothing
        return
    enriched = await enrich_all(work, run, run.message.records)
    if run.preview is not None:  # a dry run: compare and report, write nothing
        for record_id in await dry_run.settle(work.storage.reports, run.message, run.preview,
                                              enriched):
            run.previewed(record_id)
    elif enriched:
        try:
            await Writer(work, run, file).write_all(enriched)
            await refusals.settled(work, run)
        finally:  # what was written keeps its before-image, even if the writer stopped
            await before_images.keep(work.storage.before_images, run.message, run.written_ids,
                                     enriched,
                                     retention_days=work.settings.rollback_retention_days,
                                     entity_set=work.definition.entity_set,
                                     now_s=work.dataverse_dep.clock.wall_s())


