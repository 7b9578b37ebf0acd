"""The run ledger in Table Storage: one partition per run, holding the run's row (what was
planned, when it started, whether it completed) and one row per processed message.

- partition ``run:<run id>`` (the run of a message: ``sync.message.ids.run_id_of``), so one
  run's totals are one partition query;
- row ``run``: the run's row (``sync.state.runs`` writes its lifecycle fields; the planner its
  manifest);
- rows ``msg:<batch id>|<attempt>``: what one processing of one message did. The worker
  **commits** a delivery by creating its row (``commit_message``): of two deliveries of one
  message (a lease that ran out while storage stood still, a host that died before deleting
  it), the first to commit counts the message's records and sends its remainder; the other
  counts nothing and sends nothing, so no record is counted by two rows. The remainder's parts
  are kept in the row until they are sent (``unsent_parts``): a delivery that finds the row
  with parts unsent sends them (the same ids: whichever delivery of a part commits first
  counts it). Every message the product makes has an id of its own
  (``sync.message.ids.part_id``), so no two messages share a row.
- rows ``tally:<token>``: one process's running totals of a planned run (a **tally**).

Summing the message rows after every message would read the whole run's partition per message,
which grows with the run: a 500-message run read about 125,000 rows, and parsing them cost more
CPU than the writes. So every process also keeps, per planned run, the sum of what it processed
and stores it in its own row (only that process writes it: no contention), and the sum of a
run's tallies is one short query. A tally can only count too much (a message processed twice),
never too little: a message's tally is stored before its completion check, and a process that
dies between its message row and its tally leaves the message on the queue, whose next
delivery finds the row and tallies it again (``tally``). So the tallies say when a run
*may* be complete, and ``sync.state.runs.complete_if_done`` confirms with the exact sum of the
message rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.message.counts import MessageCounts
from sync.message.ids import run_id_of
from sync.message.outgoing import Outgoing
from sync.state.ledger_rows import (
    MESSAGE_END,
    MESSAGE_PREFIX,
    PARTS_SENT,
    counts_from,
    message_entity,
    message_key,
)
from sync.state.tallies import tallied, tallies_of


async def record_message(table: TableClient, batch_id: str, attempt: int,
                         counts: MessageCounts) -> None:
    """Write (or overwrite) the row of one processed message; then, for a planned run, store
    this process's tally of it."""
    await table.upsert_entity(message_entity(batch_id, attempt, counts), mode=UpdateMode.REPLACE)
    await tally(table, batch_id, counts)


async def commit_message(table: TableClient, batch_id: str, attempt: int,
                         counts: MessageCounts,
                         parts: tuple[Outgoing, ...] = ()) -> Mapping[str, Any] | None:
    """Create the row of one delivery of a message, keeping the ``parts`` it is about to
    send, then store this process's tally of it. None when this call committed; the row
    already there when another delivery of the message committed first (nothing is written,
    nothing tallied)."""
    try:
        await table.create_entity(message_entity(batch_id, attempt, counts, parts))
    except ResourceExistsError:
        found = await message_row(table, batch_id, attempt)
        if found is not None:
            return found
        raise  # created and deleted meanwhile (a run's rows swept): not ours to count
    await tally(table, batch_id, counts)
    return None


async def message_row(table: TableClient, batch_id: str,
                      attempt: int) -> Mapping[str, Any] | None:
    """The row of this delivery of a message, if a delivery of it committed (a host that died
    before deleting it from the queue, or whose lease ran out, handed it over again)."""
    try:
        return await table.get_entity(*message_key(batch_id, attempt))
    except ResourceNotFoundError:
        return None


async def parts_sent(table: TableClient, batch_id: str, attempt: int) -> None:
    """Mark a committed row's parts sent: the next delivery of the message sends nothing."""
    partition, row = message_key(batch_id, attempt)
    await table.update_entity({"PartitionKey": partition, "RowKey": row, PARTS_SENT: True},
                              mode=UpdateMode.MERGE)


async def tally(table: TableClient, batch_id: str, counts: MessageCounts) -> None:
    """Add a message's counts to this process's tally of its run, for a planned run. A
    delivery that finds its row committed tallies the row's counts again: it cannot know
    whether the committer lived to tally them, and a tally may count too much, never too
    little."""
    if tallied(batch_id):
        await tallies_of(table).add(table, run_id_of(batch_id), counts)


async def message_totals(table: TableClient) -> MessageCounts:
    """The sum of every processed message's counts, over every run (a table scan: for tests
    and the local stack; one run's totals are ``sync.state.runs.read_run``)."""
    totals = MessageCounts()
    rows = table.query_entities(f"RowKey ge '{MESSAGE_PREFIX}' and RowKey lt '{MESSAGE_END}'")
    async for entity in rows:
        totals.add(counts_from(entity))
    return totals


