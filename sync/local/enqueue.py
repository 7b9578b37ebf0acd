"""``python -m sync enqueue --file updates.jsonl``: validate, chunk, send a producer's records."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Final

from sync.config.definitions import definitions_from, lane_of
from sync.config.settings import StorageSettings
from sync.config.storage_names import BATCH_QUEUE
from sync.failures.errors import ConfigError, ContractError
from sync.message.contract import DEFAULT_DEFINITION, Message
from sync.message.producer import messages_for, read_jsonl, send
from sync.state.storage import queue_client, storage_credential

MAX_ERRORS_SHOWN: Final = 20


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m sync enqueue``."""
    parser.add_argument("--file", type=Path, required=True,
                        help='JSON lines, one record each: {"id": "<guid>", "input": "<website>"}')
    parser.add_argument("--batch-prefix", default=None,
                        help="batch ids are <prefix>-000001 and on (default: the file's name)")
    parser.add_argument("--batch-size", type=int, default=100,
                        help="records per message, 1-1000 (100)")
    parser.add_argument("--definition", default=DEFAULT_DEFINITION, metavar="NAME",
                        help="the sync definition the records belong to (default); checked "
                             "against SYNC_DEFINITIONS when it is set here")
    parser.add_argument("--lane", default=None, metavar="ENV/IDENTITY",
                        help="write through this lane of the definition (default: the worker "
                             "picks one)")


def main(args: argparse.Namespace) -> int:
    """Send nothing unless every line is valid; storage comes from AzureWebJobsStorage."""
    try:
        with args.file.open(encoding="utf-8") as lines:
            records, errors = read_jsonl(lines)
    except (OSError, UnicodeDecodeError) as error:
        print(f"cannot read {args.file}: {error}", file=sys.stderr)
        return 2
    for line_error in errors[:MAX_ERRORS_SHOWN]:
        print(f"{args.file}:{line_error.line}: {line_error.reason}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} invalid line(s); nothing was sent", file=sys.stderr)
        return 2
    if not 1 <= args.batch_size <= 1000:
        print("--batch-size must be between 1 and 1000", file=sys.stderr)
        return 2
    prefix = args.batch_prefix or _safe_prefix(args.file)
    try:
        lane = _lane(args.definition, args.lane)
        messages = messages_for(records, prefix, args.batch_size, definition=args.definition,
                                lane=lane)
        storage = StorageSettings.from_env(os.environ)
    except (ContractError, ConfigError) as error:
        print(f"{error}; nothing was sent", file=sys.stderr)
        return 2
    sent = asyncio.run(_send(storage, messages))
    print(f"sent {len(records)} records in {sent} messages to {BATCH_QUEUE}")
    return 0


def _lane(name: str, lane: str | None) -> tuple[str, str] | None:
    """The lane the messages name, after checking the definition and the lane exist in the
    deployment's settings as this environment holds them; ConfigError naming what exists."""
    definitions = definitions_from(os.environ)
    definition = definitions.get(name)
    if definition is None:
        raise ConfigError(f"unknown definition {name!r}; the deployment defines: "
                          f"{', '.join(definitions.names)} (SYNC_DEFINITIONS)")
    return None if lane is None else lane_of(definition, lane).wire


def _safe_prefix(path: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "._:-" else "-" for c in path.stem)
    return stem[:100] or "producer"


async def _send(storage: StorageSettings, messages: list[Message]) -> int:
    credential = storage_credential(storage)
    try:
        async with queue_client(storage, BATCH_QUEUE, credential) as queue:
            return await send(queue, messages)
    finally:
        if credential is not None:
            await credential.close()
