"""What a run is, when it completes, and who says so.

- A **run** is one planner run (``run-<time>-<hex>``), or one producer's message, which is its
  own run (``sync.message.ids.run_id_of``). Its row and its messages' rows share one
  partition of the ledger (``sync.state.ledger``), so its totals are one partition query.
- The planner records what it planned; a producer's run plans the records of its first
  delivery (attempt 0). ``run_planned`` is emitted when the plan is complete.
- A run **completes** when its plan is complete and written + dead-lettered + unchanged +
  cancelled (+ previewed, in a dry run) reach planned; records re-enqueued (held by a pause or
  a canary too) are still open. Whoever sees that (the worker after a message's row, the
  planner after its last page) claims the completion with an ETag-conditional update of the
  run's row: exactly one of them wins and emits ``run_completed`` (duration: plan start to the
  claim). An instance that dies between its claim and the event loses that one event.
- A plan that starts while the previous plan's run is incomplete **overlaps** it: it emits
  ``run_overlapped``, and both rows say so (``PreviousRunId``, ``OverlappedBy``) for status.
- An index partition per kind (``index:plan``, ``index:message``), keyed by inverted start
  time, finds the latest run with one read.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.message.counts import MessageCounts, RequestUsage
from sync.state.ledger_rows import (
    MESSAGE_KIND,
    PLAN_KIND,
    RUN_ROW,
    counts_from,
    is_message_row,
    run_partition,
)
from sync.state.manifests import plan_usage_from
from sync.state.tallies import TALLY_END, TALLY_PREFIX, is_tally_row
from sync.telemetry import names
from sync.telemetry.events import emit

logger = logging.getLogger(__name__)

INDEX_PREFIX: Final = "index:"
_INDEX_TOP_S: Final = 9_999_999_999
CLAIM_ATTEMPTS: Final = 5
"""Reads and claims before a completer gives up (each lost race re-reads the row)."""


@dataclass(frozen=True, slots=True)
class RunRow:
    """A run's row: its plan, its start, its completion, its overlaps."""

    run_id: str
    kind: str
    planned: int
    batches: int
    plan_complete: bool
    started_s: float
    tallied: bool = False
    """Its messages are tallied (``sync.state.ledger``): a plan's run started since tallies
    exist."""
    completed: bool = False
    completed_s: float = 0.0
    previous_run_id: str = ""
    """The incomplete run this one's plan started beside."""
    overlapped_by: str = ""
    """The run whose plan started while this one was incomplete."""
    etag: str = ""
    plan_requests: RequestUsage = field(default_factory=RequestUsage)
    """The planner's Dataverse requests (its page reads and their retries)."""
    definition: str = names.DEFAULT_DEFINITION
    """The sync definition the run belongs to."""
    checked_tally: int = 0
    """What the tallies said was done when the exact sum last found the run incomplete
    (``checked_done`` then): 0 when it never did."""
    checked_done: int = 0
    """What the exact sum found done at that check."""

    @property
    def overlapped(self) -> bool:
        return bool(self.previous_run_id or self.overlapped_by)


@dataclass(frozen=True, slots=True)
class RunTotals:
    """A run's row and the sum of its messages' rows."""

    run: RunRow
    counts: MessageCounts
    exact: bool = True
    """The sum of the message rows; False: the sum of the processes' tallies, which may count
    a message processed twice (``sync.state.ledger``)."""

    @property
    def done(self) -> int:
        """Records written, dead-lettered, unchanged, cancelled, or settled by a dry run."""
        return self.counts.done

    @property
    def requests(self) -> RequestUsage:
        """Every Dataverse request the run consumed: the planner's and the workers'."""
        total = RequestUsage()
        total.add(self.run.plan_requests)
        total.add(self.counts.requests)
        return total

    @property
    def open(self) -> int:
        """Records planned and not yet done: on a queue or in flight."""
        return max(0, self.run.planned - self.done)


