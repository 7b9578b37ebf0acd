"""What producers and the queue can hand the worker: broken messages reach the poison queue with
their reason and the worker goes on; a message delivered twice ends as once; a misconfigured
host consumes nothing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from azure.storage.queue.aio import QueueClient

from sync.config.settings import StorageSettings
from sync.config.storage_names import BATCH_QUEUE, DEAD_LETTER_QUEUE, LEDGER_TABLE, POISON_QUEUE
from sync.local.azurite import ROOT, StorageAccount
from sync.local.verify import created_count, emulator_stats, is_enriched
from sync.message.contract import NEVER_EXPIRE, Message, RecordRef
from sync.state.ledger import message_totals
from sync.state.storage import ensure_resources, table_client
from tests.chaos.harness import (
    FAST_ENV,
    Result,
    Stack,
    encoded,
    note,
    queue_bodies,
    queue_length,
    record_id,
    rows_by_id,
    wait_until,
)

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(180)]

StartStack = Callable[..., Awaitable[Stack]]
SMALL = 20
"""Accounts seeded for these scenarios: the messages name a few of them directly."""
BOUND_S = 60.0


def _message(batch_id: str, rows: dict[str, dict[str, Any]], indexes: range) -> Message:
    ids = [record_id(n) for n in indexes]
    return Message(batch_id, tuple(RecordRef(id=i, input=rows[i]["websiteurl"])
                                        for i in ids))


def _raw(version: int, batch_id: str, records: list[dict[str, str]]) -> bytes:
    return json.dumps({"version": version, "batch_id": batch_id, "attempt": 0,
                       "records": records}).encode()


FUZZ: dict[str, tuple[str, str]] = {
    "bad JSON": (encoded(b'{"version": 2, "batch_id": "fuzz-bad-json", "rec'), "JSON"),
    "unknown version": (encoded(_raw(99, "fuzz-v99", [])), "version"),
    "not base64": ("this is not base64: {version: 2} %%%", "base64"),
    "not UTF-8": (encoded(b"\xff\xfe\xfa{\"version\": 2}\xc3\x28"), "UTF-8"),
}
"""Each broken message (as the queue holds it) and a word its poison reason names."""
OVERSIZED = encoded(_raw(2, "fuzz-oversized", [
    {"id": record_id(1), "input": "https://" + "a" * 3000 + ".example"},
    {"id": record_id(7), "input": "https://www.fine.example"}]))
"""A message whose one record breaks the contract alone: that record is dead-lettered as
``unusable_input``, its sibling goes on, the message is not poisoned."""


async def _send_raw(account: StorageAccount, texts: list[str]) -> None:
    async with QueueClient.from_connection_string(account.connection_string,
                                                  BATCH_QUEUE) as queue:
        for text in texts:
            await queue.send_message(text, time_to_live=NEVER_EXPIRE)


async def _written(stack: Stack, ids: list[str]) -> bool:
    rows = await rows_by_id(stack)
    definition = stack.settings.definitions.first.table
    return all(is_enriched(rows[i], definition) for i in ids)


async def test_fuzzed_messages_reach_poison_with_their_reason(
        stacks: StartStack, account: StorageAccount) -> None:
    started_s = time.monotonic()
    stack = await stacks(records=SMALL)
    rows = await rows_by_id(stack)
    good = _message("fuzz-good", rows, range(5))
    await _send_raw(account, [text for text, _ in FUZZ.values()])
    await _send_raw(account, [encoded(good.to_json().encode()), OVERSIZED])
    stack.start_host(fire_timer=False)

    async def all_poisoned() -> bool:
        return await queue_length(stack.storage, POISON_QUEUE) >= len(FUZZ)

    ids = [r.id for r in good.records]
    assert await wait_until(lambda: _written(stack, ids), BOUND_S)
    assert await wait_until(all_poisoned, BOUND_S)
    poison = await queue_bodies(stack.storage, POISON_QUEUE)
    assert len(poison) == len(FUZZ)
    assert all(entry["kind"] == "message" for entry in poison), poison
    reasons = " | ".join(str(entry["reason"]) for entry in poison)
    for name, (_, word) in FUZZ.items():
        assert any(word.lower() in str(e["reason"]).lower() for e in poison), (name, reasons)
    letters = await queue_bodies(stack.storage, DEAD_LETTER_QUEUE)
    assert [(e["record"]["id"], e["reason"]) for e in letters] == [
        (record_id(1), "unusable_input")]
    assert stack.hosts[0].alive
    note(Result("fuzzed messages", f"{len(FUZZ)} broken messages, 1 with one record too long "
                "and 1 good one", len(ids), len(ids),
                {"poison (messages)": len(poison), "unusable_input": len(letters)},
                time.monotonic() - started_s))


async def test_a_message_delivered_twice_ends_as_once(stacks: StartStack,
                                                      account: StorageAccount) -> None:
    started_s = time.monotonic()
    stack = await stacks(records=SMALL)
    rows = await rows_by_id(stack)
    twice = _message("duplicate-000001", rows, range(10))
    text = encoded(twice.to_json().encode())
    await _send_raw(account, [text, text])
    stack.start_host(fire_timer=False)
    stack.start_host(fire_timer=False)
    ids = [r.id for r in twice.records]
    assert await wait_until(lambda: _written(stack, ids), BOUND_S)

    async def both_processed() -> bool:
        return await queue_length(stack.storage, BATCH_QUEUE) == 0

    assert await wait_until(both_processed, BOUND_S)
    async with table_client(stack.storage, LEDGER_TABLE, None) as ledger:
        totals = await message_totals(ledger)
    assert totals.written == len(ids)
    assert totals.dead_lettered == 0
    after = await rows_by_id(stack)
    assert all(after[i] == rows[i] for i in rows if i not in ids)
    assert created_count(await emulator_stats(stack.dataverse_url)) == 0
    assert await queue_bodies(stack.storage, POISON_QUEUE) == []
    note(Result("duplicate delivery", "the same message twice, two hosts", len(ids),
                totals.written, {}, time.monotonic() - started_s))


REQUIRED = ("DATAVERSE_URL", "ENRICHMENT_URL", "ENRICHMENT_API_KEY")


@pytest.mark.parametrize("name", REQUIRED)
@pytest.mark.parametrize("value", [None, "garbage value"], ids=["missing", "garbage"])
async def test_a_host_with_a_bad_setting_consumes_nothing(
        account: StorageAccount, name: str, value: str | None) -> None:
    """The function app fails at load naming the setting; the message waiting stays queued."""
    started_s = time.monotonic()
    if name == "ENRICHMENT_API_KEY" and value is not None:
        value = ""
    storage = StorageSettings(connection_string=account.connection_string)
    await ensure_resources(storage)
    await _send_raw(account, [encoded(_raw(2, "waiting-000001", [
        {"id": record_id(0), "input": "https://contoso.example"}]))])
    env = {**os.environ, **FAST_ENV, "AzureWebJobsStorage": account.connection_string,
           "DATAVERSE_URL": "http://127.0.0.1:9", "ENRICHMENT_URL": "http://127.0.0.1:9",
           "ENRICHMENT_API_KEY": "key", "DATAVERSE_STATIC_TOKEN": "token"}
    if value is None:
        del env[name]
    else:
        env[name] = value
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "sync", "host"], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode != 0
    assert name in done.stderr, done.stderr[-2000:]
    async with QueueClient.from_connection_string(account.connection_string,
                                                  BATCH_QUEUE) as queue:
        waiting = await queue.peek_messages(max_messages=32)
    assert len(waiting) == 1
    assert waiting[0].dequeue_count in (0, None)
    state = "missing" if value is None else f"= {value!r}"
    note(Result(f"host with {name} {state}", "the function app's settings", 1, 0, {},
                time.monotonic() - started_s, f"exit {done.returncode}, named, 0 consumed"))
