"""The run ledger in Table Storage: one partition per run, holding the run's row (what was
planned, when it started, whether it completed) and one row per processed message.

- partition ``run:<run id>`` (the run of a message: ``sync.message.ids.run_id_of``), so one
  run's totals are one partition query;
- row ``run``: the run's row (``sync.state.runs`` writes its lifecycle fields; the planner its
  manifest);
- rows ``msg:<batch id>|<attempt>``: what one processing of one message did. A message processed
  twice overwrites its own row instead of counting twice; every message the product makes has
  an id of its own (``sync.message.ids.part_id``), so no two messages share a row.
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

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.message.counts import MessageCounts
from sync.message.ids import run_id_of
from sync.state.ledger_rows import (
    MESSAGE_END,
    MESSAGE_PREFIX,
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
    if tallied(batch_id):
        await tallies_of(table).add(table, run_id_of(batch_id), counts)


async def recorded(table: TableClient, batch_id: str, attempt: int) -> bool:
    """Whether this delivery of a message already has its row: it was carried out (its
    remainder sent before the row was written), and a host that died before deleting it from
    the queue handed it over again."""
    try:
        await table.get_entity(*message_key(batch_id, attempt), select=["RowKey"])
    except ResourceNotFoundError:
        return False
    return True


async def message_totals(table: TableClient) -> MessageCounts:
    """The sum of every processed message's counts, over every run (a table scan: for tests
    and the local stack; one run's totals are ``sync.state.runs.read_run``)."""
    totals = MessageCounts()
    rows = table.query_entities(f"RowKey ge '{MESSAGE_PREFIX}' and RowKey lt '{MESSAGE_END}'")
    async for entity in rows:
        totals.add(counts_from(entity))
    return totals


