"""Systematic record faults stop the line: when most of a definition's records meet the same
refusal (``sync.failures.systematic``), its circuit opens with the reason, and nothing more is
dead-lettered for it.

- A write refused for a record (a 4xx of its own) is counted: in this process's window of the
  definition's outcomes, and, once per record, in the cluster's count of that refusal
  (``sync.state.systematic_row``). While the count is at most ``SYNC_SYSTEMATIC_RECORDS`` (or
  the refusal is under ``SYNC_SYSTEMATIC_SHARE`` of the records tried), the record is
  dead-lettered as before. Past both, the definition's circuit opens (``circuit/definition:
  <name>``, the reason naming the refusal): the record waits on the queue (reason
  ``systematic_fault``), and the message stops its writes.
- While the circuit is open, a message of the definition is sent back before anything is
  enriched or written. After the back-off, writes go again; the first refusal of the same kind
  opens it again, longer (``SYNC_CIRCUIT_OPEN_S`` doubling up to ``SYNC_CIRCUIT_MAX_OPEN_S``),
  without a dead letter; a message that writes without meeting it closes the circuit.
- So a run whose mapping the table refuses reports itself blocked (``sync status``, the local
  stack's summary) with at most the threshold dead-lettered; those dead letters are replayed
  (``sync deadletters replay``) once the mapping is fixed.

Only the write phase counts: an enrichment's own refusals (no match, an input it cannot use)
are each record's.
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from dataclasses import dataclass, field

from azure.data.tables.aio import TableClient

from sync.failures.errors import CircuitOpen, RecordFault
from sync.failures.systematic import SystematicPolicy, Window, is_systematic, signature_of
from sync.message.contract import RecordRef
from sync.state.storage import STORAGE_ERRORS
from sync.state.systematic_row import SystematicRow, SystematicView, digest
from sync.telemetry import metrics
from sync.work.context import Work
from sync.work.message_run import MessageRun

logger = logging.getLogger(__name__)

SYSTEMATIC = "systematic_fault"
"""Why records a definition's systematic fault holds back wait on the queue."""


@dataclass(slots=True)
class Line:
    """One definition's line in this process: its window, its row, the row as last read."""

    row: SystematicRow
    window: Window
    seen: SystematicView = field(default_factory=SystematicView)
    seen_at_s: float = float("-inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One refusal judged at a time in this process (the others of the burst then find the
    circuit open instead of racing for the count)."""


_LINES: weakref.WeakKeyDictionary[TableClient, dict[str, Line]] = weakref.WeakKeyDictionary()


def policy_of(work: Work) -> SystematicPolicy:
    settings = work.settings
    return SystematicPolicy(settings.systematic_records, settings.systematic_share,
                            settings.systematic_window_s)


def line_of(work: Work) -> Line:
    """The line of the message's definition in this process (one per state table client)."""
    lines = _LINES.setdefault(work.storage.state, {})
    name = work.named.name
    if name not in lines:
        lines[name] = Line(SystematicRow(work.storage.state, name),
                           Window(work.settings.systematic_window_s))
    return lines[name]


async def _view(work: Work, line: Line, now_s: float) -> SystematicView:
    """The row as read at most a refresh period ago."""
    if now_s - line.seen_at_s >= work.settings.state_refresh_s:
        line.seen, line.seen_at_s = await line.row.read(), now_s
    return line.seen


async def stopped(work: Work, run: MessageRun) -> bool:
    """Before the records are enriched: whether the definition's circuit is open (the message
    then goes back whole, for the time left)."""
    now_s = work.dataverse_dep.clock.wall_s()
    try:
        view = await _view(work, line_of(work), now_s)
    except STORAGE_ERRORS:
        logger.exception("systematic-fault circuit not read; the message goes on",
                         extra={"event": "systematic_read_failed"})
        return False
    if view.open_for_s(now_s) <= 0:
        return False
    run.deferred(CircuitOpen(work.dataverse_dep.name, view.open_for_s(now_s), view.reason))
    return True


