"""Bugs surface (Azurite and the emulators): an unexpected exception on one record is counted,
alerted and poisoned with its type and trace hash after SYNC_BUG_ATTEMPTS deliveries, while
the other records are written; a storage outage before the records are taken sends the message
back by visibility, never by the host's dequeue count."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections import Counter
from typing import Any

import aiohttp
import pytest
from azure.storage.queue.aio import QueueClient

from sync.config.storage_names import LEDGER_TABLE, POISON_QUEUE
from sync.message.contract import Message, RecordRef, decode_message
from sync.message.ids import run_id_of
from sync.services import Services
from sync.state import runs
from sync.state.storage import table_client
from sync.work import worker
from sync.work.bugs import bug_of, is_due
from tests.hosting import deliver_all, sent_back
from tests.test_worker import FAST, Make, rows

SECRET = "text-that-must-never-be-kept"
BROKEN: dict[str, str] = {"url": ""}
"""The website whose record makes the hook raise (set by the test)."""
DEFINITION = {"mapping": {"description": "description"},
              "enrichment": {"hook": "tests.test_bugs:hook", "columns": ["websiteurl", "name"]}}
ASKED: Counter[str] = Counter()
"""Calls ``paid_hook`` made per website: what an API billed per call would charge."""
PAID_DEFINITION = {"mapping": {"description": "description"},
                   "enrichment": {"hook": "tests.test_bugs:paid_hook",
                                  "columns": ["websiteurl", "name"]}}


async def hook(columns: dict[str, Any], session: aiohttp.ClientSession) -> dict[str, Any]:
    """A definition's code hook with a bug on one record: it adds text to a number."""
    if columns["websiteurl"] == BROKEN["url"]:
        return {"description": len(columns["name"]) + SECRET}  # type: ignore[operator]
    return {"description": f"enriched {columns['name']}"}


async def paid_hook(columns: dict[str, Any],
                    session: aiohttp.ClientSession) -> dict[str, Any]:
    """A hook whose calls take a moment and are paid for; the broken record's raises at once,
    while its siblings' calls are still in flight."""
    if columns["websiteurl"] == BROKEN["url"]:
        return {"description": len(columns["name"]) + SECRET}  # type: ignore[operator]
    ASKED[columns["websiteurl"]] += 1
    await asyncio.sleep(0.2)
    return {"description": f"enriched {columns['name']}"}


async def four_records(make_services: Make,
                       definition: dict[str, Any]) -> tuple[Services, list[RecordRef]]:
    """Services of ``definition`` (three bug attempts, single writes) and four of the
    emulator's accounts as records with the columns the hook reads."""
    services = await make_services(SYNC_DEFINITION=json.dumps(definition),
                                   SYNC_BUG_ATTEMPTS="3", SYNC_WRITE_MODE="single")
    found = await rows(services)
    return services, [RecordRef(str(r["accountid"]), str(r["websiteurl"]),
                                current={"description": r.get("description"),
                                         "name": r["name"]}) for r in found[:4]]


def test_the_bug_of_an_exception_is_its_type_and_a_stable_hash_of_its_frames() -> None:
    def fails(value: Any) -> Any:
        return value + SECRET

    found = []
    for value in (1, 2):
        try:
            fails(value)
        except TypeError as error:
            found.append(bug_of(ExceptionGroup("a task group's", [error])))
    assert found[0] == found[1]
    assert found[0].error_type == "TypeError"
    assert len(found[0].trace_hash) == 12
    assert SECRET not in found[0].frames
    assert "test_bugs.py:fails" in found[0].frames


@pytest.mark.parametrize(("errors", "alone", "due"), [
    (1, True, False), (3, True, True), (3, False, False), (12, False, False),
    (13, False, True)],
    ids=["alone, once", "alone, the third time", "in company, the third time: halved again",
         "in company, twelve times", "in company past every halving"])
def test_when_records_go_to_poison(errors: int, alone: bool, due: bool) -> None:
    assert is_due(errors, alone, attempts=3) is due


