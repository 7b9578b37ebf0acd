"""Spans: one ``PROCESS_BATCH`` per queue message, one ``PLAN`` per planner invocation.

The span is opened at the invocation boundary (sync.entry) and is the current span while the
worker or planner runs; they describe what they decoded (``describe_message``,
``describe_plan``) and the boundary adds the outcome. Without telemetry configured the tracer is
OpenTelemetry's no-op proxy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from opentelemetry import trace

from sync.message.contract import Message
from sync.message.counts import MessageCounts
from sync.message.ids import run_id_of
from sync.telemetry import metrics, names

TRACER: Final = trace.get_tracer("sync")
T = TypeVar("T")


def outcome_of(counts: MessageCounts) -> str:
    """What became of a message: poisoned, requeued (some records went back on the queue, a
    pause's or a canary's hold included), cancelled, dead_lettered (every record finished, some
    dead-lettered) or written."""
    if counts.rejected_messages:
        return "poisoned"
    if counts.cancelled and not counts.written:
        return "cancelled"
    if counts.reenqueued:
        return "requeued"
    if counts.dead_lettered:
        return "dead_lettered"
    return "written"


def describe_message(message: Message) -> None:
    """The decoded message's run, id and size, on the current span."""
    trace.get_current_span().set_attributes({
        names.RUN_ID: run_id_of(message.batch_id), names.MESSAGE_ID: message.batch_id,
        names.RECORDS: len(message.records), names.DEFINITION: message.definition})


def describe_plan(run_id: str, mode: str) -> None:
    """The plan's run and mode, on the current span."""
    trace.get_current_span().set_attributes({names.RUN_ID: run_id, names.MODE: mode})


async def traced_message(process: Callable[[], Awaitable[MessageCounts]], *, definition: str,
                         mode: str) -> MessageCounts:
    """Run ``process`` (one message) in a PROCESS_BATCH span; record its outcome's metrics."""
    with TRACER.start_as_current_span(names.PROCESS_BATCH, attributes={
            names.DEFINITION: definition, names.MODE: mode}) as span:
        try:
            counts = await process()
        except BaseException:
            span.set_attribute(names.OUTCOME, "failed")
            raise
        span.set_attribute(names.OUTCOME, outcome_of(counts))
    metrics.message_done(counts, definition=counts.definition or definition, mode=mode)
    return counts


async def traced_plan(plan: Callable[[], Awaitable[T | None]], *, definition: str) -> T | None:
    """Run one planner invocation in a PLAN span; the outcome says whether it handed on (a
    state to go on from) or completed (None)."""
    with TRACER.start_as_current_span(names.PLAN,
                                      attributes={names.DEFINITION: definition}) as span:
        try:
            state = await plan()
        except BaseException:
            span.set_attribute(names.OUTCOME, "failed")
            raise
        span.set_attribute(names.OUTCOME, "complete" if state is None else "handed_on")
    return state
