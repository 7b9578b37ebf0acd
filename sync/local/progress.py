"""Watching a local run: the ledger's counts, a progress line, the end condition."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, TextIO

from azure.data.tables.aio import TableClient
from azure.storage.queue.aio import QueueClient

from sync.budget.cluster import read_circuits
from sync.failures.circuit import CircuitView
from sync.message.counts import MessageCounts, RequestUsage
from sync.state import runs
from sync.state.ledger_rows import PLAN_KIND

POLL_S: Final = 0.5
ServiceCount = Callable[[], Awaitable[int]]
"""Records the service itself has seen written so far (the emulators' own count)."""
STALL_S: Final = 90.0
"""A run whose circuit keeps opening and that made no progress for this long is blocked."""
PLAIN_LINE_EVERY_S: Final = 5.0
BAR_WIDTH: Final = 30


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The run as the ledger and the queue show it at one moment."""

    planned: int
    plan_complete: bool
    counts: MessageCounts
    queued_messages: int
    elapsed_s: float
    circuits: dict[str, CircuitView] = field(default_factory=dict)
    """The circuits that have opened and not yet closed, by dependency."""
    requests: RequestUsage = field(default_factory=RequestUsage)
    """The run's Dataverse requests: the planner's and the workers'."""

    @property
    def done(self) -> int:
        """Records done: written, dead-lettered, unchanged, cancelled, or settled by a dry run."""
        return self.counts.done

    @property
    def finished(self) -> bool:
        return self.plan_complete and self.done >= self.planned and self.queued_messages == 0

    @property
    def blocked_by(self) -> str:
        """What the open circuits say, or "" when none is open."""
        return "; ".join(f"{name}: {view.reason}" for name, view in sorted(self.circuits.items()))

    @property
    def rate_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0


def progress_line(snapshot: Snapshot) -> str:
    """``[#######-----]  4,000/10,000 records  40%  812 rec/s  throttled 3``"""
    total = max(snapshot.planned, 1)
    share = min(snapshot.done / total, 1.0)
    filled = int(share * BAR_WIDTH)
    plan = "" if snapshot.plan_complete else " (planning)"
    return (f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {snapshot.done:,}/"
            f"{snapshot.planned:,} records{plan} {share:4.0%}  {snapshot.rate_per_s:,.0f} rec/s"
            f"  requeued {snapshot.counts.reenqueued:,}  429s {snapshot.counts.throttled:,}"
            + (f"  circuit open ({', '.join(sorted(snapshot.circuits))})"
               if snapshot.circuits else ""))


async def snapshot(table: TableClient, queue: QueueClient, started_s: float,
                   state: TableClient | None = None, expected_runs: int = 1, *,
                   exact: bool = False) -> Snapshot:
    """Read the local run (the latest plan's run, read as ``sync status`` reads it; with
    ``expected_runs`` above one, every plan's run added up: one per sync definition), the queue
    and (with ``state``) the circuits once. The counts are the processes' tallies while they
    say the run is incomplete, and the message rows' exact sum after, or with ``exact``."""
    if expected_runs > 1:
        found = await _plan_runs(table, exact)
    else:
        run_id = await runs.latest_run_id(table, PLAN_KIND)
        totals = await runs.read_current(table, run_id, exact=exact) if run_id else None
        found = [totals] if totals else []
    properties = await queue.get_queue_properties()
    planned, complete, counts, requests = added_up(found, expected_runs)
    return Snapshot(planned=planned, plan_complete=complete, counts=counts,
                    queued_messages=properties.approximate_message_count or 0,
                    elapsed_s=time.monotonic() - started_s,
                    circuits=await _open_circuits(state) if state is not None else {},
                    requests=requests)


def added_up(found: list[runs.RunTotals],
             expected_runs: int) -> tuple[int, bool, MessageCounts, RequestUsage]:
    """Planned, whether every plan is complete (``expected_runs`` of them at least), the
    counts and the requests of several runs together."""
    counts, requests = MessageCounts(), RequestUsage()
    for totals in found:
        counts.add(totals.counts)
        requests.add(totals.requests)
    complete = len(found) >= expected_runs and all(t.run.plan_complete for t in found)
    return sum(t.run.planned for t in found), complete, counts, requests


async def _plan_runs(table: TableClient, exact: bool) -> list[runs.RunTotals]:
    """Every plan's run the ledger holds (the local stack's storage is fresh each run)."""
    found = []
    rows = table.query_entities(f"PartitionKey eq '{runs.INDEX_PREFIX}{PLAN_KIND}'",
                                select=["RunId"])
    run_ids = {str(entity["RunId"]) async for entity in rows}
    for run_id in sorted(run_ids):
        totals = await runs.read_current(table, run_id, exact=exact)
        if totals is not None:
            found.append(totals)
    return found


async def _open_circuits(state: TableClient) -> dict[str, CircuitView]:
    return {name: view for name, view in (await read_circuits(state)).items() if view.trips}


class ProgressPrinter:
    """A redrawn bar on a terminal; a plain line every few seconds otherwise (CI logs)."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last_plain_s = 0.0

    def show(self, snapshot: Snapshot) -> None:
        line = progress_line(snapshot)
        if self._tty:
            self._stream.write(f"\r{line}\x1b[K")
        elif time.monotonic() - self._last_plain_s >= PLAIN_LINE_EVERY_S or snapshot.finished:
            self._stream.write(line + "\n")
            self._last_plain_s = time.monotonic()
        self._stream.flush()

    def close(self) -> None:
        if self._tty:
            self._stream.write("\n")
            self._stream.flush()


async def watch(table: TableClient, queue: QueueClient, timeout_s: float,
                printer: ProgressPrinter | None, healthy: Callable[[], bool], *,
                timeline: list[tuple[float, int]] | None = None,
                state: TableClient | None = None, stall_s: float = STALL_S,
                expected_runs: int = 1, service_written: ServiceCount | None = None,
                service_timeline: list[tuple[float, int]] | None = None) -> Snapshot:
    """Poll until the run is finished, ``timeout_s`` passes, ``healthy()`` turns false, or
    (with ``state``) a circuit stays open with no progress for ``stall_s``: blocked. With
    ``expected_runs`` (one per sync definition) the run is that many plans' runs together.

    Each poll's (elapsed seconds, records done) is appended to ``timeline`` when given. With
    ``service_written`` and ``service_timeline``, each poll also appends (elapsed seconds,
    records the service saw written plus those the ledger found unchanged): the ledger counts a
    message's records when the whole message is done, the service each write as it lands.
    """
    started_s = time.monotonic()
    progress = (-1, started_s)
    while True:
        current = await snapshot(table, queue, started_s, state, expected_runs)
        if timeline is not None:
            timeline.append((round(current.elapsed_s, 2), current.done))
        if service_written is not None and service_timeline is not None:
            service_timeline.append((round(current.elapsed_s, 2),
                                     await service_written() + current.counts.unchanged))
        if printer is not None:
            printer.show(current)
        if current.done != progress[0]:
            progress = (current.done, time.monotonic())
        stalled = bool(current.circuits) and time.monotonic() - progress[1] > stall_s
        if current.finished:
            return current
        if current.elapsed_s > timeout_s or not healthy() or stalled:
            return await snapshot(table, queue, started_s, state, expected_runs, exact=True)
        await asyncio.sleep(POLL_S)
