"""The index of dead letters and poison messages in Table Storage: one row per item.

A queue cannot be browsed (a peek shows at most 32 visible messages), so every dead letter and
poison message also gets a row that can be listed and filtered at any size:

- ``SyncDeadLetters``: partition = the run, row = the record id. A re-delivery of the same
  message (or a replay that fails again) overwrites the row instead of adding one.
- ``SyncPoison``: partition = the run when the body names a batch, row = a hash of the body, so
  the same message poisoned again (by the worker, or found again on the queue) is one row.

Both hold personal data: every row carries ``ExpiresAt`` (epoch seconds, on the writer's
clock: ``SYNC_DEADLETTER_RETENTION_DAYS`` after it was written) and goes when a sweep finds it
past: the planner's timer sweeps both indexes at every tick (``sweep_quietly``), and the
``deadletters`` and ``poison`` commands before they list. The queue messages get the same
retention as their time-to-live.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.message.ids import run_id_of

logger = logging.getLogger(__name__)

DAY_S: Final = 86_400
SWEEP_BUDGET_S: Final = 60.0
"""The longest one index's sweep takes at a tick of the planner's timer."""
BODY_CHUNK_CHARS: Final = 30_000
"""A table string property holds at most 64 KiB of UTF-16: a message body is split in parts."""
PREVIEW_CHARS: Final = 200
NO_RUN: Final = "no-run"
"""The partition of a poison message whose body names no batch."""
DEAD: Final = "dead"
REPLAYING: Final = "replaying"
REPLAYED: Final = "replayed"
STATES: Final = (DEAD, REPLAYING, REPLAYED)


def retention_s(days: int) -> int:
    """The retention as seconds: the queue message's time-to-live."""
    return days * DAY_S


def dead_letter_entity(envelope: Mapping[str, Any], message_id: str,
                       expires_at_s: float) -> dict[str, Any]:
    """The index row of one dead letter, from its envelope (``sync.state.dead_letters``)."""
    record = envelope["record"]
    return {"PartitionKey": str(envelope["run_id"]), "RowKey": str(record["id"]),
            "Reason": str(envelope["reason"]), "RecordId": str(record["id"]),
            "Input": str(record["input"]), "Table": str(envelope["table"]),
            "Definition": str(envelope.get("definition", "default")),
            "BatchId": str(envelope["batch_id"]), "Service": str(envelope["service"]),
            "Status": int(envelope["status"] or 0), "Code": str(envelope["code"]),
            "Message": str(envelope["message"])[:BODY_CHUNK_CHARS],
            "Attempts": int(envelope["attempts"]), "Strikes": int(envelope["strikes"]),
            "FirstSeen": str(envelope["first_seen"]), "LastSeen": str(envelope["last_seen"]),
            "At": str(envelope["at"]), "ExpiresAt": float(expires_at_s), "State": DEAD,
            "MessageId": message_id,
            **({"Inputs": json.dumps(record["inputs"])} if record.get("inputs") else {})}


def body_key(body: str) -> str:
    """The row key of a poison message: stable for the same body."""
    return hashlib.sha256(body.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def run_of_body(body: str) -> str:
    """The run a poison message belonged to, when its body is JSON naming a batch."""
    try:
        data = json.loads(body)
    except ValueError:
        return NO_RUN
    batch_id = data.get("batch_id") if isinstance(data, dict) else None
    if not isinstance(batch_id, str) or not batch_id or any(c in batch_id for c in "/\\#?"):
        return NO_RUN
    return run_id_of(batch_id)[:256]


def body_parts(body: str) -> dict[str, Any]:
    """The body as ``Body0``, ``Body1``... properties, each within a property's limit."""
    chunks = [body[i:i + BODY_CHUNK_CHARS] for i in range(0, len(body), BODY_CHUNK_CHARS)]
    return {"BodyParts": len(chunks), **{f"Body{n}": chunk for n, chunk in enumerate(chunks)}}


def body_of(entity: Mapping[str, Any]) -> str:
    """The body a poison row holds, joined again."""
    return "".join(str(entity.get(f"Body{n}", "")) for n in range(int(entity.get("BodyParts",
                                                                               0))))


def poison_entity(body: str, *, reason: str, source: str, message_id: str, at: str,
                  expires_at_s: float, truncated: bool = False) -> dict[str, Any]:
    """The index row of one poison message; ``source`` is ``worker`` or ``host``."""
    return {"PartitionKey": run_of_body(body), "RowKey": body_key(body), "Reason": reason,
            "Source": source, "At": at, "ExpiresAt": float(expires_at_s), "State": DEAD,
            "MessageId": message_id, "Truncated": truncated,
            "Preview": body[:PREVIEW_CHARS], **body_parts(body)}


async def put(table: TableClient, entity: dict[str, Any]) -> None:
    """Write a row, overwriting the fields of an earlier one (its replay count is kept)."""
    await table.upsert_entity(entity, mode=UpdateMode.MERGE)


async def sweep(table: TableClient, now_s: float, *,
                monotonic_s: Callable[[], float] | None = None,
                budget_s: float = SWEEP_BUDGET_S) -> int:
    """Delete the rows past their expiry, within ``budget_s`` on ``monotonic_s`` when given
    (the next sweep goes on); how many went."""
    deadline_s = None if monotonic_s is None else monotonic_s() + budget_s
    gone = 0
    rows = table.query_entities(f"ExpiresAt lt {float(now_s)!r}",
                                select=["PartitionKey", "RowKey"])
    async for row in rows:
        await table.delete_entity(row["PartitionKey"], row["RowKey"])
        gone += 1
        if deadline_s is not None and monotonic_s is not None and monotonic_s() >= deadline_s:
            break
    return gone


async def sweep_quietly(tables: Sequence[TableClient], now_s: float, *,
                        monotonic_s: Callable[[], float]) -> int:
    """The planner's timer: ``sweep`` each index, logging instead of raising (the plan it
    follows must not fail for it); how many rows went."""
    gone = 0
    for table in tables:
        try:
            gone += await sweep(table, now_s, monotonic_s=monotonic_s)
        except Exception:
            logger.exception("expired %s rows not deleted; the next plan tries again",
                             table.table_name, extra={"event": "index_sweep_failed"})
    if gone:
        logger.info("%d expired dead-letter and poison index rows deleted", gone,
                    extra={"event": "index_swept", "rows": gone})
    return gone
