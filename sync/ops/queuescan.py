"""Reading a whole queue (a peek shows at most 32 messages) and deleting messages by id.

A scan receives every visible message, page by page, which hides each one for
``SCAN_VISIBILITY_S``; at the end the messages it did not delete are made visible again at once.
Only the dead-letter and poison queues are scanned: nothing else consumes them, so hiding them
for a moment delays nobody. A message's id is stable; deleting it needs the pop receipt of the
receive that returned it, which is why deletion happens inside a scan.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue.aio import QueueClient

from sync.config.settings import StorageSettings

SCAN_VISIBILITY_S: Final = 60
"""How long a scanned message stays hidden if the scan dies before releasing it."""
SCAN_PAGE: Final = 32
MAX_SCANNED: Final = 100_000
"""A scan stops after this many messages (far more than a night's failures)."""


@dataclass(frozen=True, slots=True)
class Found:
    """One message as a scan saw it: its id, pop receipt and body (base64 removed)."""

    message_id: str
    pop_receipt: str
    body: str
    inserted_at: str


def raw_queue(storage: StorageSettings, name: str,
              credential: AsyncTokenCredential | None) -> QueueClient:
    """A queue client that hands content over as stored: the scan decodes it itself, so a
    message that is not base64 is still read."""
    if storage.connection_string:
        return QueueClient.from_connection_string(storage.connection_string, name)
    return QueueClient(str(storage.queue_url), name, credential=credential)


def body_text(content: str) -> str:
    """A message's body: base64 removed where it is base64 of UTF-8, else as stored."""
    try:
        return base64.b64decode(content, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return content


async def scan(queue: QueueClient, delete: Callable[[Found], bool],
               limit: int = MAX_SCANNED,
               on_seen: Callable[[int], None] | None = None) -> list[Found]:
    """Every visible message (up to ``limit``); those ``delete`` picks are deleted, the rest
    released. Returns what was seen, deleted ones included; ``on_seen`` hears the count after
    each page."""
    seen: list[Found] = []
    kept: list[Found] = []
    ids: set[str] = set()
    try:
        while len(seen) < limit:
            page = [m async for m in queue.receive_messages(
                messages_per_page=SCAN_PAGE, max_messages=SCAN_PAGE,
                visibility_timeout=SCAN_VISIBILITY_S)]
            fresh = [m for m in page if m.id not in ids]
            if not fresh:
                break
            for message in fresh:
                ids.add(message.id)
                found = Found(message.id, str(message.pop_receipt), body_text(message.content),
                              _iso(message.inserted_on))
                seen.append(found)
                if delete(found):
                    await _delete(queue, found)
                else:
                    kept.append(found)
            if on_seen is not None:
                on_seen(len(seen))
    finally:
        await release(queue, kept)
    return seen


async def _delete(queue: QueueClient, found: Found) -> None:
    with contextlib.suppress(ResourceNotFoundError):  # gone already: what was wanted
        await queue.delete_message(found.message_id, found.pop_receipt)


async def release(queue: QueueClient, found: Iterable[Found]) -> None:
    """Make scanned messages visible again."""
    for item in found:
        with contextlib.suppress(ResourceNotFoundError):
            await queue.update_message(item.message_id, item.pop_receipt,
                                       visibility_timeout=0)


def _iso(moment: object) -> str:
    strftime = getattr(moment, "strftime", None)
    return str(strftime("%Y-%m-%dT%H:%M:%SZ")) if strftime else ""
