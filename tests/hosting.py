"""Being the Functions host in a test: take visible messages, run the worker, delete them."""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import Sequence
from typing import Any

import pytest
from azure.storage.queue.aio import QueueClient

from sync.config.storage_names import BATCH_QUEUE
from sync.message.counts import MessageCounts
from sync.services import Services
from sync.state import ledger
from sync.work import worker


async def run_instances(instances: Sequence[Services], expected: int,
                        limit_s: float) -> MessageCounts:
    """Hand the visible messages round-robin to the instances, each running its share at once,
    until ``expected`` records are written or dead-lettered (bounded by ``limit_s``)."""
    first = instances[0]
    deadline_s = time.monotonic() + limit_s
    turn = itertools.cycle(instances)
    async with QueueClient.from_connection_string(
            str(first.settings.storage.connection_string), BATCH_QUEUE) as queue:
        while time.monotonic() < deadline_s:
            messages = [m async for m in queue.receive_messages(
                messages_per_page=16, max_messages=16, visibility_timeout=120)]
            await asyncio.gather(*(_run(next(turn), queue, m) for m in messages))
            totals = await ledger.message_totals(first.storage.ledger)
            if totals.written + totals.dead_lettered >= expected:
                return totals
            if not messages:
                await asyncio.sleep(0.2)
    pytest.fail(f"{expected} records not done within {limit_s} s")


async def _run(services: Services, queue: QueueClient, message: Any) -> None:
    services.first_lane.activity.touch()  # an invocation starts: the instance is busy
    await worker.process_message(services, base64.b64decode(message.content))
    await queue.delete_message(message)
