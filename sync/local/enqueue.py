"""``sync enqueue --file updates.jsonl``: validate, chunk, send a producer's records.

Storage as every operator command finds it (``--account``, ``--local``, or
``AzureWebJobsStorage`` from the environment or ``local.settings.json``). The definition and
the lane are checked against what the deployment's hosts published (``sync.ops.known``), or
before any host has, against the settings here (the single ``default`` when they name none).
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
from sync.message.contract import Message, RecordRef
from sync.message.producer import messages_for, read_jsonl, send
from sync.ops.control import command_settings
from sync.ops.known import NONE_PUBLISHED, Known, known_definitions, shell_definitions
from sync.ops.outcome import CommandError
from sync.ops.target import QUEUE_ROLE, add_target_arguments, explain, storage_for
from sync.state.deployment import Published
from sync.state.storage import queue_client, storage_credential, table_client

MAX_ERRORS_SHOWN: Final = 20


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
        return messages_for(records, prefix, args.batch_size, definition=definition.name,
                            lane=lane)
    except ContractError as error:
        raise CommandError(f"{error}; nothing was sent") from None


def _safe_prefix(path: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "._:-" else "-" for c in path.stem)
    return stem[:100] or "producer"
