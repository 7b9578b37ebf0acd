"""Watching a local run: the ledger's counts, a progress line, the end condition.

The poll lives through a storage outage of any length: it says ``storage unreachable since
...`` (again every half minute) and tries again with a back-off; the run's time limit still
holds. A run is blocked only as ``sync.local.blocked`` says: a circuit open, no progress for
``stall_s``, and the back-off in force then come round with its probe failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final, TextIO

from azure.data.tables.aio import TableClient
from azure.storage.queue.aio import QueueClient

from sync.budget.cluster import read_circuits
from sync.failures.circuit import CircuitView
from sync.local.blocked import BlockedJudge
from sync.local.outage import STORAGE_ERRORS, Outage
from sync.message.counts import MessageCounts, RequestUsage
from sync.state import runs
from sync.state.ledger_rows import PLAN_KIND

POLL_S: Final = 0.5
ServiceCount = Callable[[], Awaitable[int]]
"""Records the service itself has seen written so far (the emulators' own count)."""
STALL_S: Final = 90.0
"""A run with a circuit open and no progress for this long is blocked once the circuit's
back-off in force then has come round without progress (``sync.local.blocked``)."""
READ_TIMEOUT_S: Final = 15.0
"""One poll's storage reads give up after this long (the SDK's own retries take minutes when
storage hangs), and count as an outage."""
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
    blocked: str = ""
    """The fault that blocks the run, as its circuit held it when the watch judged the run
    blocked (``sync.local.blocked``); "" when it was not."""

    @property
    def done(self) -> int:
        """Records done: written, dead-lettered, unchanged, cancelled, or settled by a dry run."""
        return self.counts.done

    @property
    def finished(self) -> bool:
        return self.plan_complete and self.done >= self.planned and self.queued_messages == 0

    @property
    def blocked_by(self) -> str:
        """What blocks the run: the watch's verdict, else what the circuits open now say, or
        "" when none is open."""
        return self.blocked or "; ".join(f"{name}: {view.reason}"
                                         for name, view in sorted(self.circuits.items()))

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

    def say(self, line: str) -> None:
        """A line of its own (an outage, a host that ended), between two progress lines."""
        self._stream.write(("\r\x1b[K" if self._tty else "") + line + "\n")
        self._stream.flush()

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


@dataclass(frozen=True, slots=True)
class Poll:
    """Where to read a run: the ledger, the batches queue, the circuits (optional), and how
    many plans' runs it is (one per sync definition)."""

    table: TableClient
    queue: QueueClient
    state: TableClient | None = None
    expected_runs: int = 1

    async def read(self, started_s: float, *, exact: bool = False) -> Snapshot:
        """One snapshot, or ``TimeoutError`` after ``READ_TIMEOUT_S``."""
        return await asyncio.wait_for(snapshot(self.table, self.queue, started_s, self.state,
                                               self.expected_runs, exact=exact),
                                      READ_TIMEOUT_S)


async def watch(table: TableClient, queue: QueueClient, timeout_s: float,
                printer: ProgressPrinter | None, healthy: Callable[[], bool], *,
                timeline: list[tuple[float, int]] | None = None,
                state: TableClient | None = None, stall_s: float = STALL_S,
                expected_runs: int = 1, service_written: ServiceCount | None = None,
                service_timeline: list[tuple[float, int]] | None = None) -> Snapshot:
    """Poll until the run is finished, ``timeout_s`` passes, ``healthy()`` turns false (no
    host left), or (with ``state``) the circuits say it is blocked (``sync.local.blocked``,
    after ``stall_s`` without progress). With ``expected_runs`` (one per sync definition) the
    run is that many plans' runs together. A storage outage is waited out (within
    ``timeout_s``).

    Each poll's (elapsed seconds, records done) is appended to ``timeline`` when given. With
    ``service_written`` and ``service_timeline``, each poll also appends (elapsed seconds,
    records the service saw written plus those the ledger found unchanged): the ledger counts a
    message's records when the whole message is done, the service each write as it lands.
    """
    started_s = time.monotonic()
    poll = Poll(table, queue, state, expected_runs)
    outage = Outage(printer.say if printer is not None else _to_stderr)
    judge = BlockedJudge(stall_s, started_s)
    last: Snapshot | None = None
    while True:
        try:
            current = await poll.read(started_s)
        except STORAGE_ERRORS as error:
            delay_s = outage.failed(error)
            if time.monotonic() - started_s > timeout_s:
                return _gave_up(last, outage)
            await asyncio.sleep(delay_s)
            continue
        outage.succeeded()
        last = current
        await _record(current, timeline, service_written, service_timeline)
        if printer is not None:
            printer.show(current)
        blocked = judge.observe(current.done, current.circuits, time.monotonic())
        if current.finished:
            return current
        if current.elapsed_s > timeout_s or not healthy() or blocked:
            return dataclasses.replace(await _final(poll, started_s, current, outage),
                                       blocked=blocked)
        await asyncio.sleep(POLL_S)


async def _record(current: Snapshot, timeline: list[tuple[float, int]] | None,
                  service_written: ServiceCount | None,
                  service_timeline: list[tuple[float, int]] | None) -> None:
    if timeline is not None:
        timeline.append((round(current.elapsed_s, 2), current.done))
    if service_written is not None and service_timeline is not None:
        service_timeline.append((round(current.elapsed_s, 2),
                                 await service_written() + current.counts.unchanged))


async def _final(poll: Poll, started_s: float, last: Snapshot, outage: Outage) -> Snapshot:
    """The exact counts at the end; the last poll's if storage is away now."""
    try:
        return await poll.read(started_s, exact=True)
    except STORAGE_ERRORS as error:
        outage.failed(error)
        return last


def _gave_up(last: Snapshot | None, outage: Outage) -> Snapshot:
    """The time ran out while storage was away: the last snapshot seen, or a RuntimeError
    that says why there is none."""
    if last is None:
        raise RuntimeError(f"no run could be read: {outage.line()}")
    return last


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
