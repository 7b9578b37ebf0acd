"""``python -m sync deadletters list|show|replay|purge``: records the worker gave up on.

A replay puts the records back on ``sync-batches`` as contract version 2 messages, one per run
(split to fit), batch id ``<run>:replay-<token>`` so the run keeps its records. Each record
keeps its history (strikes, attempts, first and last seen) and the replay is added to it:
``last_fault`` says which replay this is and what it replays.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any, Final

from sync.config.storage_names import DEAD_LETTER_QUEUE, DEAD_LETTER_TABLE
from sync.failures.errors import ContractError
from sync.message.contract import (
    DEFAULT_DEFINITION,
    MAX_FAULT_CHARS,
    MAX_RECORDS_PER_MESSAGE,
    Message,
    RecordRef,
    fitting_groups,
    record_from,
)
from sync.message.ids import replay_batch_id
from sync.ops import repaircli
from sync.ops.queuescan import Found
from sync.ops.repair import Outgoing, Plan, Row
from sync.state.letter_index import REPLAYING, dead_letter_entity

NOUN: Final = "dead letters"


class DeadLetters:
    """The dead-letter side of the repair commands (``sync.ops.repair.Kind``)."""

    noun = NOUN
    table = DEAD_LETTER_TABLE
    queue = DEAD_LETTER_QUEUE

    def entity_for(self, found: Found, expires_at_s: float) -> Row | None:
        try:
            envelope = json.loads(found.body)
            if envelope.get("kind") != "record":
                return None
            return dead_letter_entity(envelope, found.message_id, expires_at_s)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def plan(self, rows: Sequence[Row], token: str) -> Plan:
        stays: list[tuple[Row, str]] = []
        refs: list[tuple[Row, RecordRef]] = []
        for row in rows:
            try:
                refs.append((row, record_of(row)))
            except ContractError as error:
                stays.append((row, error.reason))
        return Plan(tuple(_messages(refs, token)), tuple(stays))

    def message_text(self, rows: Sequence[Row], batch_id: str) -> str:
        """The records of one run go back as one message of the run's definition (any of its
        lanes: the worker picks the open one)."""
        definition = str(rows[0].get("Definition", DEFAULT_DEFINITION)) if rows \
            else DEFAULT_DEFINITION
        return Message(batch_id, tuple(record_of(row) for row in rows),
                            definition=definition).to_json()

    def summary(self, row: Row) -> str:
        status = f"{row.get('Status') or ''} {row.get('Code', '')}".strip()
        return (f"{row['PartitionKey']}  {row['RowKey']}  {row.get('Reason', '')}  "
                f"{status or '-'}  {row.get('State', '')}  {row.get('At', '')}")


def record_of(row: Row) -> RecordRef:
    """The record a row holds, with its history and this replay added; ContractError when
    the row no longer makes a valid record."""
    replay = int(row.get("Replays", 0)) + (0 if row.get("State") == REPLAYING else 1)
    fault = (f"replay {replay} of {row.get('Reason', '')}: {row.get('Status') or ''} "
             f"{row.get('Code', '')} {row.get('Message', '')}")
    history: dict[str, Any] = {
        "strikes": int(row.get("Strikes", 0)), "attempts": int(row.get("Attempts", 0)),
        "first_seen": str(row.get("FirstSeen", "")), "last_seen": str(row.get("LastSeen", "")),
        "last_fault": " ".join(fault.split())[:MAX_FAULT_CHARS]}
    inputs = json.loads(str(row["Inputs"])) if row.get("Inputs") else None
    return record_from({"id": row.get("RecordId"), "input": row.get("Input"),
                        "history": history, **({"current": inputs} if inputs else {})},
                       f"dead letter {row.get('RowKey')}")


def _messages(refs: list[tuple[Row, RecordRef]], token: str) -> list[Outgoing]:
    """One batch per run (a row already being replayed keeps its batch), split to fit."""
    batches: dict[str, list[tuple[Row, RecordRef]]] = {}
    for row, ref in refs:
        batches.setdefault(_batch_of(row, token), []).append((row, ref))
    out: list[Outgoing] = []
    for batch_id, items in batches.items():
        row_of = {ref.id: row for row, ref in items}
        groups = fitting_groups((ref for _, ref in items), MAX_RECORDS_PER_MESSAGE)
        for number, group in enumerate(groups):
            name = batch_id if number == 0 else _numbered(batch_id, number)
            out.append(Outgoing(name, tuple(row_of[ref.id] for ref in group)))
    return out


def _batch_of(row: Row, token: str) -> str:
    if row.get("State") == REPLAYING and row.get("ReplayBatch"):
        return str(row["ReplayBatch"])
    return replay_batch_id(str(row["PartitionKey"]), token)


def _numbered(batch_id: str, number: int) -> str:
    suffix = f".{number}"
    return batch_id[:128 - len(suffix)] + suffix


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """``list|show|replay|purge`` with the target and the filters."""
    repaircli.configure(parser, DeadLetters(), id_help="only this record id (repeatable)",
                        scan_flag=True)


def main(args: argparse.Namespace) -> int:
    """Run the action."""
    return repaircli.main_for(DeadLetters(), always_scan=False)(args)
