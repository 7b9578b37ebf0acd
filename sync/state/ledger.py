"""The run ledger in Table Storage: one partition per run, holding the run's row (what was
planned, when it started, whether it completed) and one row per processed message.

- partition ``run:<run id>`` (the run of a message: ``sync.message.ids.run_id_of``), so one
run's
  totals are one partition query;
- row ``run``: the run's row (``sync.state.runs`` writes its lifecycle fields; the planner its
  manifest);
- rows ``msg:<batch id>|<attempt>``: what one processing of one message did. A message processed
  twice overwrites its own row instead of counting twice; the attempts of a batch cover disjoint
  sets of records.
- rows ``tally:<token>``: one process's running totals of a planned run (a **tally**).

Summing the message rows after every message would read the whole run's partition per message,
which grows with the run: a 500-message run read about 125,000 rows, and parsing them cost more
CPU than the writes. So every process also keeps, per planned run, the sum of what it processed
and stores it in its own row (only that process writes it: no contention), and the sum of a
run's tallies is one short query. A tally can only count too much (a message processed twice),
never too little: a message's tally is stored before its completion check, and a process that
dies between its message row and its tally leaves the message on the queue, to be processed
and counted again. So the tallies say when a run *may* be complete, and
``sync.state.runs.complete_if_done`` confirms with the exact sum of the message rows.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import weakref
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.message.counts import MessageCounts, RequestUsage
from sync.message.ids import REPLAY_MARK, is_planned, run_id_of

RUN_PREFIX: Final = "run:"
RUN_ROW: Final = "run"
MESSAGE_PREFIX: Final = "msg:"
_MESSAGE_END: Final = "msg;"
"""The first key after every ``msg:`` key (``;`` follows ``:``)."""
TALLY_PREFIX: Final = "tally:"
TALLY_END: Final = "tally;"
KEPT_RUNS: Final = 64
"""Runs a process keeps a tally for; the least recently counted is forgotten first (a later
message of a forgotten run starts a new row)."""
PLAN_KIND: Final = "plan"
MESSAGE_KIND: Final = "message"


def usage_fields(usage: RequestUsage) -> dict[str, int]:
    """A ledger row's request-usage columns."""
    return {"RequestsRead": usage.reads, "RequestsWritten": usage.writes,
            "RequestsRetried": usage.retries}


def usage_from(entity: Mapping[str, Any]) -> RequestUsage:
    return RequestUsage(reads=int(entity.get("RequestsRead", 0)),
                        writes=int(entity.get("RequestsWritten", 0)),
                        retries=int(entity.get("RequestsRetried", 0)))


@dataclass(frozen=True, slots=True)
class PlanManifest:
    """What one run of the planner put on the queue."""

    run_id: str
    records: int
    batches: int
    pages: int
    complete: bool
    requests: RequestUsage = field(default_factory=RequestUsage)
    """The planner's requests (its page reads, their retries)."""


def run_partition(run_id: str) -> str:
    """The partition that holds a run's row and its messages' rows."""
    return f"{RUN_PREFIX}{run_id}"


def is_message_row(entity: Mapping[str, Any]) -> bool:
    return str(entity["RowKey"]).startswith(MESSAGE_PREFIX)


def message_entity(batch_id: str, attempt: int, counts: MessageCounts) -> dict[str, Any]:
    """The ledger row of one processed message, in its run's partition."""
    return {"PartitionKey": run_partition(run_id_of(batch_id)),
            "RowKey": f"{MESSAGE_PREFIX}{batch_id}|{attempt:04d}", **counts_fields(counts)}


def counts_fields(counts: MessageCounts) -> dict[str, Any]:
    """The columns that hold counts (a message's row, a process's tally of a run)."""
    return {"Written": counts.written, "DeadLettered": counts.dead_lettered,
            "Unchanged": counts.unchanged, **usage_fields(counts.requests),
            "Reenqueued": counts.reenqueued, "Cancelled": counts.cancelled,
            "RejectedMessages": counts.rejected_messages,
            "TransientRetries": counts.transient_retries, "Previewed": counts.previewed,
            "RequeueDelayS": float(counts.requeue_delay_s),
            "ThrottledByCode": json.dumps(dict(counts.throttled_by_code)),
            "DeadLetteredByReason": json.dumps(dict(counts.dead_lettered_by_reason)),
            "ReenqueuedByReason": json.dumps(dict(counts.reenqueued_by_reason))}


def counts_from(entity: Mapping[str, Any]) -> MessageCounts:
    """The counts a ledger row holds."""
    return MessageCounts(written=int(entity.get("Written", 0)),
                       dead_lettered=int(entity.get("DeadLettered", 0)),
                       unchanged=int(entity.get("Unchanged", 0)),
                       requests=usage_from(entity),
                       reenqueued=int(entity.get("Reenqueued", 0)),
                       cancelled=int(entity.get("Cancelled", 0)),
                       rejected_messages=int(entity.get("RejectedMessages", 0)),
                       transient_retries=int(entity.get("TransientRetries", 0)),
                       previewed=int(entity.get("Previewed", 0)),
                       requeue_delay_s=float(entity.get("RequeueDelayS", 0.0)),
                       throttled_by_code=_counter(entity, "ThrottledByCode"),
                       dead_lettered_by_reason=_counter(entity, "DeadLetteredByReason"),
                       reenqueued_by_reason=_counter(entity, "ReenqueuedByReason"))


