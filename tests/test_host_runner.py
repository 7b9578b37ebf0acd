"""The local host runner drives the real function_app.py as the Functions host would."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import logging
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.storage.queue import TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient

from sync import entry
from sync.config.storage_names import BATCH_QUEUE, DEAD_LETTER_QUEUE, POISON_QUEUE
from sync.local import host
from sync.local.functions_index import IndexedFunction, QueueOptions, index, load_app
from sync.local.hostrunner import QueueListener
from sync.message.contract import Message, RecordRef
from tests.test_signals import host_stopped_by

APP_PATH = Path(__file__).parents[1] / "function_app.py"
FAST = QueueOptions(batch_size=4, new_batch_threshold=2, max_dequeue_count=2,
                    visibility_timeout_s=0, max_polling_interval_s=0.2,
                    message_encoding="none")  # as host.json: the worker decodes base64
WAIT_S = 30.0


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll an external state (Azurite, the emulator) until it holds; fail after WAIT_S."""
    deadline_s = time.monotonic() + WAIT_S
    while not await check():
        if time.monotonic() > deadline_s:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def listener(app_env: dict[str, str]) -> AsyncIterator[None]:
    functions = {f.name: f for f in index(load_app(APP_PATH), app_env)}
    conn = app_env["AzureWebJobsStorage"]
    queue = QueueClient.from_connection_string(conn, BATCH_QUEUE)
    poison = QueueClient.from_connection_string(conn, POISON_QUEUE)
    stop = asyncio.Event()
    task = asyncio.create_task(QueueListener(functions["process_batch"], queue, poison,
                                             FAST).run(stop))
    yield
    stop.set()
    await asyncio.wait_for(task, WAIT_S)
    await queue.close()
    await poison.close()
    await entry.close_services()


async def seeded(dataverse_url: str) -> list[dict[str, object]]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{dataverse_url}/_emulator/records", params={"entityset": "accounts"}) as answer:
        data = await answer.json()
    rows: list[dict[str, object]] = data["value"] if isinstance(data, dict) else data
    return rows


def producer(app_env: dict[str, str], queue: str) -> QueueClient:
    """A plain azure-storage-queue client, as an upstream producer would use."""
    return QueueClient.from_connection_string(app_env["AzureWebJobsStorage"], queue,
                                              message_encode_policy=TextBase64EncodePolicy())


async def queue_messages(app_env: dict[str, str], queue: str) -> list[str]:
    async with QueueClient.from_connection_string(app_env["AzureWebJobsStorage"], queue) as q:
        return [str(m.content) for m in await q.peek_messages(max_messages=32)]


@pytest.mark.usefixtures("listener")
async def test_producer_message_is_processed(app_env: dict[str, str]) -> None:
    rows = (await seeded(app_env["DATAVERSE_URL"]))[:3]
    message = Message("producer-1", tuple(RecordRef(str(r["accountid"]),
                                                         str(r["websiteurl"])) for r in rows))
    async with producer(app_env, BATCH_QUEUE) as queue:
        await queue.send_message(message.to_json())

    async def written() -> bool:
        current = {r["accountid"]: r for r in await seeded(app_env["DATAVERSE_URL"])}
        return all(current[r["accountid"]]["numberofemployees"] is not None for r in rows)

    await eventually(written, "the three records to be enriched")
    assert gc.get_freeze_count() > 0  # the process's start-up heap, left out of full collections


@pytest.mark.usefixtures("listener")
async def test_bad_messages_reach_poison_and_the_next_good_one_runs(
        app_env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    conn = app_env["AzureWebJobsStorage"]
    raw = QueueClient.from_connection_string(conn, BATCH_QUEUE)
    async with raw, producer(app_env, BATCH_QUEUE) as encoded:
        await raw.send_message("this is not base64!")
        await encoded.send_message("{not json")
        await encoded.send_message(json.dumps({"version": 9, "batch_id": "b", "records": []}))
        row = (await seeded(app_env["DATAVERSE_URL"]))[5]
        good = Message("after-bad-ones", (RecordRef(str(row["accountid"]),
                                                         str(row["websiteurl"])),))
        await encoded.send_message(good.to_json())

    async def three_poisoned() -> bool:
        return len(await queue_messages(app_env, POISON_QUEUE)) == 3

    await eventually(three_poisoned, "three messages in the poison queue")
    poisoned = [json.loads(base64.b64decode(p))
                for p in await queue_messages(app_env, POISON_QUEUE)]
    by_reason = {entry["reason"].split(" (")[0].split(";")[0]: entry["message"]
                 for entry in poisoned}
    assert by_reason["message is not base64"] == "this is not base64!"
    assert by_reason["message is not JSON: Expecting property name enclosed in double quotes "
                     "at char 1"] == "{not json"
    assert "unknown contract version 9" in " ".join(by_reason)
    assert "message is not base64" in caplog.text
    assert "message is not JSON" in caplog.text

    async def good_one_written() -> bool:
        current = {r["accountid"]: r for r in await seeded(app_env["DATAVERSE_URL"])}
        return current[row["accountid"]]["numberofemployees"] is not None

    await eventually(good_one_written, "the good message after the bad ones")
    assert await queue_messages(app_env, BATCH_QUEUE) == []


@pytest.mark.usefixtures("listener")
async def test_missing_record_is_dead_lettered_with_its_reason(app_env: dict[str, str]) -> None:
    ghost = "00000000-0000-4000-8000-00000000dead"
    row = (await seeded(app_env["DATAVERSE_URL"]))[7]
    message = Message("with-ghost", (RecordRef(ghost, "https://www.ghost.example"),
                                          RecordRef(str(row["accountid"]),
                                                    str(row["websiteurl"]))))
    async with producer(app_env, BATCH_QUEUE) as queue:
        await queue.send_message(message.to_json())

    async def dead_lettered() -> bool:
        return len(await queue_messages(app_env, DEAD_LETTER_QUEUE)) == 1

    await eventually(dead_lettered, "the ghost record on the dead-letter queue")
    letter = json.loads(base64.b64decode((await queue_messages(app_env, DEAD_LETTER_QUEUE))[0]))
    assert letter["record"]["id"] == ghost
    assert letter["status"] == 404
    assert letter["batch_id"] == "with-ghost"
    rows = {r["accountid"]: r for r in await seeded(app_env["DATAVERSE_URL"])}
    assert ghost not in rows
    assert rows[row["accountid"]]["numberofemployees"] is not None


@pytest.mark.usefixtures("listener")
async def test_a_jsonl_file_enqueued_by_the_cli_is_carried_out(app_env: dict[str, str],
                                                                tmp_path: Path) -> None:
    rows = (await seeded(app_env["DATAVERSE_URL"]))[10:22]
    path = tmp_path / "recalc.jsonl"
    path.write_text("".join(json.dumps({"id": r["accountid"], "input": r["websiteurl"]}) + "\n"
                            for r in rows))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sync", "enqueue", "--file", str(path), "--batch-size", "5",
        cwd=APP_PATH.parent, env={"PATH": "/usr/bin:/bin",
                                  "AzureWebJobsStorage": app_env["AzureWebJobsStorage"]},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), WAIT_S)
    assert process.returncode == 0, output.decode()
    assert b"sent 12 records in 3 messages" in output

    async def all_written() -> bool:
        current = {r["accountid"]: r for r in await seeded(app_env["DATAVERSE_URL"])}
        return all(current[r["accountid"]]["numberofemployees"] is not None for r in rows)

    await eventually(all_written, "the file's records to be enriched")


