"""The worker at full speed against the emulator and Azurite: every 429 facet, the re-enqueue
delay on the queue itself, the shared gate and hint, permanent errors, every write mode."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from azure.storage.queue.aio import QueueClient

from sync.cli import build_parser
from sync.config.settings import Settings, StorageSettings
from sync.config.storage_names import (
    BATCH_QUEUE,
    DEAD_LETTER_QUEUE,
    LEDGER_TABLE,
    POISON_QUEUE,
    STATE_TABLE,
)
from sync.local.processes import Children
from sync.local.verify import is_enriched
from sync.message.contract import Message, RecordRef
from sync.message.counts import MessageCounts
from sync.ops import poison, repaircli
from sync.services import Services
from sync.state import ledger, runs
from sync.state.storage import queue_client, table_client
from sync.work import worker
from sync.work.filing import reject
from tests import hosting

Make = Callable[..., Any]
GHOST = "00000000-0000-4000-8000-00000000dead"
LIMIT_S = 90.0
WARM_UP_MAX = 400
"""Warm-up messages sent at most while waiting for two hosts to be busy."""
FAST = {"write_ms_min": 5.0, "write_ms_max": 10.0, "request_overhead_ms": 1.0,
        "retry_after_resolution_s": 0.1, "penalty_s": 0.2}


async def emulator(services: Services, path: str, method: str = "GET",
                   body: dict[str, Any] | None = None) -> Any:
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{services.settings.dataverse_url}/_emulator/{path}",
            params={"entityset": "accounts"} if path == "records" else None,
            json=body) as answer:
        return await answer.json()


async def rows(services: Services) -> list[dict[str, Any]]:
    return list((await emulator(services, "records"))["value"])


async def enqueue(services: Services, records: list[RecordRef], size: int = 25) -> None:
    for start in range(0, len(records), size):
        message = Message(f"t-{start:06d}", tuple(records[start:start + size]))
        await services.storage.batches.send_message(message.to_json())


async def refs(services: Services, count: int) -> list[RecordRef]:
    return [RecordRef(str(r["accountid"]), str(r["websiteurl"]))
            for r in (await rows(services))[:count]]


async def work_until_done(services: Services, expected: int) -> MessageCounts:
    """Be a host until ``expected`` records are written or dead-lettered (bounded by LIMIT_S)."""
    return await hosting.run_instances([services], expected, LIMIT_S)


async def check_all_written(services: Services, ids: set[str]) -> None:
    current = {str(r["accountid"]): r for r in await rows(services)}
    assert all(is_enriched(current[i], services.settings.definitions.first.table) for i in ids)
    assert (await emulator(services, "stats"))["records"]["created"] == 0


@pytest.mark.parametrize(("settings", "code"), [
    pytest.param({}, "0x80072322", id="requests",
                 marks=pytest.mark.emulator(records=150, max_requests=25, window_s=2.0, **FAST)),
    pytest.param({}, "0x80072321", id="exec-time",
                 marks=pytest.mark.emulator(records=150, max_exec_ms=150.0, window_s=2.0,
                                            **FAST)),
    pytest.param({"SYNC_WRITE_MODE": "bulk", "SYNC_BULK_TARGETS": "25"}, "0x80072321",
                 id="exec-time-bulk",
                 marks=pytest.mark.emulator(records=150, max_exec_ms=50.0, window_s=2.0,
                                            bulk_target_ms=3.0, **FAST)),
    pytest.param({"SYNC_MAX_WAIT_S": "0"}, "0x80072326", id="concurrency",
                 marks=pytest.mark.emulator(records=150, max_concurrent=2, dop_hint=20,
                                            **FAST)),
])
@pytest.mark.timeout(LIMIT_S + 30)
async def test_each_facet_ends_with_every_record_written(
        make_services: Make, settings: dict[str, str], code: str) -> None:
    services = await make_services(**{"SYNC_WRITE_MODE": "single", **settings})
    records = await refs(services, 150)
    await enqueue(services, records)
    totals = await work_until_done(services, len(records))
    assert totals.written == 150
    assert totals.dead_lettered == 0
    assert totals.throttled_by_code[code] > 0
    await check_all_written(services, {r.id for r in records})


@pytest.mark.emulator(records=60, max_requests=10, window_s=4.0, **FAST)
async def test_requeued_remainder_is_invisible_for_retry_after(make_services: Make) -> None:
    services = await make_services(SYNC_MAX_WAIT_S="0", SYNC_WRITE_MODE="single")
    await services.first_lane.dataverse.who_am_i()  # the hint is known (as after a plan's read)
    await services.first_lane.cluster.refresh()
    records = await refs(services, 40)
    message = Message("invisible", tuple(records))
    counts = await worker.process_message(services, message.to_json().encode())
    assert counts.throttled_by_code["0x80072322"] >= 1
    assert counts.written + counts.reenqueued == 40
    assert counts.reenqueued > 0
    delay_s = counts.requeue_delay_s
    assert delay_s >= 1
    sent_s = time.monotonic()
    async with QueueClient.from_connection_string(
            str(services.settings.storage.connection_string), BATCH_QUEUE) as queue:
        assert (await queue.get_queue_properties()).approximate_message_count == 1
        while time.monotonic() - sent_s < delay_s - 0.5:
            assert await queue.peek_messages() == [], "visible before Retry-After passed"
            await asyncio.sleep(0.2)
        while not (found := await queue.peek_messages()):
            assert time.monotonic() - sent_s < delay_s + 30, "still invisible long after its delay"
            await asyncio.sleep(0.1)
    back = json.loads(base64.b64decode(found[0].content))
    assert back["attempt"] == 1
    assert {r["id"] for r in back["records"]} == {r.id for r in records} - {
        str(r["accountid"]) for r in await rows(services) if r["numberofemployees"] is not None}


@pytest.mark.emulator(records=30, dop_hint=4, **FAST)
async def test_a_hint_change_reaches_every_instance_through_the_cache(
        make_services: Make) -> None:
    first, second = await make_services(), await make_services()
    await first.first_lane.dataverse.who_am_i()
    await first.first_lane.cluster.refresh()
    await second.first_lane.cluster.refresh()
    assert second.first_lane.cluster.view.hint == 8  # 4 per server, 2 servers
    await emulator(first, "config", "PATCH", {"dop_hint": 12})
    await first.first_lane.dataverse.who_am_i()
    await first.first_lane.cluster.refresh()
    assert second.first_lane.dataverse.dop_hint is None  # the second instance never asked Dataverse
    view = await second.first_lane.cluster.refresh()
    assert view.hint == 24
    assert second.first_lane.governor.share == 12  # two busy instances share it


@pytest.mark.emulator(records=80, max_requests=15, window_s=20.0, **FAST)
async def test_the_gate_pauses_the_second_instance_when_the_first_is_throttled(
        make_services: Make) -> None:
    first, second = (await make_services(SYNC_MAX_WAIT_S="0", SYNC_WRITE_MODE="single"),
                     await make_services(SYNC_MAX_WAIT_S="0", SYNC_WRITE_MODE="single"))
    await first.first_lane.dataverse.who_am_i()  # the hint is known (as after a plan's read)
    await first.first_lane.cluster.refresh()
    records = await refs(services=first, count=60)
    counts = await worker.process_message(first, Message(
        "first", tuple(records[:40])).to_json().encode())
    assert counts.reenqueued > 0
    await second.first_lane.cluster.refresh()
    assert second.first_lane.governor.gate_remaining_s() > 1
    before = (await emulator(first, "stats"))["requests"]
    paused = await worker.process_message(second, Message(
        "second", tuple(records[40:])).to_json().encode())
    assert paused.written == 0
    assert paused.reenqueued == 20
    assert paused.requeue_delay_s >= second.first_lane.governor.gate_remaining_s()
    assert (await emulator(first, "stats"))["requests"] == before  # nothing was sent


@pytest.mark.parametrize("mode", ["single", "batch", "bulk"])
@pytest.mark.emulator(records=120, **FAST)
async def test_every_mode_writes_the_same_data_and_dead_letters_only_the_bad(
        make_services: Make, mode: str) -> None:
    services = await make_services(SYNC_WRITE_MODE=mode, SYNC_BULK_TARGETS="25")
    records = await refs(services, 100)
    ghosts = [RecordRef(GHOST[:-1] + str(n), "https://www.ghost.example") for n in range(3)]
    mixed = records[:50] + ghosts + records[50:]
    await enqueue(services, mixed, size=103)
    totals = await work_until_done(services, len(mixed))
    assert (totals.written, totals.dead_lettered) == (100, 3)
    await check_all_written(services, {r.id for r in records})
    async with QueueClient.from_connection_string(
            str(services.settings.storage.connection_string), DEAD_LETTER_QUEUE) as queue:
        letters = [json.loads(base64.b64decode(m.content))
                   for m in await queue.peek_messages(max_messages=10)]
    assert sorted(letter["record"]["id"] for letter in letters) == sorted(g.id for g in ghosts)
    assert {letter["status"] for letter in letters} == {404}
    assert all("Does Not Exist" in letter["message"] for letter in letters)


@pytest.mark.parametrize(("mode", "setting"), [("batch", "SYNC_BATCH_OPERATIONS"),
                                               ("bulk", "SYNC_BULK_TARGETS")])
@pytest.mark.emulator(records=80, max_batch_operations=7, **FAST)
async def test_too_many_operations_are_split_and_resent(make_services: Make, mode: str,
                                                        setting: str) -> None:
    services = await make_services(SYNC_WRITE_MODE=mode, **{setting: "40"})
    records = await refs(services, 80)
    await enqueue(services, records, size=80)
    totals = await work_until_done(services, 80)
    assert (totals.written, totals.dead_lettered) == (80, 0)
    await check_all_written(services, {r.id for r in records})


async def live_leases(services: Services) -> int:
    rows_ = [e async for e in services.storage.state.query_entities("PartitionKey eq 'lease'")]
    return sum(1 for e in rows_ if float(e["ExpiresAt"]) > time.time())


@pytest.mark.emulator(records=500, dop_hint=2, write_ms_min=20.0, write_ms_max=30.0,
                      request_overhead_ms=1.0)
@pytest.mark.timeout(LIMIT_S + 60)
async def test_two_host_processes_together_stay_within_the_dop_hint(
        app_env: dict[str, str], storage: StorageSettings, tmp_path: Path) -> None:
    env = {**app_env, "SYNC_STATE_REFRESH_S": "0.2", "SYNC_LEASE_S": "10",
           "SYNC_WRITE_MODE": "single"}
    watcher: Any = SimpleNamespace(  # the test's own clients: no lease, not an instance
        settings=Settings.from_env(env), storage=SimpleNamespace(
            batches=queue_client(storage, BATCH_QUEUE, None),
            ledger=table_client(storage, LEDGER_TABLE, None),
            state=table_client(storage, STATE_TABLE, None)))
    children = Children(tmp_path)
    try:
        for number in range(2):
            children.start(f"host-{number}", ["host"], env)
        records = await refs(watcher, 500)
        warm_up = records[:40]
        # one record a message, fed until both hosts hold a lease (a host that starts slowly
        # on a busy machine must still find work when it does)
        sent, deadline_s = 0, time.monotonic() + LIMIT_S
        while await live_leases(watcher) < 2:
            assert time.monotonic() < deadline_s, "both hosts never became busy"
            assert sent < WARM_UP_MAX, "both hosts never became busy"
            for record in warm_up[sent % len(warm_up):][:8]:
                await watcher.storage.batches.send_message(
                    Message(f"warm-{sent}", (record,)).to_json())
                sent += 1
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # both have refreshed since they saw each other
        await emulator(watcher, "reset-stats", "POST")
        rest = records[40:]
        await enqueue(watcher, rest, size=20)
        deadline_s = time.monotonic() + LIMIT_S
        while (await ledger.message_totals(watcher.storage.ledger)).written < sent + len(rest):
            assert time.monotonic() < deadline_s, "the hosts did not finish"
            await asyncio.sleep(0.3)
        stats = await emulator(watcher, "stats")
    finally:
        children.stop_all()
        for client in (watcher.storage.batches, watcher.storage.ledger, watcher.storage.state):
            await client.close()
    assert sum(stats["requests_by_server"].values()) >= len(rest)
    assert max(stats["peak_concurrency_by_user"].values()) <= 4  # 2 per server, 2 servers
    assert max(stats["peak_concurrency_by_user"].values()) >= 3  # and the budget is used


@pytest.mark.emulator(records=30, max_requests=5, window_s=20.0, **FAST)
async def test_the_worker_raises_only_when_unfinished_work_cannot_be_saved(
        make_services: Make) -> None:
    services = await make_services(SYNC_MAX_WAIT_S="0", SYNC_WRITE_MODE="single")
    records = await refs(services, 20)

    async def broken_send(*_: Any, **__: Any) -> None:
        raise ConnectionResetError("queue unreachable")

    services.storage.batches.send_message = broken_send  # type: ignore[method-assign]
    with pytest.raises(ConnectionResetError):
        await worker.process_message(services, Message(
            "cannot-requeue", tuple(records)).to_json().encode())


@pytest.mark.emulator(records=30, **FAST)
async def test_a_dead_letter_that_cannot_be_saved_keeps_the_record_unfinished(
        make_services: Make) -> None:
    services = await make_services()
    records = await refs(services, 3)
    ghost = RecordRef(GHOST, "https://www.ghost.example")

    async def broken_send(*_: Any, **__: Any) -> None:
        raise ConnectionResetError("queue unreachable")

    services.storage.dead_letters.send_message = broken_send  # type: ignore[method-assign]
    counts = await worker.process_message(services, Message(
        "ghost-kept", (ghost, *records)).to_json().encode())
    assert (counts.written, counts.dead_lettered, counts.reenqueued) == (3, 0, 1)
    async with QueueClient.from_connection_string(
            str(services.settings.storage.connection_string), BATCH_QUEUE) as queue:
        assert (await queue.get_queue_properties()).approximate_message_count == 1


@pytest.mark.emulator(records=120, fault_503_rate=0.15, fault_500_rate=0.05, reset_rate=0.05,
                      **FAST)
async def test_transient_faults_are_retried_and_nothing_is_lost(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single", SYNC_MAX_RETRIES="6")
    records = await refs(services, 100)
    await enqueue(services, records)
    totals = await work_until_done(services, 100)
    assert totals.transient_retries > 0
    assert totals.written + totals.dead_lettered == 100
    stats = await emulator(services, "stats")
    assert sum(stats["faults"].values()) > 0
    written = {str(r["accountid"]) for r in await rows(services)
               if is_enriched(r, services.settings.definitions.first.table)}
    assert len(written) == totals.written


async def test_a_message_for_an_unknown_definition_goes_to_poison_with_why(
        make_services: Make) -> None:
    services = await make_services()
    record = {"id": "5b1c2a3e-0000-4000-8000-000000000001", "input": "https://www.contoso.com"}
    body = json.dumps({"version": 3, "batch_id": "b-1", "definition": "contacts",
                       "records": [record]}).encode()
    counts = await worker.process_message(services, body)
    assert counts.rejected_messages == 1
    assert counts.written == 0
    async with QueueClient.from_connection_string(
            str(services.settings.storage.connection_string), POISON_QUEUE) as poison:
        (entry,) = [m async for m in poison.receive_messages()]
    envelope = json.loads(base64.b64decode(entry.content))
    assert envelope["reason"] == "unknown definition 'contacts'; this deployment defines: default"
    assert json.loads(envelope["message"])["definition"] == "contacts"


async def queue_envelopes(services: Services, name: str) -> list[dict[str, Any]]:
    async with QueueClient.from_connection_string(
            str(services.settings.storage.connection_string), name) as queue:
        return [json.loads(base64.b64decode(m.content))
                for m in await queue.peek_messages(max_messages=32)]


def with_bad_records(records: list[RecordRef]) -> bytes:
    """A producer's message whose second record's input is too long, fourth's a number, and
    a last record that names no GUID."""
    items = [r.to_wire() for r in records]
    items[1]["input"] = "x" * 2049
    items[3]["input"] = 42
    items.append({"id": "not-a-guid", "input": "https://www.contoso.com"})
    return json.dumps({"version": 4, "batch_id": "producer-7", "attempt": 0,
                       "records": items}).encode()


@pytest.mark.emulator(records=10, **FAST)
async def test_a_producers_bad_record_is_dead_lettered_alone_and_the_rest_written(
        make_services: Make) -> None:
    """Before: one bad record sent its whole message to poison, its siblings unwritten."""
    services = await make_services()
    records = await refs(services, 5)
    counts = await worker.process_message(services, with_bad_records(records))
    assert (counts.written, counts.dead_lettered, counts.rejected_messages) == (3, 2, 1)
    letters = {d["record"]["id"]: d for d in await queue_envelopes(services, DEAD_LETTER_QUEUE)}
    assert set(letters) == {records[1].id, records[3].id}
    assert {d["reason"] for d in letters.values()} == {"unusable_input"}
    assert "records[1].input must be a string of 1-2048 characters; it holds 2049" in \
        letters[records[1].id]["message"]
    assert "records[3].input must be text, not a number" in letters[records[3].id]["message"]
    (poisoned,) = await queue_envelopes(services, POISON_QUEUE)
    assert poisoned["reason"] == "records[5].id must be a GUID"
    assert json.loads(poisoned["message"])["records"] == [{"id": "not-a-guid",
                                                            "input": "https://www.contoso.com"}]
    await check_all_written(services, {records[n].id for n in (0, 2, 4)})
    async with table_client(services.settings.storage, LEDGER_TABLE, None) as table:
        totals = await runs.read_totals(table, "producer-7")
    assert totals is not None
    assert (totals.run.planned, totals.counts.written, totals.counts.dead_lettered) == (6, 3, 2)


@pytest.mark.emulator(records=60, max_requests=10, window_s=4.0, **FAST)
async def test_a_delivery_carried_out_before_is_not_carried_out_again(make_services: Make
                                                                      ) -> None:
    """A host that wrote a message's row, its remainder sent, and died before the queue forgot
    the message: the message comes back with the same id and attempt. Its records are not
    taken again (the remainder on the queue has them): nothing is sent, nothing counted twice."""
    services = await make_services(SYNC_MAX_WAIT_S="0", SYNC_WRITE_MODE="single")
    await services.first_lane.dataverse.who_am_i()
    await services.first_lane.cluster.refresh()
    body = Message("producer-again", tuple(await refs(services, 40))).to_json().encode()
    first = await worker.process_message(services, body)
    assert first.reenqueued > 0  # some records went back on the queue, in a remainder
    await emulator(services, "reset-stats", "POST")
    again = await worker.process_message(services, body)
    assert (again.written, again.unchanged, again.reenqueued, again.dead_lettered) == (0, 0, 0, 0)
    assert (await emulator(services, "stats"))["requests"] == 0
    totals = await ledger.message_totals(services.storage.ledger)
    assert (totals.written, totals.reenqueued) == (first.written, first.reenqueued)


@pytest.mark.emulator(records=10, **FAST)
async def test_a_message_poisoned_for_one_record_before_is_replayed_and_carried_out(
        make_services: Make) -> None:
    """A message the worker poisoned whole for one bad record (as it did before it set such
    records apart): ``poison replay`` sends it back, and its good records are written."""
    services = await make_services()
    records = await refs(services, 5)
    items = [r.to_wire() for r in records]
    items[2]["input"] = "é" * 3000
    body = json.dumps({"version": 4, "batch_id": "producer-8", "records": items}).encode()
    await reject(services.storage, services.settings, body,
                 "records[2].input must be a string of 1-2048 characters",
                 now_s=services.clock.wall_s())
    args = build_parser().parse_args(["poison", "replay"])
    out = io.StringIO()
    assert await repaircli.execute(args, poison.Poison(), always_scan=True, out=out) == 0
    assert out.getvalue().startswith("replayed 1 poison messages"), out.getvalue()
    async with queue_client(services.settings.storage, BATCH_QUEUE, None) as batches:
        (replayed,) = [m async for m in batches.receive_messages()]
        await batches.delete_message(replayed)
    counts = await worker.process_message(services, str(replayed.content).encode())
    assert (counts.written, counts.dead_lettered, counts.rejected_messages) == (4, 1, 0)
    await check_all_written(services, {r.id for n, r in enumerate(records) if n != 2})
