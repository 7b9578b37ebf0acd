"""A local stand-in for the Functions host: fires the timer, listens to the queues.

It follows the queue trigger's documented behaviour: fetch ``batchSize`` messages, fetch again
when the running ones fall to ``newBatchThreshold``, hold a visibility lease while a message runs
and renew it, decode base64, delete on success, on failure make the message visible again after
``visibilityTimeout``, and after ``maxDequeueCount`` failed attempts move it to
``<queue>-poison``. Polling backs off up to ``maxPollingInterval`` while the queue is empty.

Like the Functions host, it outlives a storage outage of any length: a failed fetch is logged
(``storage unreachable since ...``, again every half minute) and tried again with a back-off;
a message whose delete, release or lease renewal fails comes back when its lease ends (the
worker's writes are idempotent).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any, Final

import azure.functions as func
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueMessage as StorageMessage
from azure.storage.queue.aio import QueueClient

from sync.local.functions_index import IndexedFunction, QueueOptions
from sync.local.outage import STORAGE_ERRORS, Outage

logger = logging.getLogger(__name__)

LEASE_S: Final = 60
"""Visibility lease while a message runs; renewed at half its length (a local host may be
given another: ``sync.local.host_knobs``)."""
MIN_POLL_S: Final = 0.1


class BindingError(Exception):
    """The host could not turn a queue message into the function's argument."""


def decode_body(content: str, encoding: str) -> bytes:
    """The message body as the trigger hands it over; BindingError when it cannot be decoded."""
    if encoding == "none":
        return content.encode("utf-8")
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise BindingError("message is not valid base64 (host.json messageEncoding is "
                           "base64)") from None


def to_function_message(message: StorageMessage, body: bytes) -> func.QueueMessage:
    """The ``func.QueueMessage`` the worker would pass."""
    return QueueMessage(  # type: ignore[no-untyped-call]  # azure-functions has no hints here
        id=message.id, body=body, dequeue_count=message.dequeue_count,
        expiration_time=message.expires_on, insertion_time=message.inserted_on,
        time_next_visible=message.next_visible_on, pop_receipt=message.pop_receipt)


async def fire_timer(function: IndexedFunction) -> None:
    """Run a timer function once, as when its schedule comes due."""
    logger.info("timer %s fired (schedule %s)", function.name, function.schedule)
    await _invoke(function, TimerRequest(past_due=False))


async def _invoke(function: IndexedFunction, argument: Any) -> None:
    result = function.call(**{function.binding_name: argument})
    if asyncio.iscoroutine(result):
        await result


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class QueueListener:
    """Feeds one queue-triggered function, as one host instance does."""

    def __init__(self, function: IndexedFunction, queue: QueueClient, poison: QueueClient,
                 options: QueueOptions, *, lease_s: int = LEASE_S) -> None:
        self._function, self._queue, self._poison = function, queue, poison
        self._options = options
        self._lease_s = lease_s
        self._running: set[asyncio.Task[None]] = set()
        self._has_room = asyncio.Event()
        self._has_room.set()
        self._outage = Outage(self._say)

    def _say(self, line: str) -> None:
        logger.warning("%s: %s", self._queue.queue_name, line,
                       extra={"event": "storage_unreachable"})

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set, then let the running messages finish."""
        idle_s = MIN_POLL_S
        while not stop.is_set():
            await self._wait_for_room(stop)
            if stop.is_set():
                break
            try:
                fetched = await self._fetch()
            except STORAGE_ERRORS as error:
                await _pause(stop, self._outage.failed(error))
                continue
            self._outage.succeeded()
            idle_s = MIN_POLL_S if fetched else min(idle_s * 2,
                                                    self._options.max_polling_interval_s)
            if not fetched:
                await _pause(stop, idle_s)
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _wait_for_room(self, stop: asyncio.Event) -> None:
        while len(self._running) > self._options.new_batch_threshold and not stop.is_set():
            self._has_room.clear()
            await self._has_room.wait()

    async def _fetch(self) -> int:
        count = 0
        pager = self._queue.receive_messages(messages_per_page=self._options.batch_size,
                                             visibility_timeout=self._lease_s,
                                             max_messages=self._options.batch_size)
        async for message in pager:
            task = asyncio.create_task(self._handle(message))
            self._running.add(task)
            task.add_done_callback(self._done)
            count += 1
        return count

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._has_room.set()

    async def _handle(self, message: StorageMessage) -> None:
        renewal = asyncio.create_task(self._renew(message))
        try:
            body = decode_body(str(message.content), self._options.message_encoding)
            await _invoke(self._function, to_function_message(message, body))
        except Exception as error:
            await _cancel(renewal)
            await self._failed(message, error)
        else:
            await _cancel(renewal)
            await _settled(self._queue.delete_message(message), message, "delete")

    async def _renew(self, message: StorageMessage) -> None:
        while True:
            await asyncio.sleep(self._lease_s / 2)
            try:
                receipt = await self._queue.update_message(message,
                                                           visibility_timeout=self._lease_s)
            except STORAGE_ERRORS as error:
                logger.warning("message %s: lease not renewed (%s); trying again",
                               message.id, type(error).__name__,
                               extra={"event": "lease_not_renewed"})
                continue
            message.pop_receipt = receipt.pop_receipt

    async def _failed(self, message: StorageMessage, error: Exception) -> None:
        reason = f"{type(error).__name__}: {error}"
        if (message.dequeue_count or 0) >= self._options.max_dequeue_count:
            logger.error("message %s moved to %s after %d attempts: %s", message.id,
                         self._poison.queue_name, message.dequeue_count, reason,
                         extra={"event": "message_poisoned"})
            await _settled(self._poisoned(message), message, "move to the poison queue")
            return
        logger.warning("message %s failed (attempt %d of %d): %s", message.id,
                       message.dequeue_count, self._options.max_dequeue_count, reason,
                       extra={"event": "invocation_failed"})
        await _settled(self._queue.update_message(
            message, visibility_timeout=int(self._options.visibility_timeout_s)),
            message, "release")

    async def _poisoned(self, message: StorageMessage) -> None:
        await self._poison.send_message(message.content, time_to_live=-1)
        await self._queue.delete_message(message)


async def _pause(stop: asyncio.Event, delay_s: float) -> None:
    """Wait ``delay_s``, or less if ``stop`` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay_s)


async def _settled(step: Awaitable[Any], message: StorageMessage, action: str) -> None:
    """Await a storage step of a message's ending; if storage is away, the message comes back
    when its lease ends, as on the Functions host."""
    try:
        await step
    except STORAGE_ERRORS as error:
        logger.warning("message %s: could not %s it (%s); it comes back when its lease ends",
                       message.id, action, type(error).__name__,
                       extra={"event": "message_not_settled"})