@pytest.mark.emulator(records=10, **FAST)
async def test_a_record_that_makes_the_code_raise_is_poisoned_alone_and_the_rest_written(
        make_services: Make, caplog: pytest.LogCaptureFixture) -> None:
    services, records = await four_records(make_services, DEFINITION)
    BROKEN["url"] = records[2].input
    with caplog.at_level(logging.INFO):
        deliveries = await deliver_all(services, Message("upstream-bug", tuple(records))
                                       .to_json())
    errors = [r for r in caplog.records if getattr(r, "event", "") == "unexpected_error"]
    # 4 records stopped -> halves; 2 written; 2 stopped -> halves; 1 written; 1 alone: poisoned
    assert len(errors) == 3
    assert {r.error_type for r in errors} == {"TypeError"}
    hashes = {r.trace_hash for r in errors}
    assert len(hashes) == 1
    assert sum(c.written for c in deliveries) == 3
    assert sum(c.poisoned for c in deliveries) == 1
    assert all(SECRET not in r.getMessage() and not r.exc_info for r in caplog.records)
    async with QueueClient.from_connection_string(
            str(services.settings.storage.connection_string), POISON_QUEUE) as poison:
        (entry,) = [json.loads(base64.b64decode(m.content)) for m in await poison.peek_messages()]
    assert entry["reason"] == f"unexpected_error: TypeError (trace {hashes.pop()}) after 3 " \
                              "deliveries"
    assert SECRET not in json.dumps(entry)
    poisoned = decode_message(entry["message"].encode())
    assert [r.id for r in poisoned.records] == [records[2].id]
    now = {str(r["accountid"]): r for r in await rows(services)}
    assert [now[r.id]["description"] == f"enriched {now[r.id]['name']}" for r in records] == [
        True, True, False, True]
    totals = await runs.read_run(services.storage.ledger, run_id_of("upstream-bug"))
    assert totals is not None
    assert (totals.run.completed, totals.counts.poisoned, totals.done) == (True, 1, 4)


@pytest.mark.emulator(records=10, **FAST)
async def test_a_bug_on_one_record_does_not_throw_away_its_siblings_paid_answers(
        make_services: Make) -> None:
    """The broken record raises while its siblings' calls are in flight: they finish, their
    answers go back with them, and no sibling is asked twice (DESIGN invariant 10)."""
    services, records = await four_records(make_services, PAID_DEFINITION)
    BROKEN["url"] = records[1].input
    ASKED.clear()
    deliveries = await deliver_all(services, Message("upstream-paid", tuple(records)).to_json())
    assert sum(c.written for c in deliveries) == 3
    assert sum(c.poisoned for c in deliveries) == 1
    assert {r.input: 1 for r in records if r.input != BROKEN["url"]} == ASKED


@pytest.mark.emulator(records=10, **FAST)
async def test_a_ledger_outage_before_the_records_are_taken_sends_the_message_back_whole(
        make_services: Make) -> None:
    """The run's start fails (the ledger table is gone): the worker returns (the host deletes
    the delivery, no dequeue counted) after sending the message back as it was."""
    services = await make_services()
    recorder = sent_back(services)
    records = [RecordRef(str(r["accountid"]), str(r["websiteurl"]))
               for r in (await rows(services))[:3]]
    message = Message("upstream-outage", tuple(records))
    async with table_client(services.settings.storage, LEDGER_TABLE, None) as ledger:
        await ledger.delete_table()
        counts = await worker.process_message(services, message.to_json().encode())
        (back,) = [decode_message(text.encode()) for text in recorder.taken()]
        assert dict(counts.reenqueued_by_reason) == {"storage_unavailable": 3}
        assert (back.batch_id, back.attempt, back.records) == (message.batch_id, 0,
                                                               message.records)
        await ledger.create_table()
    again = await worker.process_message(services, back.to_json().encode())
    assert again.written == 3
