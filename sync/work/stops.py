"""What stops a message before it pays for anything, and when it stops before its time runs out.

- **Before paying**: a lane whose throttle gate is closed, or whose circuit is open, for longer
  than ``SYNC_MAX_WAIT_S`` would refuse every write of the message; enriching its records first
  would pay the enrichment API for answers nobody writes. So the message is deferred whole
  before the enrichment phase: its records go back on the queue for the time left (to another
  open lane of the definition when there is one), carrying whatever they carried. When no other
  lane is open as the message arrives (``closed_on_arrival``), it goes back as it came, the same
  id and attempt, before its holds and its commit: under a long throttle the host keeps taking
  the messages behind it, and each then costs its ledger read and one send instead of a row,
  its parts and a tally.
- **The deadline** (``SYNC_MESSAGE_DEADLINE_S``, below the host's ``functionTimeout``): once it
  passes, no new request starts (every governed call asks ``MessageRun.stop_delay`` first), the
  requests in flight finish, and the unfinished records go back on the queue with the reason
  ``deadline``, at once: the invocation then ends in time instead of being cut off by the host.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Final

from sync.budget import routing
from sync.budget.governor import GATE_CODE
from sync.clients.dataverse import SERVICE as DATAVERSE
from sync.clock import Clock
from sync.failures.errors import Deferred, Throttled
from sync.work.context import Work
from sync.work.message_run import MessageRun

logger = logging.getLogger(__name__)

DEADLINE: Final = "deadline"
"""Why records a message could not finish before its deadline go back on the queue."""


def closed_lane(work: Work) -> Deferred | None:
    """The lane's gate or circuit, when it holds every write back for longer than a request
    may wait (or a probe is pending: back in a second, ``Circuit.holds_for_s``); None when the
    lane may be written to now."""
    dependency = work.dataverse_dep
    gate_s = dependency.governor.gate_remaining_s()
    if gate_s > dependency.governor.max_wait_s:
        return Throttled(DATAVERSE, gate_s, GATE_CODE)
    circuit = dependency.circuit
    if circuit.probe_pending() or circuit.open_for_s() > dependency.governor.max_wait_s:
        return circuit.refusal()
    return None


def closed_on_arrival(work: Work) -> Deferred | None:
    """The lane's gate or circuit when it holds every write back for longer than a request may
    wait and no other lane of the definition is open to take the message; else None."""
    closed = closed_lane(work)
    if closed is None or routing.away_from(work.lane, work.lanes) is not None:
        return None
    return closed


def held_back(work: Work, run: MessageRun) -> bool:
    """Whether the message is deferred whole before its records are enriched (see the
    module); a deferred message's records all go back on the queue."""
    closed = closed_lane(work)
    if closed is None:
        return False
    run.deferred(closed)
    logger.info("message %s: lane %s closed for %.0f s; nothing enriched, the records go back",
                run.message.batch_id, work.lane.key, closed.retry_after_s,
                extra={"event": "batch_held_back", "batch_id": run.message.batch_id})
    return True


@contextlib.asynccontextmanager
async def deadline(work: Work, run: MessageRun, clock: Clock) -> AsyncIterator[None]:
    """While the message is carried out, stop its new requests once the message's deadline
    (``SYNC_MESSAGE_DEADLINE_S`` from now on ``clock``) passed."""
    services = (work.dataverse_dep.name, work.enrichment_dep.name)
    timer = clock.call_later(work.settings.message_deadline_s,
                             lambda: stop_at_deadline(run, services))
    try:
        yield
    finally:
        timer.cancel()


def stop_at_deadline(run: MessageRun, services: tuple[str, ...]) -> None:
    """No new request to ``services`` for this message; its unfinished records go back at
    once."""
    logger.warning("message %s reached its deadline; its unfinished records go back",
                   run.message.batch_id,
                   extra={"event": "batch_deadline", "batch_id": run.message.batch_id})
    for service in services:
        run.stopped_services[service] = DEADLINE