def is_complete(run: RunRow, counts: MessageCounts) -> bool:
    """Complete: the plan is complete and every planned record is written, dead-lettered,
    unchanged or cancelled (or, in a dry run, settled: would change, unchanged or failed)."""
    return run.plan_complete and counts.done >= run.planned


def may_be_complete(totals: RunTotals) -> bool:
    """Whether a run may be complete as its tallies say: complete by them, and, once an exact
    sum found it incomplete, the tallies grown since by at least the records that sum found
    missing (tallies count what was done since, or more: a message counted twice; never
    less), so one message counted twice does not send every later check to the exact sum."""
    run, done = totals.run, totals.counts.done
    if not is_complete(run, totals.counts):
        return False
    return done - run.checked_tally >= run.planned - run.checked_done


def index_key(started_s: float, run_id: str) -> str:
    """The index row key: the latest start sorts first."""
    return f"{_INDEX_TOP_S - int(started_s):010d}|{run_id}"


def run_row_from(entity: Mapping[str, Any], etag: str = "") -> RunRow:
    return RunRow(run_id=str(entity["RunId"]), kind=str(entity.get("Kind", PLAN_KIND)),
                  planned=int(entity.get("Planned", 0)), batches=int(entity.get("Batches", 0)),
                  plan_complete=bool(entity.get("PlanComplete", False)),
                  started_s=float(entity.get("StartedAt", 0.0)),
                  tallied=bool(entity.get("Tallied", False)),
                  completed=bool(entity.get("Completed", False)),
                  completed_s=float(entity.get("CompletedAt", 0.0)),
                  previous_run_id=str(entity.get("PreviousRunId", "")),
                  overlapped_by=str(entity.get("OverlappedBy", "")), etag=etag,
                  plan_requests=plan_usage_from(entity),
                  definition=str(entity.get("Definition", names.DEFAULT_DEFINITION)),
                  checked_tally=int(entity.get("CheckedTally", 0)),
                  checked_done=int(entity.get("CheckedDone", 0)))


async def read_run(table: TableClient, run_id: str) -> RunTotals | None:
    """A run's row and totals (one partition query); None when there is no such run."""
    run: RunRow | None = None
    counts = MessageCounts()
    async for entity in table.query_entities(f"PartitionKey eq '{_quoted(run_partition(run_id))}'"):
        if is_message_row(entity):
            counts.add(counts_from(entity))
        elif entity["RowKey"] == RUN_ROW:
            run = run_row_from(entity, entity.metadata["etag"] or "")
    return None if run is None else RunTotals(run, counts)


async def read_totals(table: TableClient, run_id: str) -> RunTotals | None:
    """A run's row and totals as the processes' tallies give them (one short query), for a
    run whose messages are tallied; else ``read_run``. Cheap whatever the run's size, and
    never short: a message processed twice may count twice."""
    run: RunRow | None = None
    counts = MessageCounts()
    query = (f"PartitionKey eq '{_quoted(run_partition(run_id))}' and (RowKey eq '{RUN_ROW}' "
             f"or (RowKey ge '{TALLY_PREFIX}' and RowKey lt '{TALLY_END}'))")
    async for entity in table.query_entities(query):
        if is_tally_row(entity):
            counts.add(counts_from(entity))
        else:
            run = run_row_from(entity, entity.metadata["etag"] or "")
    if run is None:
        return None
    if not run.tallied:
        return await read_run(table, run_id)
    return RunTotals(run, counts, exact=False)


async def read_current(table: TableClient, run_id: str, *,
                       exact: bool = False) -> RunTotals | None:
    """A run's totals read as cheaply as they can be trusted: the tallies while they say it is
    incomplete (``may_be_complete``), the exact sum once they say it may be complete (or with
    ``exact``)."""
    if exact:
        return await read_run(table, run_id)
    totals = await read_totals(table, run_id)
    if totals is not None and not totals.exact and may_be_complete(totals):
        return await read_run(table, run_id)
    return totals


