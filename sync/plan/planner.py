"""plan_sync and continue_plan: page through the table into messages, a bit at a time.

- With change tracking: the saved delta link gives only what changed since the last plan;
  the first plan, or one whose token is refused (expired), is a full scan that ends with a new
  delta link. Deleted rows are skipped.
- Without it: ``modifiedon ge <watermark>``, the watermark saved only after a complete plan.
  The watermark is Dataverse's own time when it answered the plan's first page (its ``Date``),
  less ``SYNC_CLOCK_SKEW_S``: ``modifiedon`` is written by the service's clock, so a host whose
  clock runs ahead never skips a change (``watermark_after``).
- Rows last modified by this app's own user are skipped in incremental plans, so last night's
  writes are not planned again.
- After ``SYNC_PLAN_BUDGET_S`` an invocation hands the rest (the next link) to a continuation
  message on the plan queue, so a table of millions is planned by many short invocations.
- The run's row (``sync.state.runs``) is written when the plan starts (noting an incomplete previous
  run it overlaps) and when it hands on or finishes (what it planned); a finished plan emits
  ``run_planned`` and completes the run if the workers already did every record.
- Batch ids are ``<run>-p<page>-<n>``: re-planning a page after a crash sends the same batches
  again (harmless: writes are idempotent), never skips one. The checkpoint moves only when the
  whole plan is enqueued.
- Every record read is guarded by the contract before it is planned: one whose input is too
  long or not text (or that breaks the contract otherwise) is dead-lettered alone as
  ``unusable_input`` with the reason, counted in the run's ledger under
  ``<run>-p<page>-unusable``, and the plan goes on; every message the planner sends holds records
  that pass the contract and fits the queue (``fitting_groups``).
- A paused or cancelled definition (``sync.safety.flags``) starts no new run.
- Page reads take the one governed call (circuit, governor, retries); a read that succeeds
  never closes the Dataverse circuit (reads answer while every write is refused: only a write
  probes it), so a plan paging through a write outage leaves its back-off growing. When a read
  is throttled for long, or the service keeps failing past the retries, the plan is handed on
  at the page it reached, in a continuation message that waits out the delay: a failed read
  never loses the night's plan.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sync.budget import routing
from sync.clients.dataverse import Page, is_deleted
from sync.config.definitions import Definition
from sync.config.table_definition import SyncDefinition
from sync.failures.errors import ContractError, Deferred, RecordFault, ServiceFault, Throttled
from sync.message.contract import (
    DEFAULT_DEFINITION,
    MAX_CURRENT_TEXT_CHARS,
    MAX_ETAG_CHARS,
    NEVER_EXPIRE,
    Message,
    RecordRef,
    Scalar,
    fitting_groups,
    input_problem,
    record_from,
)
from sync.message.counts import RequestUsage
from sync.plan.plan_state import Checkpoint, Mode, PlanState, load_checkpoint, save_checkpoint
from sync.safety.flags import definition_scope, read_flag
from sync.state import manifests, runs
from sync.state.manifests import PlanManifest
from sync.telemetry.tracing import describe_plan
from sync.work.context import Work, WorkSource
from sync.work.filing import dead_letter_unusable

logger = logging.getLogger(__name__)

ENQUEUE_CONCURRENCY: Final = 16
MODIFIED_BY: Final = "_modifiedby_value"


class PlanHooks:
    """What the governed call is told about the planner's reads: they never stop for a
    message, their 429s and retries are logged, not counted in a batch's ledger row; the
    requests they send are counted here and carried by the plan's state to its manifest."""

    __slots__ = ("usage",)

    def __init__(self) -> None:
        self.usage = RequestUsage()

    def counted(self, state: PlanState) -> PlanState:
        """``state`` with the requests counted since the last call added."""
        usage, self.usage = self.usage, RequestUsage()
        return dataclasses.replace(
            state, requests_read=state.requests_read + usage.reads + usage.writes,
            requests_retried=state.requests_retried + usage.retries)

    def stop_delay(self, service: str) -> float | None:
        return None

    def count_429(self, error: Throttled) -> None:
        logger.info("page read throttled: %s", error, extra={"event": "plan_throttled"})

    def count_retry(self, fault: ServiceFault) -> None:
        logger.info("page read retried: %s", fault, extra={"event": "plan_retry"})

    def count_request(self, service: str, kind: str, *, retry: bool) -> None:
        self.usage.count(kind, retry=retry)


