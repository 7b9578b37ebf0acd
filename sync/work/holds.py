"""Before a worker takes a message's records: is its definition or run paused or cancelled,
and how many of them may its run's canary take now.

- **paused** (or a canary holding): the records go back on the queue as a new message,
  invisible for ``SYNC_PAUSE_DELAY_S`` (plus jitter), and the invocation succeeds. It never
  raises: a raise would count a dequeue and end in the poison queue; a new message starts its
  dequeue count again, so a message paused for days is never poisoned.
- **cancelled**: the records are counted ``cancelled`` in the run's ledger (not written, not
  dead letters), so the run completes and reports them.
- A message already being written when a pause arrives is watched (``watching``): once the
  flag is seen, no new request starts, the requests in flight finish, and the unfinished
  records go back the same way (reason ``paused``, or ``cancelled`` to be counted so on their
  next delivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Final

from sync.config.canary_policy import CanaryPolicy
from sync.message.contract import Message, RecordRef
from sync.message.counts import MessageCounts
from sync.message.ids import HELD, is_planned, part_id, run_id_of
from sync.safety import canary, flags
from sync.state import ledger, runs
from sync.work.context import Work
from sync.work.message_run import MessageRun
from sync.work.requeue import send_back

logger = logging.getLogger(__name__)

JITTER_MAX_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class HoldCheck:
    """What the holds let through now (None: nothing, the message was held or cancelled), and
    the counts of what they held or cancelled."""

    message: Message | None
    counts: MessageCounts = field(default_factory=MessageCounts)


def hold_delay_s(pause_delay_s: float, rand: float) -> int:
    """Visibility delay of held records: the pause delay plus jitter, whole seconds, >= 1."""
    return max(1, int(pause_delay_s + rand * JITTER_MAX_S + 0.999))


async def check_holds(work: Work, message: Message) -> HoldCheck:
    """Apply the flags and the canary to ``message``; see the module."""
    run_id = run_id_of(message.batch_id)
    flag = await work.control.stopping(work.storage.state, message.definition, run_id)
    if flag is not None and flag.state == flags.CANCELLED:
        return await _cancel(work, message, run_id, flag.reason)
    if flag is not None:
        return HoldCheck(None, await hold(work, message, message.records, reason="paused"))
    policy = work.definition.canary
    if policy is None or not is_planned(message.batch_id) or \
            run_id in work.control.released_runs:
        return HoldCheck(message)
    return await _canary(work, message, run_id, policy)


async def _canary(work: Work, message: Message, run_id: str,
                  policy: CanaryPolicy) -> HoldCheck:
    totals = await runs.read_totals(work.storage.ledger, run_id)  # only the run's row counts
    planned = totals.run.planned if totals is not None and totals.run.plan_complete else None
    limit = policy.limit(planned)
    if limit is None:  # a percentage of a plan still paging
        return HoldCheck(None, await hold(work, message, message.records, reason="canary"))
    ids = [r.id for r in message.records]
    go, row = await canary.claim(work.storage.state, run_id, ids, limit)
    if not row.released and len(go) < len(ids):
        row = await _judged(work, row, limit, policy, message.definition)
    if row.released:
        work.control.released_runs.add(run_id)
        return HoldCheck(message)
    waiting = tuple(r for r in message.records if r.id not in go)
    if not waiting:
        return HoldCheck(message)
    if not go:
        return HoldCheck(None, await hold(work, message, waiting, reason="canary"))
    await hold(work, message, waiting, reason="canary", batch_id=_held_id(message, waiting))
    return HoldCheck(dataclasses.replace(
        message, records=tuple(r for r in message.records if r.id in go)))


async def _judged(work: Work, row: canary.CanaryRow, limit: int, policy: CanaryPolicy,
                  definition: str) -> canary.CanaryRow:
    """The canary judged (``canary.judge``). A failed canary whose pause could not be set (the
    definition's flag kept changing under it: an operator or another instance setting it) is
    logged, not raised: the run stays held by its failed canary either way, and a raise would
    count a dequeue against a message that did nothing wrong."""
    try:
        return await canary.judge(work.storage.state, work.storage.ledger, row, limit=limit,
                                  policy=policy, definition=definition,
                                  now_s=work.control.clock.wall_s())
    except flags.ControlConflict as conflict:
        logger.warning("canary of run %s: definition %s not paused: %s", row.run_id, definition,
                       conflict, extra={"event": "canary_pause_conflict", "run_id": row.run_id})
        return await canary.read_canary(work.storage.state, row.run_id) or row


def _held_id(message: Message, records: Sequence[RecordRef]) -> str:
    """The id of the records a canary left waiting: a part of its own (its ledger row is not
    the message's, which counts the records the canary let through)."""
    return part_id(message.batch_id, message.attempt, HELD, (r.id for r in records))


async def hold(work: Work, message: Message, records: Sequence[RecordRef], *,
               reason: str, batch_id: str | None = None) -> MessageCounts:
    """Put ``records`` back on the queue as a new message (same attempt), invisible for the
    pause delay; answer the counts of that (for the span and metrics; a pure hold writes no
    ledger row, so a long pause does not grow the ledger)."""
    delay_s = hold_delay_s(work.settings.pause_delay_s, random.random())  # noqa: S311
    held = dataclasses.replace(message, batch_id=batch_id or message.batch_id,
                               records=tuple(records))
    counts = await send_back(work, held, delay_s, reason)
    logger.info("message %s: %d records held (%s) for %d s", held.batch_id, len(records), reason,
                delay_s, extra={"event": "batch_held", "batch_id": held.batch_id,
                                "reason": reason})
    return counts


async def _cancel(work: Work, message: Message, run_id: str,
                  reason: str) -> HoldCheck:
    counts = MessageCounts(cancelled=len(message.records))
    await ledger.record_message(work.storage.ledger, message.batch_id, message.attempt, counts)
    logger.info("message %s: %d records cancelled (%s)", message.batch_id, len(message.records),
                reason or "-", extra={"event": "batch_cancelled", "batch_id": message.batch_id})
    await runs.complete_if_done(work.storage.ledger, run_id, work.control.clock.wall_s())
    return HoldCheck(None, counts)


@contextlib.asynccontextmanager
async def watching(work: Work, run: MessageRun) -> AsyncIterator[None]:
    """While the message is carried out, stop it when its definition or run is paused or
    cancelled (checked every cache period)."""
    task = asyncio.create_task(_watch(work, run))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _watch(work: Work, run: MessageRun) -> None:
    cache = work.control
    run_id = run_id_of(run.message.batch_id)
    while True:
        await cache.clock.sleep(cache.ttl_s)
        try:
            flag = await cache.stopping(work.storage.state, run.message.definition, run_id)
        except Exception:
            logger.exception("pause flag not read; the message goes on",
                             extra={"event": "control_read_failed"})
            continue
        if flag is not None:
            stop_sending(run, flag.state, work.settings.pause_delay_s,
                         services=(work.dataverse_dep.name, work.enrichment_dep.name))
            return


def stop_sending(run: MessageRun, state: str, pause_delay_s: float, *,
                 services: tuple[str, ...]) -> None:
    """No new request for this message to ``services`` (the names its governed calls go by:
    a definition's own enrichment endpoint has its own); its unfinished records go back after
    the delay."""
    reason = "cancelled" if state == flags.CANCELLED else "paused"
    for service in services:
        run.stopped_services[service] = reason
    run.wait(0.0 if reason == "cancelled" else pause_delay_s)
