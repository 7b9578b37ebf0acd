"""``sync enqueue --file updates.jsonl``: validate, chunk, send a producer's records.

Storage as every operator command finds it (``--account``, ``--local``, or
``AzureWebJobsStorage`` from the environment or ``local.settings.json``). The definition and
the lane are checked against what the deployment's hosts published (``sync.ops.known``), or
before any host has, against the settings here (the single ``default`` when they name none).

Nothing is sent unless everything is valid: every line, the options (the batch prefix makes
valid batch ids), and then every message as built, decoded again by the worker's own contract
(``sync.message.contract``) and measured against the queue's size limit, so no message this
command sends can end in the poison queue.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Final

from azure.core.exceptions import AzureError
from azure.data.tables.aio import TableClient

from sync.config.settings import StorageSettings
from sync.config.storage_names import BATCH_QUEUE, STATE_TABLE
from sync.failures.errors import ContractError
from sync.message.contract import (
    MAX_QUEUE_MESSAGE_BYTES,
    Message,
    RecordRef,
    decode_message,
    encoded_size_bytes,
)
from sync.message.producer import messages_for, read_jsonl, send
from sync.ops.control import command_settings
from sync.ops.known import NONE_PUBLISHED, Known, known_definitions, shell_definitions
from sync.ops.outcome import CommandError
from sync.ops.target import QUEUE_ROLE, add_target_arguments, explain, storage_for
from sync.state.deployment import Published
from sync.state.storage import queue_client, storage_credential, table_client

MAX_ERRORS_SHOWN: Final = 20
BATCH_NUMBER_CHARS: Final = len("-000001")
MAX_PREFIX_CHARS: Final = 128 - BATCH_NUMBER_CHARS
"""A batch id is at most 128 characters: the prefix, a dash and six digits."""
_PREFIX_CHARS: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789._:-")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``sync enqueue``."""
    parser.add_argument("--file", type=Path, required=True,
                        help='JSON lines, one record each: {"id": "<guid>", "input": "<website>"}')
    parser.add_argument("--batch-prefix", default=None,
                        help="batch ids are <prefix>-000001 and on (default: the file's name)")
    parser.add_argument("--batch-size", type=int, default=100,
                        help="records per message, 1-1000 (100)")
    parser.add_argument("--definition", default=None, metavar="NAME",
                        help="the sync definition the records belong to (default: the "
                             "deployment's only one)")
    parser.add_argument("--lane", default=None, metavar="ENV/IDENTITY",
                        help="write through this lane of the definition (default: the worker "
                             "picks one)")
    add_target_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """Send nothing unless every line is valid and the names are the deployment's."""
    if not 1 <= args.batch_size <= 1000:
        raise CommandError("--batch-size must be between 1 and 1000")
    try:
        with args.file.open(encoding="utf-8") as lines:
            records, errors = read_jsonl(lines)
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"cannot read {args.file}: {error}") from None
    for line_error in errors[:MAX_ERRORS_SHOWN]:
        print(f"{args.file}:{line_error.line}: {line_error.reason}", file=sys.stderr)
    if errors:
        raise CommandError(f"{len(errors)} invalid line(s); nothing was sent")
    try:
        check_prefix(args.batch_prefix or _safe_prefix(args.file))
    except ContractError as error:
        raise CommandError(f"{error}; nothing was sent") from None
    storage = storage_for(args)
    sent = asyncio.run(_enqueue(storage, args, records))
    print(f"sent {len(records)} records in {sent} messages to {BATCH_QUEUE}")
    return 0


async def _enqueue(storage: StorageSettings, args: argparse.Namespace,
                   records: list[RecordRef]) -> int:
    credential = storage_credential(storage)
    try:
        async with (table_client(storage, STATE_TABLE, credential) as state,
                    queue_client(storage, BATCH_QUEUE, credential) as queue):
            definition = (await _known(state, command_settings(args))).choose(args.definition)
            messages = _messages(records, args, definition)
            return await send(queue, messages)
    except AzureError as error:
        raise explain(error, "the state table or the batches queue", QUEUE_ROLE) from None
    finally:
        if credential is not None:
            await credential.close()


async def _known(state: TableClient, environ: dict[str, str]) -> Known:
    """The published definitions; before any host published, the shell's settings (at least
    the single ``default``: a producer may send before the app first starts)."""
    known = await known_definitions(state, environ)
    if known.definitions:
        return known
    return Known(tuple(shell_definitions(environ)), f"{NONE_PUBLISHED}: this shell's settings")


def _messages(records: list[RecordRef], args: argparse.Namespace,
              definition: Published) -> list[Message]:
    lane: tuple[str, str] | None = None
    if args.lane is not None:
        if args.lane not in definition.lanes:
            raise CommandError(f"lane {args.lane!r} is not a lane of definition "
                               f"{definition.name} ({', '.join(definition.lanes)})")
        environment, _, identity = args.lane.partition("/")
        lane = (environment, identity)
    prefix = args.batch_prefix or _safe_prefix(args.file)
    try:
        messages = messages_for(records, prefix, args.batch_size, definition=definition.name,
                                lane=lane)
        check_messages(messages)
    except ContractError as error:
        raise CommandError(f"{error}; nothing was sent") from None
    return messages


def check_prefix(prefix: str) -> None:
    """ContractError unless ``prefix`` makes valid batch ids (``<prefix>-000001``)."""
    bad = sorted(set(prefix) - _PREFIX_CHARS)
    if not prefix or len(prefix) > MAX_PREFIX_CHARS or bad:
        found = f"; it holds {''.join(bad)!r}" if bad else f"; it has {len(prefix)}"
        raise ContractError(f"--batch-prefix must be 1-{MAX_PREFIX_CHARS} characters of "
                            f"A-Z a-z 0-9 . _ : - (batch ids are <prefix>-000001){found}")


def check_messages(messages: list[Message]) -> None:
    """ContractError naming the first message the worker would refuse: decoded as the worker
    decodes it, and measured as the queue measures it (after base64)."""
    for message in messages:
        text = message.to_json()
        try:
            decode_message(text.encode("utf-8"))
        except ContractError as error:
            raise ContractError(f"message {message.batch_id}: {error.reason}") from None
        if encoded_size_bytes(text) > MAX_QUEUE_MESSAGE_BYTES:
            raise ContractError(f"message {message.batch_id} takes {encoded_size_bytes(text):,} "
                                f"bytes on the queue, over its {MAX_QUEUE_MESSAGE_BYTES:,}")


def _safe_prefix(path: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "._:-" else "-" for c in path.stem)
    return stem[:100] or "producer"