async def latest_run_id(table: TableClient, kind: str | None = None) -> str | None:
    """The latest run of ``kind`` by start; without a kind, the latest plan, else the latest
    producer's message."""
    for each in (kind,) if kind else (PLAN_KIND, MESSAGE_KIND):
        rows = table.query_entities(f"PartitionKey eq '{INDEX_PREFIX}{each}'",
                                    results_per_page=1, select=["RunId"])
        async for entity in rows:
            return str(entity["RunId"])
    return None


async def start_plan(table: TableClient, run_id: str, started_s: float,
                     definition: str = names.DEFAULT_DEFINITION) -> str | None:
    """Record a plan's start; answer the previous plan's run of the same definition when it is
    still incomplete (the two overlap: both rows say so and ``run_overlapped`` is emitted). A
    previous run complete by its messages' rows but never claimed is completed first."""
    previous_id = await latest_run_id(table, definition_index(definition))
    previous = await read_run(table, previous_id) if previous_id else None
    if previous is not None and previous_id is not None and not previous.run.completed \
            and is_complete(previous.run, previous.counts):
        # complete by its messages' rows, yet never claimed: the tallies fell short (a message
        # counted by an instance that keeps none, during a rolling deployment); claim it now
        claimed = await complete_if_done(table, previous_id, started_s, exact=True)
        previous = None if claimed else await read_run(table, previous_id)
    overlapped = previous is not None and not previous.run.completed
    await _upsert_run(table, run_id, Kind=PLAN_KIND, StartedAt=started_s, Planned=0,
                      PlanComplete=False, PreviousRunId=previous_id if overlapped else "",
                      Definition=definition, Tallied=True)
    await _index(table, PLAN_KIND, run_id, started_s)
    await _index(table, definition_index(definition), run_id, started_s)
    if not overlapped or previous_id is None:
        return None
    await _upsert_run(table, previous_id, OverlappedBy=run_id)
    logger.warning("run %s starts while run %s is incomplete", run_id, previous_id,
                   extra={"event": "run_overlapped", "run_id": run_id})
    emit(names.RUN_OVERLAPPED, {names.RUN_ID: run_id, names.PREVIOUS_RUN_ID: previous_id,
                                names.DEFINITION: definition})
    return previous_id


def definition_index(definition: str) -> str:
    """The index kind of one definition's plans (each is also in the index of all plans)."""
    return f"{PLAN_KIND}.{definition}"


async def start_message_run(table: TableClient, run_id: str, records: int,
                            started_s: float, *,
                            definition: str = names.DEFAULT_DEFINITION) -> bool:
    """Record a producer's message as a run planning its ``records``; once only (a repeated
    first delivery finds the row there). Answers whether this call recorded it."""
    try:
        await table.create_entity({"PartitionKey": run_partition(run_id), "RowKey": RUN_ROW,
                                   "RunId": run_id, "Kind": MESSAGE_KIND, "StartedAt": started_s,
                                   "Planned": records, "Batches": 1, "PlanComplete": True,
                                   "Definition": definition})
    except ResourceExistsError:
        return False
    await _index(table, MESSAGE_KIND, run_id, started_s)
    planned(run_id, records, definition)
    return True


def planned(run_id: str, records: int, definition: str = names.DEFAULT_DEFINITION) -> None:
    """The plan of ``run_id`` is complete: ``run_planned``."""
    emit(names.RUN_PLANNED, {names.RUN_ID: run_id, names.PLANNED: records,
                             names.DEFINITION: definition})


