"""What goes back on the queue when a message cannot finish now: its unfinished records, each
with its history, in fresh messages, to this lane after the delay the faults asked for or to
whichever lane of the definition is open. Each message sent back is a part with an id of its own
(``sync.message.ids.part_id``), so its ledger row is its own."""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections import Counter
from collections.abc import Iterable
from typing import Final

from sync.budget import routing
from sync.budget.lane import Lane
from sync.clients.dataverse import SERVICE as DATAVERSE
from sync.failures.errors import Deferred
from sync.message.contract import (
    NEVER_EXPIRE,
    RECORDS_BUDGET_BYTES,
    Message,
    RecordRef,
    fitting_groups,
    record_size_bytes,
)
from sync.message.counts import MessageCounts
from sync.message.ids import REMAINDER, part_id
from sync.message.outgoing import Outgoing
from sync.work.context import Work
from sync.work.message_run import THROTTLED, MessageRun, deferral_reason

logger = logging.getLogger(__name__)


STORAGE_UNAVAILABLE: Final = "storage_unavailable"
"""Why a message storage refused goes back whole."""
REQUEUE_JITTER_MAX_S: Final = 2.0
"""Spread added to the delay of work a fault sent back (a circuit's, a service fault's), so
that it does not all return in the same second; a throttle's is not spread (``delay_for``)."""


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


def throttle_delay_s(retry_after_s: float) -> int:
    """Visibility delay of work a throttle sent back: its Retry-After, in whole seconds, with
    no jitter. The service named the wait; the request slots, not a spread, keep the returning
    messages from crowding it (they enter within the DOP hint whenever they arrive), and every
    second added is execution time the window frees that nobody uses: on one instance, a
    second or two after every throttle."""
    return max(1, math.ceil(retry_after_s))


def delay_for(wait_s: float, reasons: Iterable[str]) -> int:
    """The visibility delay of records that wait ``wait_s`` for ``reasons``: a throttle's
    exactly, any other wait jittered."""
    if set(reasons) == {THROTTLED}:
        return throttle_delay_s(wait_s)
    return requeue_delay_s(wait_s, random.random())  # noqa: S311 (jitter)


def group_size(run: MessageRun, records: int) -> int:
    """Records per message sent back: all in one (split only to fit the queue), or half of
    them each when an unexpected error stopped the message (``sync.work.bugs``)."""
    return max(1, math.ceil(records / 2)) if run.halved else records


def travelling(record: RecordRef) -> RecordRef:
    """The record as it goes back: with its enriched values while it fits a message alone,
    else without them (they are asked again rather than lose the record)."""
    if record.enriched is None or record_size_bytes(record) <= RECORDS_BUDGET_BYTES:
        return record
    return dataclasses.replace(record, enriched=None)


def remainder(work: Work, run: MessageRun) -> tuple[Outgoing, ...]:
    """The messages that carry the unfinished records back (none when every record is done),
    counted as re-enqueued; ``send_parts`` sends them, after the delivery's ledger row keeps
    them (``sync.work.worker``)."""
    remaining = run.unfinished()
    if not remaining:
        return ()
    lane, wait_s = next_lane(work, run)
    reasons = Counter(run.reason_unfinished(record.id) for record in remaining)
    delay_s = delay_for(wait_s, reasons)
    parent = run.message
    parts = tuple(
        Outgoing(Message(batch_id=part_id(parent.batch_id, parent.attempt, REMAINDER,
                                          (r.id for r in group)),
                         records=group, attempt=parent.attempt + 1,
                         definition=parent.definition,
                         lane=lane.key.wire if lane is not None else None,
                         read_at=parent.read_at).to_json(), delay_s)
        for group in fitting_groups(map(travelling, remaining), group_size(run, len(remaining))))
    if lane is None:
        logger.info("message %s: %d records routed away from lane %s to any open lane",
                    run.message.batch_id, len(remaining), work.lane.key,
                    extra={"event": "lane_routed", "from_lane": str(work.lane.key)})
    run.counts.reenqueued_by_reason.update(reasons)
    run.counts.reenqueued += len(remaining)
    run.counts.requeue_delay_s += delay_s
    logger.info("message %s: %d records back on the queue in %d s (%s)", run.message.batch_id,
                len(remaining), delay_s, dict(reasons),
                extra={"event": "batch_requeued", "reasons": dict(reasons)})
    return parts


async def send_parts(work: Work, parts: tuple[Outgoing, ...]) -> None:
    for part in parts:
        await work.storage.batches.send_message(part.body, visibility_timeout=part.visibility_s,
                                                time_to_live=NEVER_EXPIRE)


async def send_back(work: Work, message: Message, delay_s: int, reason: str) -> MessageCounts:
    """Send ``message`` back on the queue as it is, invisible for ``delay_s``; answer its
    records counted as re-enqueued for ``reason``."""
    await send_parts(work, (Outgoing(message.to_json(), delay_s),))
    return MessageCounts(reenqueued=len(message.records), requeue_delay_s=delay_s,
                         reenqueued_by_reason=Counter({reason: len(message.records)}))


async def send_back_until_open(work: Work, message: Message,
                               closed: Deferred) -> MessageCounts:
    """A message that arrives while its lane is closed for longer than a request may wait
    (``sync.work.stops.closed_on_arrival``): sent back as it is, the same id and attempt (none
    of its records was taken, and a second copy of it commits once, by its ledger row),
    invisible until the lane opens (a closed gate's time exactly, an open circuit's with the
    jitter of any re-enqueued work)."""
    reason = deferral_reason(closed)
    delay_s = delay_for(closed.retry_after_s, (reason,))
    logger.info("message %s: lane %s closed for %.0f s; sent back as it came for %d s",
                message.batch_id, work.lane.key, closed.retry_after_s, delay_s,
                extra={"event": "batch_held_back", "batch_id": message.batch_id})
    return await send_back(work, message, delay_s, reason)


async def send_back_whole(work: Work, message: Message, error: BaseException) -> MessageCounts:
    """A message whose storage calls failed before its records were taken (or whose ledger row
    could not be written after): sent back as it is (the same id and attempt, so its ledger row
    and parts are the same when it is done), invisible for a service fault's back-off. The
    host deletes the delivery, so an outage counts no dequeue against it; if the queue refuses
    too, the error is raised and the host delivers the message again."""
    delay_s = requeue_delay_s(work.circuit_policy.open_for_s(message.attempt + 1,
                                                              random.random()),  # noqa: S311
                              random.random())  # noqa: S311 (jitter)
    logger.warning("message %s: storage unavailable (%s); sent back whole for %d s",
                   message.batch_id, type(error).__name__, delay_s,
                   extra={"event": "batch_storage_unavailable", "batch_id": message.batch_id})
    return await send_back(work, message, delay_s, STORAGE_UNAVAILABLE)