def checkpoint_key(definition: Definition) -> str:
    """Where a definition's checkpoint is kept: ``default`` under its table's name (as a
    single-definition deployment always kept it), any other under its own name."""
    if definition.name == DEFAULT_DEFINITION:
        return definition.table.entity_set
    return f"{definition.name}.{definition.table.entity_set}"


def new_run_id(now: datetime) -> str:
    """A sortable, unique run id: ``run-20261122T020000Z-1a2b3c``."""
    return f"run-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"


def batch_id(run_id: str, page: int, number: int) -> str:
    """The id of batch ``number`` of page ``page``: deterministic, so a re-plan reuses it."""
    return f"{run_id}-p{page:06d}-{number:03d}"


def read_filter(table: SyncDefinition, watermark: str | None) -> str:
    """The $filter of a watermark plan: rows with an input, the configured filter, the mark."""
    parts = [f"({table.filter})"] if table.filter else []
    parts.append(f"{table.input_column} ne null")
    if watermark:
        parts.append(f"modifiedon ge {watermark}")
    return " and ".join(parts)


def watermark_after(first_page: Page, host_mark: str, margin_s: float) -> str:
    """Where the next watermark plan starts: when Dataverse answered this plan's first page,
    by its own clock (``Date``), less ``margin_s`` (its servers' clocks may differ too, and the
    read saw the table a moment before it answered); the host's mark less the margin when
    Dataverse sent no readable ``Date``. A record changed after the read has a ``modifiedon``
    at or after it whatever this host's clock says; one changed within the margin before it is
    planned again, and found unchanged. Floored to the second, as ``modifiedon`` is written."""
    at_s = first_page.served_at_s
    if at_s is None:
        at_s = datetime.fromisoformat(host_mark).timestamp()
    return f"{datetime.fromtimestamp(at_s - margin_s, UTC):%Y-%m-%dT%H:%M:%SZ}"


def unusable_batch_id(run_id: str, page: int) -> str:
    """Where the records of page ``page`` that cannot travel in a message are counted."""
    return f"{run_id}-p{page:06d}-unusable"


@dataclass(frozen=True, slots=True)
class Unusable:
    """A record read that breaks the message contract on its own, and why."""

    record: RecordRef
    reason: str


def refs_from(rows: Iterable[dict[str, Any]], table: SyncDefinition,
              skip_user: str | None) -> Iterator[RecordRef | Unusable]:
    """Records to enrich from a page, each guarded by the contract: deleted rows, rows without
    an input and rows last modified by ``skip_user`` are left out."""
    for row in rows:
        if is_deleted(row) or (skip_user and row.get(MODIFIED_BY) == skip_user):
            continue
        value = row.get(table.input_column)
        value = value.strip() if isinstance(value, str) else value
        if value not in (None, "") and row.get(table.key):
            yield guarded(row, value, table)


def guarded(row: Mapping[str, Any], value: Any, table: SyncDefinition) -> RecordRef | Unusable:
    """The record to plan, or why the contract refuses it (its input first)."""
    text = value if isinstance(value, str) else json.dumps(value)
    record = RecordRef(id=str(row[table.key]), input=text, etag=_etag(row),
                       current=current_values(row, table.carried_columns))
    problem = input_problem(value)
    if problem is None:
        try:
            record_from(record.to_wire(), "record")
        except ContractError as error:
            problem = error.reason
    return record if problem is None else Unusable(record, problem)


def current_values(row: Mapping[str, Any], columns: Iterable[str]) -> dict[str, Scalar] | None:
    """The mapped columns as read, or None when one cannot travel in a message (then the
    worker writes the record without comparing, as for a producer's record)."""
    current = {column: row.get(column) for column in columns}
    for cell in current.values():
        if isinstance(cell, str) and len(cell) > MAX_CURRENT_TEXT_CHARS:
            return None
        if not (cell is None or isinstance(cell, (str, bool, int, float))):
            return None
    return current


def _etag(row: Mapping[str, Any]) -> str | None:
    etag = row.get("@odata.etag")
    return etag if isinstance(etag, str) and 0 < len(etag) <= MAX_ETAG_CHARS else None


