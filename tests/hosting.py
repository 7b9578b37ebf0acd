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


class SentBack:
    """A real queue client that also keeps the text of every message sent through it, so a
    test carries out what the worker sent back without waiting out its visibility delay."""

    def __init__(self, queue: QueueClient) -> None:
        self._queue = queue
        self.texts: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)

    async def send_message(self, content: str, **options: Any) -> Any:
        self.texts.append(content)
        return await self._queue.send_message(content, **options)

    def taken(self) -> list[str]:
        """What was sent since the last call."""
        texts, self.texts = self.texts, []
        return texts


def sent_back(services: Services) -> SentBack:
    """Keep what the worker of ``services`` sends to the batches queue from now on."""
    recorder = SentBack(services.storage.batches)
    services.storage.batches = recorder  # type: ignore[assignment]
    return recorder


async def deliver_all(services: Services, first: str, *, limit: int = 30) -> list[MessageCounts]:
    """Carry out ``first`` (JSON), then every message the worker sends back, at once (their
    delays are not waited out); answer each delivery's counts, at most ``limit`` of them."""
    recorder = sent_back(services) if not isinstance(services.storage.batches, SentBack) \
        else services.storage.batches
    recorder.taken()
    pending, done = [first], []
    while pending:
        assert len(done) < limit, f"still sending messages back after {limit} deliveries"
        done.append(await worker.process_message(services, pending.pop(0).encode()))
        pending += recorder.taken()
    return done