async def refused(work: Work, run: MessageRun, record: RecordRef, fault: RecordFault) -> bool:
    """A write refused for ``record``: True when the refusal is systematic (the record waits
    and the message stops writing), False when it is the record's own (dead-letter it)."""
    signature = signature_of(fault)
    if signature is None:
        return False
    line = line_of(work)
    now_s = work.dataverse_dep.clock.wall_s()
    line.window.refused(now_s, signature)
    try:
        async with line.lock:
            view = await _judged(work, run, line, signature, fault, now_s=now_s)
    except STORAGE_ERRORS:
        logger.exception("systematic-fault count not kept; the record is judged alone",
                         extra={"event": "systematic_count_failed"})
        return False
    if view is None:
        return False
    run.failed(record, fault, reason=SYSTEMATIC)
    run.deferred(CircuitOpen(work.dataverse_dep.name, max(1.0, view.open_for_s(now_s)),
                             view.reason))
    return True


async def _judged(work: Work, run: MessageRun, line: Line, signature: str, fault: RecordFault, *,
                  now_s: float) -> SystematicView | None:
    """The circuit's row when the refusal is systematic (opened, or open again after its
    back-off); None when it is the record's."""
    view = await _view(work, line, now_s)
    if view.trips and view.signature == digest(signature):  # known: open, or its probe failed
        return view if view.open_for_s(now_s) > 0 else await _trip(work, line, signature,
                                                                 view.reason, now_s)
    count = await line.row.count(signature, now_s, work.settings.systematic_window_s)
    if not count:  # the row kept moving: the others counted, or opened it meanwhile
        line.seen, line.seen_at_s = await line.row.read(), now_s
        if line.seen.signature == digest(signature) and line.seen.open_for_s(now_s) > 0:
            return line.seen
        count = max(line.seen.counts.get(digest(signature), 0) + 1,
                    line.window.count(now_s, signature))
    share = line.window.share(now_s, signature, run.counts.written)
    if not is_systematic(count, share, policy_of(work)):
        return None
    reason = (f"{work.named.name}: {count} records refused alike ({share:.0%} of those tried "
              f"here): {fault.status} {fault.code} {fault.message}")
    metrics.systematic_fault(work.named.name, f"{fault.status} {fault.code}")
    return await _trip(work, line, signature, reason, now_s)


async def _trip(work: Work, line: Line, signature: str, reason: str,
                now_s: float) -> SystematicView:
    trips = line.seen.trips + 1
    open_s = work.circuit_policy.open_for_s(trips, random.random())  # noqa: S311 (jitter)
    view = await line.row.trip(signature, reason, now_s + open_s)
    line.seen, line.seen_at_s = view, now_s
    logger.error("definition %s: its circuit opens for %.0f s (opening %d): %s",
                 work.named.name, view.open_for_s(now_s), view.trips, view.reason,
                 extra={"event": "systematic_fault", "definition": work.named.name})
    return view


async def settled(work: Work, run: MessageRun) -> None:
    """After a message's writes: its written records join the window; a message that wrote
    without meeting the refusal closes a circuit whose back-off is over."""
    line = line_of(work)
    now_s = work.dataverse_dep.clock.wall_s()
    line.window.written(now_s, run.counts.written)
    seen = line.seen
    if not (run.counts.written and seen.trips and seen.open_for_s(now_s) <= 0) or \
            SYSTEMATIC in run.reasons.values():
        return
    try:
        await line.row.close(seen)
    except STORAGE_ERRORS:
        logger.exception("systematic-fault circuit not closed",
                         extra={"event": "systematic_close_failed"})
        return
    line.seen_at_s = float("-inf")
    logger.info("definition %s: writes go again; its circuit closed", work.named.name,
                extra={"event": "systematic_closed", "definition": work.named.name})
