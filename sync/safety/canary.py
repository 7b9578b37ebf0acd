"""A run's canary: the first records a definition's ``canary`` admits, and what comes next.

State in the state table:

- partition ``canary``, row ``<run id>``: ``Admitted`` (records claimed so far), ``Approved``
  (an operator's ``sync approve``), ``Outcome`` (``passed`` or ``failed`` once an automatic
  canary was judged). Claims are ETag-conditional updates of ``Admitted``, so however many
  instances claim at once they admit at most the limit in total;
- partition ``canary:<run id>``: one row per admitted record, so a canary record sent back on
  the queue (a throttle) is let through again without a second claim.
  An instance that dies between its claim and these rows leaves its places unused: the
  canary admits fewer records, never more, and is judged on the records it did admit.

While a run's canary holds, only its admitted records are processed, so the run's ledger
totals are the canary's: an automatic canary is judged on them once every admitted record is
done (written or dead-lettered). At or under ``max_failure_rate`` the run goes on; above it the
canary is marked failed, the definition is paused with the reason, and ``canary_failed`` is
emitted (once: the ETag-conditional mark decides who reports it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.config.canary_policy import CanaryPolicy
from sync.message.counts import MessageCounts
from sync.safety import flags
from sync.state import runs
from sync.telemetry import names
from sync.telemetry.events import emit

logger = logging.getLogger(__name__)

CANARY_PARTITION: Final = "canary"
PASSED: Final = "passed"
FAILED: Final = "failed"
CLAIM_ATTEMPTS: Final = 8
TRANSACTION_ROWS: Final = 100
"""Rows per table transaction (the service's limit)."""


@dataclass(frozen=True, slots=True)
class CanaryRow:
    """A run's canary as read."""

    run_id: str
    admitted: int = 0
    approved: bool = False
    outcome: str = ""
    etag: str = ""

    @property
    def released(self) -> bool:
        """The rest of the run may go: approved, or an automatic canary passed."""
        return self.approved or self.outcome == PASSED


def admitted_partition(run_id: str) -> str:
    return f"{CANARY_PARTITION}:{run_id}"


def row_from(run_id: str, entity: Mapping[str, Any], etag: str = "") -> CanaryRow:
    return CanaryRow(run_id, admitted=int(entity.get("Admitted", 0)),
                     approved=bool(entity.get("Approved", False)),
                     outcome=str(entity.get("Outcome", "")), etag=etag)


async def read_canary(table: TableClient, run_id: str) -> CanaryRow | None:
    """The run's canary row; None when no canary was started for it."""
    try:
        entity = await table.get_entity(CANARY_PARTITION, run_id)
    except ResourceNotFoundError:
        return None
    return row_from(run_id, entity, entity.metadata.get("etag") or "")


async def _row(table: TableClient, run_id: str) -> CanaryRow:
    found = await read_canary(table, run_id)
    if found is not None:
        return found
    with contextlib.suppress(ResourceExistsError):  # another instance created it first
        await table.create_entity({"PartitionKey": CANARY_PARTITION, "RowKey": run_id,
                                   "Admitted": 0, "Approved": False, "Outcome": ""})
    return await _row(table, run_id)


async def approve(table: TableClient, run_id: str) -> None:
    """Let the rest of the run go (an operator's approval; a merge, so claims are kept)."""
    await table.upsert_entity({"PartitionKey": CANARY_PARTITION, "RowKey": run_id,
                               "Approved": True}, mode=UpdateMode.MERGE)
    logger.info("canary of run %s approved", run_id,
                extra={"event": "canary_approved", "run_id": run_id})


async def admitted_ids(table: TableClient, run_id: str) -> set[str]:
    """The records the run's canary admitted so far."""
    rows = table.query_entities(f"PartitionKey eq '{admitted_partition(run_id)}'",
                                select=["RowKey"])
    return {str(entity["RowKey"]) async for entity in rows}


async def claim(table: TableClient, run_id: str, ids: Sequence[str],
                limit: int) -> tuple[set[str], CanaryRow]:
    """Which of ``ids`` may be processed now: those admitted before, and as many new ones as
    the limit has room for (claimed with an ETag-conditional update); every id once released."""
    before = await admitted_ids(table, run_id)
    mine = {i for i in ids if i in before}
    wanted = [i for i in ids if i not in before]
    row = await _row(table, run_id)
    for _ in range(CLAIM_ATTEMPTS):
        take = min(len(wanted), max(0, limit - row.admitted))
        if row.released or take == 0:
            return (set(ids) if row.released else mine), row
        try:
            await table.update_entity(
                {"PartitionKey": CANARY_PARTITION, "RowKey": run_id,
                 "Admitted": row.admitted + take}, mode=UpdateMode.MERGE, etag=row.etag,
                match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            row = await _row(table, run_id)
            continue
        await _mark_admitted(table, run_id, wanted[:take])
        return mine | set(wanted[:take]), row
    return mine, row


async def _mark_admitted(table: TableClient, run_id: str, ids: Sequence[str]) -> None:
    partition = admitted_partition(run_id)
    for start in range(0, len(ids), TRANSACTION_ROWS):
        await table.submit_transaction([
            ("upsert", {"PartitionKey": partition, "RowKey": i})
            for i in ids[start:start + TRANSACTION_ROWS]])


async def judge(state: TableClient, ledger: TableClient, row: CanaryRow, *, limit: int,
                policy: CanaryPolicy, definition: str, now_s: float) -> CanaryRow:
    """Decide an automatic canary once its admitted records are all done; the row after."""
    if policy.then != "auto" or row.outcome or row.admitted < limit:
        return row
    totals = await runs.read_run(ledger, row.run_id)
    if totals is None:
        return row
    counts = totals.counts
    done = counts.written + counts.dead_lettered
    if done < len(await admitted_ids(state, row.run_id)):
        return row  # admitted records still in flight or back on the queue
    outcome = PASSED if policy.passes(done, counts.dead_lettered) else FAILED
    try:
        await state.update_entity(
            {"PartitionKey": CANARY_PARTITION, "RowKey": row.run_id, "Outcome": outcome},
            mode=UpdateMode.MERGE, etag=row.etag, match_condition=MatchConditions.IfNotModified)
    except ResourceModifiedError:
        return await _row(state, row.run_id)  # another instance judged (or a claim moved)
    if outcome == FAILED:
        await _failed(state, row.run_id, definition, counts, policy=policy, now_s=now_s)
    else:
        logger.info("canary of run %s passed: %d dead-lettered of %d", row.run_id,
                    counts.dead_lettered, done,
                    extra={"event": "canary_passed", "run_id": row.run_id})
    return await _row(state, row.run_id)


async def _failed(state: TableClient, run_id: str, definition: str, counts: MessageCounts, *,
                  policy: CanaryPolicy, now_s: float) -> None:
    written, dead_lettered = counts.written, counts.dead_lettered
    rate = dead_lettered / max(1, written + dead_lettered)
    reason = (f"canary of run {run_id} failed: {dead_lettered} of {written + dead_lettered} "
              f"records dead-lettered ({rate:.1%} > max_failure_rate "
              f"{policy.max_failure_rate:.1%})")
    await flags.set_flag(state, flags.definition_scope(definition), flags.PAUSED, reason,
                           now_s)
    logger.warning("%s; definition %s paused", reason, definition,
                   extra={"event": "canary_failed", "run_id": run_id})
    emit(names.CANARY_FAILED, {names.RUN_ID: run_id, names.DEFINITION: definition,
                               names.WRITTEN: written, names.DEAD_LETTERED: dead_lettered,
                               names.FAILURE_RATE: rate})
