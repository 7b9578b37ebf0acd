"""A paid call is made once (DESIGN invariant 10), and a message stops in time (Azurite and
the emulators): a record sent back carries its enriched values and is not asked again; a lane
gated beyond SYNC_MAX_WAIT_S enriches nothing; the deadline stops new requests, lets those in
flight finish and sends the rest back."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from sync.clock import ManualClock
from sync.message.contract import Message, RecordRef, decode_message
from sync.services import Services
from sync.state import ledger
from sync.work import worker
from tests.hosting import deliver_all, sent_back
from tests.test_control import manual_control
from tests.test_worker import FAST, Make, emulator, rows

THROTTLE = {"kind": "error", "preset": "429-requests", "retry_after_s": 1, "hits": "writes"}
"""Longer than a request waits (SYNC_MAX_WAIT_S=0): the records go back on the queue."""


async def enrichment_calls(services: Services) -> int:
    async with aiohttp.ClientSession() as session, session.get(
            f"{services.settings.enrichment_url}/_emulator/stats") as answer:
        return int((await answer.json()).get("calls", 0))


async def records_of(services: Services, count: int) -> list[RecordRef]:
    return [RecordRef(str(r["accountid"]), str(r["websiteurl"]))
            for r in (await rows(services))[:count]]


@pytest.mark.emulator(records=20, **FAST)
async def test_a_record_sent_back_is_not_enriched_again(make_services: Make) -> None:
    """Every write is throttled for longer than a request waits: the records go back on the
    queue carrying their enriched values; the next delivery writes them without a call."""
    services = await make_services(SYNC_WRITE_MODE="single", SYNC_MAX_WAIT_S="0")
    recorder = sent_back(services)
    records = await records_of(services, 12)
    await emulator(services, "faults", "POST", THROTTLE)
    first = await worker.process_message(services, Message("upstream-paid", tuple(records))
                                         .to_json().encode())
    (back,) = recorder.taken()
    assert first.reenqueued == 12
    assert first.enrichment.calls == 12
    assert all(r.enriched for r in decode_message(back.encode()).records)
    await emulator(services, "faults", "DELETE")
    await asyncio.sleep(services.first_lane.dependency.governor.gate_remaining_s())  # 1 s
    await services.first_lane.cluster.refresh()
    (second,) = await deliver_all(services, back)
    assert second.written == 12
    assert (second.enrichment.calls, second.enrichment.carried) == (0, 12)
    assert await enrichment_calls(services) == 12  # once a record, over both deliveries


@pytest.mark.emulator(records=20, **FAST)
async def test_a_lane_gated_beyond_the_wait_enriches_nothing(make_services: Make) -> None:
    """The message goes back as it came (the same id and attempt), invisible until the gate
    opens: nothing is enriched, no ledger row is written."""
    services = await make_services()
    recorder = sent_back(services)
    services.first_lane.dependency.governor.close_gate(60.0)  # a 429 with Retry-After 60
    records = await records_of(services, 5)
    message = Message("upstream-gated", tuple(records), attempt=2)
    counts = await worker.process_message(services, message.to_json().encode())
    (back,) = recorder.taken()
    assert dict(counts.reenqueued_by_reason) == {"throttled": 5}
    assert counts.requeue_delay_s == 60  # the gate's time, not a second more
    assert counts.enrichment.calls == 0
    assert await enrichment_calls(services) == 0
    again = decode_message(back.encode())
    assert (again.batch_id, again.attempt) == ("upstream-gated", 2)
    assert [r.id for r in again.records] == [r.id for r in records]
    assert await ledger.message_row(services.storage.ledger, "upstream-gated", 2) is None


@pytest.mark.emulator(records=40, dop_hint=2, write_ms_min=400.0, write_ms_max=400.0,
                      request_overhead_ms=1.0)
async def test_the_deadline_stops_new_requests_and_sends_the_rest_back(
        make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single", SYNC_MESSAGE_DEADLINE_S="300")
    clock: ManualClock = manual_control(services)
    recorder = sent_back(services)
    await services.first_lane.dataverse.who_am_i()  # the hint (2) is known before the writes
    await services.first_lane.cluster.refresh()
    records = await records_of(services, 30)
    task = asyncio.create_task(worker.process_message(
        services, Message("upstream-late", tuple(records)).to_json().encode()))
    for _ in range(200):  # until the first writes are in flight (at most 10 s)
        if (await emulator(services, "stats"))["records"]["updated"]:
            break
        await asyncio.sleep(0.05)
    clock.advance(300.0)  # the deadline passes while two writes are in flight
    counts = await asyncio.wait_for(task, 30)
    stats: Any = await emulator(services, "stats")
    (back,) = recorder.taken()
    assert counts.written + counts.reenqueued == 30
    assert 1 <= counts.written < 30
    assert dict(counts.reenqueued_by_reason) == {"deadline": counts.reenqueued}
    assert stats["records"]["updated"] == counts.written  # every request started finished
    assert len(decode_message(back.encode()).records) == counts.reenqueued