def _counter(entity: Mapping[str, Any], name: str) -> Counter[str]:
    return Counter(json.loads(entity.get(name) or "{}"))


def plan_entity(manifest: PlanManifest) -> dict[str, Any]:
    """A plan's manifest: the fields of its run's row that the planner writes."""
    return {"PartitionKey": run_partition(manifest.run_id), "RowKey": RUN_ROW,
            "RunId": manifest.run_id, "Kind": PLAN_KIND, "Planned": manifest.records,
            "Batches": manifest.batches, "Pages": manifest.pages,
            "PlanComplete": manifest.complete,
            **{f"Plan{name}": value for name, value in usage_fields(manifest.requests).items()}}


def manifest_from(entity: Mapping[str, Any]) -> PlanManifest:
    """The manifest a run's row holds."""
    return PlanManifest(run_id=str(entity["RunId"]), records=int(entity.get("Planned", 0)),
                        batches=int(entity.get("Batches", 0)), pages=int(entity.get("Pages", 0)),
                        complete=bool(entity.get("PlanComplete", False)),
                        requests=plan_usage_from(entity))


def plan_usage_from(entity: Mapping[str, Any]) -> RequestUsage:
    """The planner's request usage a run's row holds."""
    return usage_from({name[len("Plan"):]: value for name, value in entity.items()
                       if str(name).startswith("PlanRequests")})


async def record_message(table: TableClient, batch_id: str, attempt: int,
                         counts: MessageCounts) -> None:
    """Write (or overwrite) the row of one processed message; then, for a planned run, store
    this process's tally of it."""
    await table.upsert_entity(message_entity(batch_id, attempt, counts), mode=UpdateMode.REPLACE)
    if tallied(batch_id):
        await tallies_of(table).add(table, run_id_of(batch_id), counts)


def tallied(batch_id: str) -> bool:
    """Whether a message's counts go into its run's tallies: the planner's messages (and the
    remainders split from them) and replays of a run's dead letters. A producer's message is
    its own small run, summed exactly."""
    return is_planned(batch_id) or REPLAY_MARK in batch_id


@dataclass(slots=True)
class Tally:
    """One process's running totals of one run, and how much of them its row holds."""

    row_key: str
    counts: MessageCounts = field(default_factory=MessageCounts)
    version: int = 0
    stored: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Tallies:
    """The tallies kept through one ledger client, by run."""

    def __init__(self, kept_runs: int = KEPT_RUNS) -> None:
        self._kept_runs = kept_runs
        self._by_run: OrderedDict[str, Tally] = OrderedDict()

    async def add(self, table: TableClient, run_id: str, counts: MessageCounts) -> None:
        """Count one processed message; return once a row holding its counts is stored. The
        writes are serialized and each stores the latest total, so none goes back in time."""
        tally = self._tally(run_id)
        tally.counts.add(counts)
        tally.version += 1
        mine = tally.version
        async with tally.lock:
            if tally.stored >= mine:
                return  # a later message's write already stored these counts
            version = tally.version
            await table.upsert_entity({"PartitionKey": run_partition(run_id),
                                       "RowKey": tally.row_key, **counts_fields(tally.counts)},
                                      mode=UpdateMode.REPLACE)
            tally.stored = version

    def _tally(self, run_id: str) -> Tally:
        tally = self._by_run.get(run_id)
        if tally is None:
            tally = self._by_run[run_id] = Tally(f"{TALLY_PREFIX}{secrets.token_hex(8)}")
            while len(self._by_run) > self._kept_runs:
                self._by_run.popitem(last=False)
        self._by_run.move_to_end(run_id)
        return tally


_TALLIES: weakref.WeakKeyDictionary[TableClient, Tallies] = weakref.WeakKeyDictionary()


def tallies_of(table: TableClient) -> Tallies:
    """The tallies kept through this ledger client (a host has one: one per process)."""
    found = _TALLIES.get(table)
    if found is None:
        found = _TALLIES[table] = Tallies()
    return found


def is_tally_row(entity: Mapping[str, Any]) -> bool:
    return str(entity["RowKey"]).startswith(TALLY_PREFIX)


async def record_plan(table: TableClient, manifest: PlanManifest) -> None:
    """Write (or overwrite) a plan's manifest; the run's other fields stay (a merge)."""
    await table.upsert_entity(plan_entity(manifest), mode=UpdateMode.MERGE)


async def message_totals(table: TableClient) -> MessageCounts:
    """The sum of every processed message's counts, over every run (a table scan: for tests
    and the local stack; one run's totals are ``sync.state.runs.read_run``)."""
    totals = MessageCounts()
    rows = table.query_entities(f"RowKey ge '{MESSAGE_PREFIX}' and RowKey lt '{_MESSAGE_END}'")
    async for entity in rows:
        totals.add(counts_from(entity))
    return totals


async def plans(table: TableClient) -> list[PlanManifest]:
    """Every plan's manifest (a table scan: for tests and the local stack)."""
    rows = table.query_entities(f"RowKey eq '{RUN_ROW}' and Kind eq '{PLAN_KIND}'")
    return [manifest_from(entity) async for entity in rows]