async def plan(services: WorkSource, now: datetime, definition: str | None = None
               ) -> PlanState | None:
    """Start a plan of ``definition`` (by default the first); answers the state handed on, or
    None when it is complete."""
    named = _definition(services, definition)
    return await plan_definition(_reader(services, named), now)


async def continue_plan(services: WorkSource, state: PlanState) -> PlanState | None:
    """Go on with a plan from its continuation message, through an open lane of its
    definition."""
    named = _definition(services, state.definition)
    return await continue_definition(_reader(services, named), state)


def _definition(services: WorkSource, name: str | None) -> Definition:
    definitions = services.settings.definitions
    found = definitions.first if name is None else definitions.get(name)
    if found is None:
        raise ContractError(f"unknown definition {name!r}; this deployment defines: "
                            f"{', '.join(definitions.names)}")
    return found


def _reader(services: WorkSource, definition: Definition) -> Work:
    """The work context a plan reads through: the definition's open lane with the most room
    (marked busy, so its next refresh claims slots for the reads)."""
    lane = routing.pick(services.lanes_of(definition))
    lane.activity.touch()
    return services.work(definition, lane.key)


async def plan_definition(services: Work, now: datetime) -> PlanState | None:
    """Start a plan (the timer); answers the state handed on, or None when it is complete.
    A paused (or cancelled) definition starts no run: the planner logs why and emits nothing."""
    name = services.named.name
    flag = await read_flag(services.storage.state, definition_scope(name))
    if flag.stops:
        logger.warning("definition %s is %s (%s): no run is planned", name,
                       flag.state, flag.reason or "-",
                       extra={"event": "plan_skipped", "state": flag.state})
        return None
    table = services.definition
    checkpoint = await load_checkpoint(services.storage.state, checkpoint_key(services.named))
    mode: Mode = "watermark"
    if table.change_tracking:
        mode = "delta" if checkpoint.delta_link else "full"
    incremental = mode == "delta" or (mode == "watermark" and checkpoint.watermark)
    state = PlanState(run_id=new_run_id(now), mode=mode,
                      next_link=checkpoint.delta_link if mode == "delta" else None,
                      watermark_to=f"{now.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
                      definition=name)
    await runs.start_plan(services.storage.ledger, state.run_id, now.timestamp(), name)
    if table.skip_own_changes and incremental:
        hooks = PlanHooks()
        try:
            state = dataclasses.replace(state, self_id=await services.dataverse_dep.call(
                services.dataverse.who_am_i, hooks, kind="read"))
        except (Deferred, ServiceFault) as error:
            state = hooks.counted(state)
            await _hand_on(services, state, _delay_s(services, error))
            return state
        state = hooks.counted(state)
    return await continue_definition(services, state, checkpoint)


async def continue_definition(services: Work, state: PlanState,
                              checkpoint: Checkpoint | None = None) -> PlanState | None:
    """Plan pages until done or out of time; then hand on or finish."""
    describe_plan(state.run_id, state.mode)
    settings = services.settings
    clock = services.dataverse_dep.clock
    deadline_s = clock.monotonic_s() + settings.plan_budget_s
    checkpoint = checkpoint or await load_checkpoint(services.storage.state,
                                                     checkpoint_key(services.named))
    hooks = PlanHooks()
    while True:
        try:
            page, state = await _read(services, state, checkpoint, hooks)
        except (Deferred, ServiceFault) as error:
            state = hooks.counted(state)
            logger.warning("plan %s waits at page %d: %s", state.run_id, state.page, error,
                           extra={"event": "plan_waits", "run_id": state.run_id})
            await _hand_on(services, state, _delay_s(services, error))
            return state
        if state.mode == "watermark" and state.page == 0:
            state = dataclasses.replace(state, watermark_to=watermark_after(
                page, state.watermark_to, settings.clock_skew_s))
        state = await _enqueue_page(services, hooks.counted(state), page)
        if page.delta_link or not page.next_link:
            await _finish(services, state, page.delta_link)
            return None
        state = dataclasses.replace(state, next_link=page.next_link)
        if clock.monotonic_s() >= deadline_s:
            await _hand_on(services, state)
            return state