class StorageGate:
    """A TCP relay to Azurite's queue endpoint that the test can close (every connection reset,
    new ones refused) and open again on the same port: a storage outage, as the network shows
    it."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port,
                                                  reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._pipes):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._pipes |= {writer, up_writer}
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer),
                             return_exceptions=True)
        self._pipes -= {writer, up_writer}


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.transport.abort()


def through(connection: str, gate: StorageGate) -> str:
    """The connection string with its queue endpoint on the gate's port."""
    return re.sub(r"QueueEndpoint=http://127\.0\.0\.1:\d+/",
                  f"QueueEndpoint=http://127.0.0.1:{gate.port}/", connection)


async def test_the_listener_lives_through_a_storage_outage_and_goes_on_after(
        app_env: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sync.local.hostrunner")
    conn = app_env["AzureWebJobsStorage"]
    gate = StorageGate(int(re.search(r"QueueEndpoint=http://127\.0\.0\.1:(\d+)/",
                                     conn).group(1)))  # type: ignore[union-attr]
    await gate.open()
    functions = {f.name: f for f in index(load_app(APP_PATH), app_env)}
    no_retries: dict[str, Any] = {"retry_total": 0}  # each failed fetch shows at once
    queue = QueueClient.from_connection_string(through(conn, gate), BATCH_QUEUE, **no_retries)
    poison = QueueClient.from_connection_string(through(conn, gate), POISON_QUEUE, **no_retries)
    stop = asyncio.Event()
    task = asyncio.create_task(QueueListener(functions["process_batch"], queue, poison,
                                             FAST).run(stop))
    try:
        await gate.close()

        async def said() -> bool:
            return "storage unreachable since" in caplog.text

        await eventually(said, "the outage to be logged")
        await asyncio.sleep(2.0)  # several failed fetches meanwhile: the listener keeps trying
        assert not task.done()
        await gate.open()
        row = (await seeded(app_env["DATAVERSE_URL"]))[30]
        async with producer(app_env, BATCH_QUEUE) as sender:
            await sender.send_message(Message("after-the-outage", (RecordRef(
                str(row["accountid"]), str(row["websiteurl"])),)).to_json())

        async def written() -> bool:
            current = {r["accountid"]: r for r in await seeded(app_env["DATAVERSE_URL"])}
            return current[row["accountid"]]["numberofemployees"] is not None

        await eventually(written, "the message sent after the outage")
        assert "storage reachable again after" in caplog.text
        assert f"{BATCH_QUEUE}: storage unreachable since" in caplog.text
    finally:
        stop.set()
        await asyncio.wait_for(task, WAIT_S)
        await queue.close()
        await poison.close()
        await gate.close()
        await entry.close_services()


def test_binding_expressions_take_the_settings_tables_defaults(
        app_env: dict[str, str]) -> None:
    unset = {k: v for k, v in app_env.items() if not k.endswith("_SCHEDULE")}
    functions = {f.name: f for f in index(load_app(APP_PATH), host.with_defaults(unset))}
    assert functions["plan_sync"].schedule == "0 0 2 * * *"
    assert functions["record_queue_metrics"].schedule == "0 * * * * *"
    given = {**unset, "SYNC_SCHEDULE": "0 30 1 * * *"}
    assert host.with_defaults(given)["SYNC_SCHEDULE"] == "0 30 1 * * *"


async def test_the_host_runs_without_the_schedules_set(app_env: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_SCHEDULE")}
    code, rest = await host_stopped_by(signal.SIGTERM, env)
    assert code == 0, rest


async def test_a_timer_that_raises_is_logged_and_the_host_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    def plan(timer: object) -> None:
        raise RuntimeError("the planner met a bug")

    timer = IndexedFunction("plan_sync", "timerTrigger", "timer", plan, schedule="0 0 2 * * *")
    await host._fire_timers([timer])
    assert "timer plan_sync failed: RuntimeError: the planner met a bug" in caplog.text