async def complete_if_done(table: TableClient, run_id: str, now_s: float, *,
                           exact: bool = False) -> bool:
    """Claim the run's completion if it is complete and nobody has; answer whether this call
    claimed it (and emitted ``run_completed``). The tallies rule out an incomplete run at the
    cost of one short query; only a run they say may be complete (or, with ``exact``, every
    run) is summed exactly, and a sum that finds it incomplete is noted on the run's row
    (``may_be_complete``), so the next checks go back to the tallies alone."""
    totals = await read_run(table, run_id) if exact else await _checked_exactly(table, run_id)
    for _ in range(CLAIM_ATTEMPTS):
        if totals is None or totals.run.completed or not is_complete(totals.run, totals.counts):
            return False
        try:
            await table.update_entity(
                {"PartitionKey": run_partition(run_id), "RowKey": RUN_ROW, "Completed": True,
                 "CompletedAt": now_s, "Written": totals.counts.written,
                 "DeadLettered": totals.counts.dead_lettered,
                 "Unchanged": totals.counts.unchanged, "Cancelled": totals.counts.cancelled},
                mode=UpdateMode.MERGE, etag=totals.run.etag,
                match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:  # another completer, or an overlap mark: read again
            totals = await read_run(table, run_id)
            continue
        except ResourceNotFoundError:
            return False
        _completed(totals, now_s)
        return True
    logger.warning("run %s: completion not claimed after %d attempts", run_id, CLAIM_ATTEMPTS,
                   extra={"event": "run_claim_gave_up", "run_id": run_id})
    return False


async def _checked_exactly(table: TableClient, run_id: str) -> RunTotals | None:
    """The exact sum of a run its tallies say may be complete; None when they say it is not.
    A sum that finds it incomplete is noted on the run's row."""
    totals = await read_totals(table, run_id)
    if totals is None or totals.run.completed or not may_be_complete(totals):
        return None
    if totals.exact:
        return totals
    tallied = totals.counts.done
    exact = await read_run(table, run_id)
    if exact is not None and not exact.run.completed and not is_complete(exact.run,
                                                                         exact.counts):
        await _note_check(table, run_id, tallied, exact.counts.done)
    return exact


async def _note_check(table: TableClient, run_id: str, tallied: int, done: int) -> None:
    """Note on the run's row what the tallies and the exact sum said (never creates the row:
    a run deleted meanwhile stays deleted)."""
    try:
        await table.update_entity({"PartitionKey": run_partition(run_id), "RowKey": RUN_ROW,
                                   "CheckedTally": tallied, "CheckedDone": done},
                                  mode=UpdateMode.MERGE)
    except ResourceNotFoundError:
        return
    logger.info("run %s: the tallies say %d done, the exact sum %d; the next checks wait "
                "for the missing records", run_id, tallied, done,
                extra={"event": "run_tallies_over", "run_id": run_id})


def _completed(totals: RunTotals, now_s: float) -> None:
    run, counts = totals.run, totals.counts
    duration_s = max(0.0, now_s - run.started_s)
    logger.info("run %s completed: %d written, %d unchanged, %d dead-lettered, %d cancelled "
                "of %d in %.1f s (%d Dataverse requests)", run.run_id, counts.written,
                counts.unchanged, counts.dead_lettered, counts.cancelled, run.planned,
                duration_s, totals.requests.total,
                extra={"event": "run_completed", "run_id": run.run_id})
    emit(names.RUN_COMPLETED, {
        names.RUN_ID: run.run_id, names.DEFINITION: run.definition,
        names.PLANNED: run.planned, names.WRITTEN: counts.written,
        names.DEAD_LETTERED: counts.dead_lettered, names.UNCHANGED: counts.unchanged,
        names.CANCELLED: counts.cancelled, names.REQUESTS: totals.requests.total,
        names.DURATION_S: duration_s,
        names.OVERLAPPED: run.overlapped})


async def _upsert_run(table: TableClient, run_id: str, **fields: Any) -> None:
    await table.upsert_entity({"PartitionKey": run_partition(run_id), "RowKey": RUN_ROW,
                               "RunId": run_id, **fields}, mode=UpdateMode.MERGE)


async def _index(table: TableClient, kind: str, run_id: str, started_s: float) -> None:
    await table.upsert_entity({"PartitionKey": f"{INDEX_PREFIX}{kind}",
                               "RowKey": index_key(started_s, run_id), "RunId": run_id,
                               "StartedAt": started_s}, mode=UpdateMode.REPLACE)


def _quoted(value: str) -> str:
    """A value inside an OData string literal."""
    return value.replace("'", "''")
