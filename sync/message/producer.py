"""For upstream producers: validate records, chunk them into messages, send them.

A producer that cannot use this module sends the same JSON (see ``schemas/batch-message.v4.json``)
base64-encoded, e.g. with azure-storage-queue's ``TextBase64EncodePolicy``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from azure.storage.queue.aio import QueueClient

from sync.failures.errors import ContractError
from sync.message.contract import (
    DEFAULT_DEFINITION,
    NEVER_EXPIRE,
    Message,
    RecordRef,
    fitting_groups,
    record_from,
)

SEND_CONCURRENCY: Final = 16


@dataclass(frozen=True, slots=True)
class LineError:
    """A JSONL line that is not a valid record, with the reason."""

    line: int
    reason: str


def read_jsonl(lines: Iterable[str]) -> tuple[list[RecordRef], list[LineError]]:
    """Records from JSON lines (``{"id": ..., "input": ...}``); blank lines are skipped."""
    records: list[RecordRef] = []
    errors: list[LineError] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(record_from(json.loads(line), f"line {number}"))
        except json.JSONDecodeError as error:
            errors.append(LineError(number, f"not JSON: {error.msg}"))
        except ContractError as error:
            errors.append(LineError(number, error.reason))
    return records, errors


def messages_for(records: Sequence[RecordRef], batch_prefix: str, batch_size: int, *,
                 definition: str = DEFAULT_DEFINITION,
                 lane: tuple[str, str] | None = None) -> list[Message]:
    """Batch messages of at most ``batch_size`` records (fewer where long inputs would not fit a
    queue message), ids ``<prefix>-000001`` and on, for ``definition`` (through ``lane``, or
    any of its lanes). ContractError if an id repeats."""
    if len({r.id for r in records}) != len(records):
        raise ContractError("the records repeat an id; each record may appear once")
    return [Message(f"{batch_prefix}-{n:06d}", group, definition=definition, lane=lane)
            for n, group in enumerate(fitting_groups(records, batch_size), start=1)]


async def send(queue: QueueClient, messages: Sequence[Message]) -> int:
    """Send the messages (the client must encode base64); answer how many were sent."""
    slots = asyncio.Semaphore(SEND_CONCURRENCY)

    async def one(message: Message) -> None:
        async with slots:
            await queue.send_message(message.to_json(), time_to_live=NEVER_EXPIRE)

    await asyncio.gather(*(one(message) for message in messages))
    return len(messages)
