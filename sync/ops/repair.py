"""What ``deadletters`` and ``poison`` share: select indexed items, show them, replay, purge.

Replay is idempotent through the index row's state, changed only with the row's ETag:

1. ``dead`` -> ``replaying`` (with the batch id of the message it will go in, and the time):
   of two replays at once, one claims the row and the other skips it;
2. the message goes on ``sync-batches``;
3. ``replaying`` -> ``replayed``; the queue message is deleted where a scan finds it.

A replay that dies between 1 and 3 leaves rows ``replaying``: after ``STALE_CLAIM_S`` the next
replay claims them again and sends them with the batch id they were given, so nothing is lost.
If the first send had gone out, the record is delivered twice under one batch id; the worker
leaves an unchanged record unwritten and writes are idempotent (``If-Match``), so the second
delivery changes nothing. A replayed record that fails again is dead-lettered again by the
worker, which rewrites its row as ``dead``; step 3 then finds the ETag changed and leaves it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient
from azure.storage.queue.aio import QueueClient

from sync.config.settings import StorageSettings
from sync.config.storage_names import BATCH_QUEUE
from sync.message.contract import NEVER_EXPIRE
from sync.ops.queuescan import Found, raw_queue, scan
from sync.ops.selection import Selection
from sync.state import letter_index
from sync.state.letter_index import DEAD, REPLAYED, REPLAYING
from sync.state.storage import queue_client, storage_credential, table_client

STALE_CLAIM_S: Final = 300.0
"""A row ``replaying`` for longer belongs to a replay that died: the next replay takes it."""

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message a replay sends: its batch id and the rows it carries."""

    batch_id: str
    rows: tuple[Row, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """What a replay will send, and the rows that stay, each with why."""

    messages: tuple[Outgoing, ...]
    stays: tuple[tuple[Row, str], ...]


class Kind(Protocol):
    """What differs between dead letters and poison messages."""

    noun: str
    table: str
    queue: str

    def entity_for(self, found: Found, expires_at_s: float) -> Row | None:
        """The index row of a message found on the queue; None when it is not one of ours."""

    def plan(self, rows: Sequence[Row], token: str) -> Plan:
        """Group claimable rows into messages (a row already ``replaying`` keeps its batch)."""

    def message_text(self, rows: Sequence[Row], batch_id: str) -> str:
        """The JSON text of the message that carries these rows."""

    def summary(self, row: Row) -> str:
        """One line for a listing."""


@dataclass(slots=True)
class Store:
    """The index table, the item's queue (raw) and the batches queue, on one credential."""

    index: TableClient
    queue: QueueClient
    batches: QueueClient
    credential: AsyncTokenCredential | None


@contextlib.asynccontextmanager
async def open_store(storage: StorageSettings, kind: Kind) -> AsyncIterator[Store]:
    """The clients a repair command needs, closed when it is done."""
    credential = storage_credential(storage)
    store = Store(table_client(storage, kind.table, credential),
                  raw_queue(storage, kind.queue, credential),
                  queue_client(storage, BATCH_QUEUE, credential), credential)
    try:
        yield store
    finally:
        await store.index.close()
        await store.queue.close()
        await store.batches.close()
        if credential is not None:
            await credential.close()


@dataclass(slots=True)
class Tally:
    """What a command did, counted."""

    replayed: int = 0
    messages_sent: int = 0
    queue_deleted: int = 0
    already_replayed: int = 0
    in_progress: int = 0
    lost_race: int = 0
    stays: list[tuple[str, str]] = field(default_factory=list)


async def select(store: Store, selection: Selection, now_s: float) -> list[Row]:
    """The rows the selection names, after deleting the expired ones."""
    await letter_index.sweep(store.index, now_s)
    query = selection.odata()
    rows = store.index.query_entities(query) if query else store.index.list_entities()
    return [dict(row, _etag=row.metadata["etag"]) async for row in rows
            if float(row.get("ExpiresAt", 0.0)) >= now_s]


async def index_queue(store: Store, kind: Kind, expires_at_s: float,
                      on_seen: Callable[[int], None] | None = None) -> int:
    """Index what is on the queue but not in the index (the host's own poison messages, a
    row whose write failed); existing rows keep their state. How many were added."""
    added = 0
    for found in await scan(store.queue, lambda _: False, on_seen=on_seen):
        entity = kind.entity_for(found, expires_at_s)
        if entity is None:
            continue
        try:
            await store.index.create_entity(entity)
            added += 1
        except ResourceExistsError:
            await _found_again(store.index, entity)
    return added


async def _found_again(index: TableClient, entity: Row) -> None:
    """An indexed item is on the queue: note its message; if it was replayed and this is
    another message (it failed again after the replay), it is ``dead`` again."""
    row = await index.get_entity(entity["PartitionKey"], entity["RowKey"])
    fields: Row = {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"],
                   "MessageId": entity["MessageId"]}
    if row.get("State") == REPLAYED and row.get("MessageId") != entity["MessageId"]:
        fields.update(State=DEAD, At=entity["At"], ExpiresAt=entity["ExpiresAt"])
    await index.update_entity(fields, mode=UpdateMode.MERGE)


def replayable(rows: Sequence[Row], now_s: float, tally: Tally) -> list[Row]:
    """The rows a replay may claim: ``dead`` ones, and ``replaying`` ones left by a replay
    that died; the others are counted."""
    chosen = []
    for row in rows:
        state = row.get("State", DEAD)
        if state == REPLAYED:
            tally.already_replayed += 1
        elif state == REPLAYING and now_s - float(row.get("ReplayingSince", 0.0)) < STALE_CLAIM_S:
            tally.in_progress += 1
        else:
            chosen.append(row)
    return chosen


async def replay(store: Store, kind: Kind, rows: Sequence[Row], *, token: str,
                 now_s: float, on_message: Callable[[int, int], None] | None = None) -> Tally:
    """Replay the rows (see the module's docstring for the order and the crash windows);
    ``on_message`` hears (messages done, messages planned) as it goes."""
    tally = Tally()
    plan = kind.plan(replayable(rows, now_s, tally), token)
    tally.stays = [(str(row["RowKey"]), why) for row, why in plan.stays]
    sent_ids: set[str] = set()
    for done, outgoing in enumerate(plan.messages):
        if on_message is not None:
            on_message(done, len(plan.messages))
        claimed = [row for row in outgoing.rows
                   if await _claim(store.index, row, outgoing.batch_id, now_s)]
        tally.lost_race += len(outgoing.rows) - len(claimed)
        if not claimed:
            continue
        await store.batches.send_message(kind.message_text(claimed, outgoing.batch_id),
                                         time_to_live=NEVER_EXPIRE)
        tally.messages_sent += 1
        for row in claimed:
            await _mark(store.index, row, REPLAYED, {})
            sent_ids.add(str(row.get("MessageId", "")))
        tally.replayed += len(claimed)
    tally.queue_deleted = await delete_messages(store, sent_ids)
    return tally


async def _claim(index: TableClient, row: Row, batch_id: str, now_s: float) -> bool:
    fields = {"ReplayingSince": now_s, "ReplayBatch": batch_id,
              "Replays": int(row.get("Replays", 0)) + (0 if row.get("State") == REPLAYING else 1)}
    return await _mark(index, row, REPLAYING, fields)


async def _mark(index: TableClient, row: Row, state: str, fields: Row) -> bool:
    """Change the row's state if nobody changed the row since we read it."""
    try:
        answer = await index.update_entity(
            {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"], "State": state,
             **fields}, mode=UpdateMode.MERGE, etag=row["_etag"],
            match_condition=MatchConditions.IfNotModified)
    except ResourceModifiedError:
        return False
    row["_etag"] = answer["etag"]
    return True


async def delete_messages(store: Store, message_ids: set[str]) -> int:
    """Delete the queue messages with these ids, where a scan finds them."""
    wanted = message_ids - {""}
    if not wanted:
        return 0
    seen = await scan(store.queue, lambda found: found.message_id in wanted)
    return sum(1 for found in seen if found.message_id in wanted)


async def purge(store: Store, rows: Sequence[Row]) -> tuple[int, int]:
    """Delete the rows and their queue messages: how many of each went."""
    for row in rows:
        await store.index.delete_entity(row["PartitionKey"], row["RowKey"])
    deleted = await delete_messages(store, {str(row.get("MessageId", "")) for row in rows})
    return len(rows), deleted


def public(row: Row) -> Row:
    """A row as the commands show it: without the bookkeeping of the table client."""
    return {key: value for key, value in row.items() if not key.startswith("_")}

