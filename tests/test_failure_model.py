"""The failure model against the emulators and Azurite: a record's fault dead-letters that
record alone; a service's fault (a window of 403s, an outage, a broken answer) never
dead-letters anything, and every record is written once it clears."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest
from azure.storage.queue.aio import QueueClient

from sync.config.storage_names import DEAD_LETTER_QUEUE
from sync.message.contract import Message, RecordRef, decode_message
from sync.services import Services
from sync.state.dead_letters import RECORD_REASONS
from sync.work import worker
from tests.test_worker import (
    FAST,
    Make,
    check_all_written,
    emulator,
    enqueue,
    refs,
    work_until_done,
)

FAILURE_SETTINGS = {"SYNC_CIRCUIT_OPEN_S": "1", "SYNC_CIRCUIT_MAX_OPEN_S": "2",
                    "SYNC_CIRCUIT_THRESHOLD": "4", "SYNC_MAX_RETRIES": "2",
                    "SYNC_RECORD_PROBES": "2"}


async def dead_letters(services: Services) -> list[dict[str, Any]]:
    async with QueueClient.from_connection_string(
            str(services.settings.storage.connection_string), DEAD_LETTER_QUEUE) as queue:
        return [json.loads(base64.b64decode(m.content))
                for m in await queue.peek_messages(max_messages=32)]


async def fault(services: Services, rule: dict[str, Any]) -> None:
    await emulator(services, "faults", "POST", rule)


@pytest.mark.parametrize("mode", ["single", "batch", "bulk"])
@pytest.mark.emulator(records=80, **FAST)
async def test_a_window_of_403_on_every_write_dead_letters_nothing(
        make_services: Make, mode: str) -> None:
    services = await make_services(SYNC_WRITE_MODE=mode, SYNC_BULK_TARGETS="20",
                                   **FAILURE_SETTINGS)
    records = await refs(services, 80)
    await fault(services, {"preset": "403-privilege", "hits": "writes", "window_s": 3})
    await enqueue(services, records, size=20)
    totals = await work_until_done(services, len(records))
    assert (totals.written, totals.dead_lettered) == (80, 0)
    assert totals.reenqueued > 0
    assert set(totals.reenqueued_by_reason) <= {"service_fault", "circuit_open"}
    await check_all_written(services, {r.id for r in records})


@pytest.mark.emulator(records=20, **FAST)
async def test_a_403_part_held_back_by_a_circuit_its_batch_opened_keeps_its_strike(
        make_services: Make) -> None:
    """A $batch answers one part 403 (ambiguous) and another 503 (the service's, which opens
    the circuit): the 403 record is held back before it is sent alone. Its siblings in the same
    $batch were written, so it is struck now: without the strike it came back alone, where
    nothing ever struck it again, and probed the circuit forever."""
    services = await make_services(SYNC_WRITE_MODE="batch", **{
        **FAILURE_SETTINGS, "SYNC_CIRCUIT_THRESHOLD": "1"})
    records = await refs(services, 10)
    refused, failing = records[3], records[6]
    await fault(services, {"preset": "403-record-access", "record_ids": [refused.id]})
    await fault(services, {"preset": "503", "hits": "writes", "record_ids": [failing.id]})
    counts = await worker.process_message(services, Message("t-000000", tuple(records))
                                          .to_json().encode())
    assert (counts.written, counts.reenqueued) == (8, 2)
    back = {record.id: record for record in await sent_back(services)}
    assert set(back) == {refused.id, failing.id}
    assert (back[refused.id].history.strikes, back[failing.id].history.strikes) == (1, 0)


async def sent_back(services: Services, limit_s: float = 30.0) -> list[RecordRef]:
    """The records of the messages the worker sent back, once they are visible."""
    deadline_s = asyncio.get_running_loop().time() + limit_s
    found: list[RecordRef] = []
    queue = services.storage.batches
    while not found and asyncio.get_running_loop().time() < deadline_s:
        async for message in queue.receive_messages(max_messages=32):
            found.extend(decode_message(message.content.encode()).records)
        await asyncio.sleep(0.2)
    return found


@pytest.mark.parametrize("mode", ["single", "batch", "bulk"])
@pytest.mark.emulator(records=60, **FAST)
async def test_a_403_that_follows_two_records_dead_letters_them_alone_after_their_probes(
        make_services: Make, mode: str) -> None:
    services = await make_services(SYNC_WRITE_MODE=mode, SYNC_BULK_TARGETS="20",
                                   **FAILURE_SETTINGS)
    records = await refs(services, 60)
    owned = [records[7].id, records[33].id]
    await fault(services, {"preset": "403-record-access", "record_ids": owned})
    await enqueue(services, records, size=30)
    totals = await work_until_done(services, len(records))
    assert (totals.written, totals.dead_lettered) == (58, 2)
    letters = await dead_letters(services)
    assert sorted(letter["record"]["id"] for letter in letters) == sorted(owned)
    for letter in letters:
        assert letter["reason"] == "suspected_record_fault"
        assert letter["status"] == 403
        assert letter["strikes"] == 2
        assert letter["attempts"] >= 2
        assert letter["first_seen"] <= letter["last_seen"]
        assert letter["table"] == "accounts"
    await check_all_written(services, {r.id for r in records} - set(owned))


@pytest.mark.emulator(records=40, **FAST)
async def test_a_record_that_breaks_a_plug_in_is_isolated_in_bulk(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="bulk", SYNC_BULK_TARGETS="40",
                                   **FAILURE_SETTINGS)
    records = await refs(services, 40)
    await fault(services, {"preset": "500-plugin", "record_ids": [records[21].id]})
    await enqueue(services, records, size=40)
    totals = await work_until_done(services, len(records))
    assert (totals.written, totals.dead_lettered) == (39, 1)
    assert totals.dead_lettered_by_reason == {"suspected_record_fault": 1}
    await check_all_written(services, {r.id for r in records} - {records[21].id})


@pytest.mark.emulator(records=30, **FAST)
async def test_an_unusable_input_takes_no_sibling_with_it(make_services: Make) -> None:
    services = await make_services(**FAILURE_SETTINGS)
    records = await refs(services, 30)
    broken = [RecordRef(records[3].id, "http://[not a url"), RecordRef(records[9].id, "nope")]
    mixed = [broken[0] if r.id == records[3].id else broken[1] if r.id == records[9].id else r
             for r in records]
    counts = await services_process(services, mixed)
    assert (counts["written"], counts["dead_lettered"]) == (28, 2)
    letters = await dead_letters(services)
    assert {letter["reason"] for letter in letters} == {"unusable_input"}


async def services_process(services: Services, records: list[RecordRef]) -> dict[str, int]:
    counts = await worker.process_message(services, Message(
        "mixed", tuple(records)).to_json().encode())
    return {"written": counts.written, "dead_lettered": counts.dead_lettered}


@pytest.mark.emulator(records=40, **FAST)
async def test_a_column_that_does_not_exist_opens_the_circuit_and_dead_letters_nothing(
        make_services: Make) -> None:
    definition = json.dumps({"mapping": {"no_such_column": "employees"}})
    services = await make_services(SYNC_DEFINITION=definition, SYNC_WRITE_MODE="single",
                                   **FAILURE_SETTINGS)
    records = await refs(services, 20)
    counts = await services_process(services, records)
    assert counts == {"written": 0, "dead_lettered": 0}
    circuit = services.first_lane.dependency.circuit
    assert circuit.state == "open"
    assert "SYNC_DEFINITION" in circuit.view.reason
    shared = await services.first_lane.cluster.refresh()
    assert shared is not None


@pytest.mark.emulator(records=40, **FAST)
async def test_malformed_and_dropped_answers_are_the_services_fault(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single", **FAILURE_SETTINGS)
    records = await refs(services, 40)
    await fault(services, {"kind": "commit_then_drop", "rate": 0.3})
    await fault(services, {"kind": "reset", "rate": 0.1})
    await enqueue(services, records, size=20)
    totals = await work_until_done(services, len(records))
    assert (totals.written, totals.dead_lettered) == (40, 0)
    await check_all_written(services, {r.id for r in records})


@pytest.mark.emulator(records=40, **FAST)
async def test_an_enrichment_outage_longer_than_the_retries_dead_letters_nothing(
        make_services: Make) -> None:
    services = await make_services(**FAILURE_SETTINGS)
    records = await refs(services, 40)
    await emulator_of(services.settings.enrichment_url, {"preset": "down", "window_s": 4})
    await enqueue(services, records, size=20)
    totals = await work_until_done(services, len(records))
    assert (totals.written, totals.dead_lettered) == (40, 0)
    assert totals.reenqueued > 0
    assert all(reason in RECORD_REASONS for reason in totals.dead_lettered_by_reason)
    await check_all_written(services, {r.id for r in records})


async def emulator_of(base_url: str, rule: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"{base_url}/_emulator/faults", json=rule) as answer:
        assert answer.status == 200, await answer.text()
