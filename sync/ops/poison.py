"""``python -m sync poison list|show|replay|purge``: messages no worker could carry out.

Two sources put messages on ``sync-batches-poison``: the worker, for a message that breaks the
contract (an envelope with the reason and the message it echoes), and the Functions host, for
a message whose invocation failed ``maxDequeueCount`` times (the raw message, no envelope).
The worker indexes its own; every ``poison`` command first reads the queue and indexes the
host's. A replay re-sends the original message as it was if the worker can carry it out now:
a message poisoned for records that broke the contract alone (before the worker set such
records apart) is replayed, and the worker dead-letters those records and writes the rest;
otherwise the entry stays and the command says why.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any, Final

from sync.config.storage_names import POISON_QUEUE, POISON_TABLE
from sync.failures.errors import ContractError
from sync.message.contract import read_message
from sync.ops import repaircli
from sync.ops.queuescan import Found
from sync.ops.repair import Outgoing, Plan, Row
from sync.state.letter_index import body_of, poison_entity

NOUN: Final = "poison messages"
HOST_REASON: Final = "delivery_limit"
"""The reason of a message the host moved after ``maxDequeueCount`` failed invocations."""
TRUNCATED: Final = ("the entry echoes only the start of an oversized message; the whole "
                    "message was never kept")


class Poison:
    """The poison side of the repair commands (``sync.ops.repair.Kind``)."""

    noun = NOUN
    table = POISON_TABLE
    queue = POISON_QUEUE

    def entity_for(self, found: Found, expires_at_s: float) -> Row | None:
        envelope = _envelope(found.body)
        if envelope is None:
            return poison_entity(found.body, reason=HOST_REASON, source="host",
                                 message_id=found.message_id, at=found.inserted_at,
                                 expires_at_s=expires_at_s)
        return poison_entity(str(envelope["message"]), reason=str(envelope["reason"]),
                             source="worker", message_id=found.message_id,
                             at=str(envelope.get("at", found.inserted_at)),
                             expires_at_s=expires_at_s,
                             truncated=bool(envelope.get("truncated", False)))

    def plan(self, rows: Sequence[Row], token: str) -> Plan:
        messages: list[Outgoing] = []
        stays: list[tuple[Row, str]] = []
        for row in rows:
            why = why_it_stays(row)
            if why:
                stays.append((row, why))
            else:
                messages.append(Outgoing(str(row["RowKey"]), (row,)))
        return Plan(tuple(messages), tuple(stays))

    def message_text(self, rows: Sequence[Row], batch_id: str) -> str:
        return body_of(rows[0])

    def summary(self, row: Row) -> str:
        preview = " ".join(str(row.get("Preview", "")).split())[:60]
        return (f"{row['PartitionKey']}  {row['RowKey']}  {row.get('Source', '')}  "
                f"{row.get('Reason', '')}  {row.get('State', '')}  {row.get('At', '')}  "
                f"{preview}")


def why_it_stays(row: Row) -> str:
    """Why a poison entry cannot be replayed; empty when it can."""
    if row.get("Truncated"):
        return TRUNCATED
    try:
        message = read_message(body_of(row).encode("utf-8", "surrogatepass"))
    except ContractError as error:
        return f"it still breaks the contract: {error.reason}"
    if not message.records and all(refused.id is None for refused in message.refused):
        return f"it still breaks the contract: {message.refused[0].reason}"
    return ""


def _envelope(body: str) -> dict[str, Any] | None:
    """The worker's envelope (``sync.state.dead_letters.message_envelope``), or None for a raw
    message."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("kind") == "message" and {"reason", "message"} <= \
            data.keys() and "version" not in data:
        return data
    return None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """``list|show|replay|purge`` with the target and the filters."""
    repaircli.configure(parser, Poison(), scan_flag=False,
                        id_help="only this entry, by the key a listing shows (repeatable)")


def main(args: argparse.Namespace) -> int:
    """Read the queue (indexing the host's own poison messages), then run the action."""
    return repaircli.main_for(Poison(), always_scan=True)(args)