async def _read(services: Work, state: PlanState, checkpoint: Checkpoint,
                hooks: PlanHooks) -> tuple[Page, PlanState]:
    """One page of the plan's read (the governed call counts its requests with ``hooks``)."""
    settings = services.settings
    table = services.definition
    tracking = state.mode != "watermark"
    url = state.next_link or services.dataverse.collection_url(
        table.entity_set, table.read_columns,
        "" if tracking else read_filter(table, checkpoint.watermark))
    try:
        return await services.dataverse_dep.call(
            lambda: services.dataverse.read_page(url, settings.page_size,
                                                 track_changes=tracking), hooks,
            kind="read"), state
    except RecordFault as error:
        if state.mode != "delta" or state.page:
            raise
        logger.warning("delta link refused (%s %s); planning a full scan", error.status,
                       error.code, extra={"event": "delta_refused"})
        full = dataclasses.replace(state, mode="full", next_link=None, self_id=None)
        return await _read(services, full, Checkpoint(), hooks)


async def _enqueue_page(services: Work, state: PlanState, page: Page) -> PlanState:
    settings = services.settings
    skip_user = state.self_id if state.mode != "full" else None
    planned = list(refs_from(page.rows, services.definition, skip_user))
    refs = [item for item in planned if isinstance(item, RecordRef)]
    unusable = [item for item in planned if isinstance(item, Unusable)]
    if unusable:
        await dead_letter_unusable(services, unusable_batch_id(state.run_id, state.page), 0,
                                   [(item.record, item.reason) for item in unusable])
    lanes = services.named.lanes
    read_at = services.dataverse_dep.clock.wall_s()  # the page was read just now
    messages = [Message(batch_id(state.run_id, state.page, n), group,
                        definition=services.named.name,
                        lane=lanes[(state.batches + n) % len(lanes)].wire, read_at=read_at)
                for n, group in enumerate(fitting_groups(refs, settings.batch_size))]
    slots = asyncio.Semaphore(ENQUEUE_CONCURRENCY)

    async def send(message: Message) -> None:
        async with slots:
            await services.storage.batches.send_message(message.to_json(),
                                                        time_to_live=NEVER_EXPIRE)

    await asyncio.gather(*(send(message) for message in messages))
    return dataclasses.replace(state, page=state.page + 1, records=state.records + len(planned),
                               batches=state.batches + len(messages),
                               skipped=state.skipped + len(page.rows) - len(planned))


def _delay_s(services: Work, error: Deferred | ServiceFault) -> float:
    """How long a plan that could not read waits: the throttle's or the circuit's time, else
    the circuit's first opening time or what is left of its opening, whichever is longer."""
    if isinstance(error, Deferred):
        return error.retry_after_s
    return max(services.circuit_policy.open_s, services.dataverse_dep.circuit.open_for_s())


async def _hand_on(services: Work, state: PlanState, delay_s: float = 0.0) -> None:
    await services.storage.plans.send_message(state.to_json(), time_to_live=NEVER_EXPIRE,
                                      visibility_timeout=max(0, math.ceil(delay_s)))
    await _manifest(services, state, complete=False)
    logger.info("plan %s: %d records so far; continuing in a new invocation", state.run_id,
                state.records, extra={"event": "plan_continued", "run_id": state.run_id})


async def _finish(services: Work, state: PlanState, delta_link: str | None) -> None:
    checkpoint = (Checkpoint(delta_link=delta_link) if state.mode != "watermark"
                  else Checkpoint(watermark=state.watermark_to))
    await save_checkpoint(services.storage.state, checkpoint_key(services.named), checkpoint,
                          state.run_id)
    await _manifest(services, state, complete=True)
    runs.planned(state.run_id, state.records, services.named.name)
    logger.info("plan %s (%s): %d records in %d batches from %d pages, %d skipped",
                state.run_id, state.mode, state.records, state.batches, state.page,
                state.skipped, extra={"event": "plan_done", "run_id": state.run_id})
    # the workers may have finished every batch before the plan was marked complete
    await runs.complete_if_done(services.storage.ledger, state.run_id,
                                services.dataverse_dep.clock.wall_s())


async def _manifest(services: Work, state: PlanState, *, complete: bool) -> None:
    await manifests.record_plan(services.storage.ledger, PlanManifest(
        state.run_id, state.records, state.batches, state.page, complete=complete,
        requests=RequestUsage(reads=state.requests_read, retries=state.requests_retried)))
