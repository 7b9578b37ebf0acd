"""The enrichment phase of a message with a spec, against Azurite, the Dataverse emulator and
the enrichment emulator in a shape: "later" waits on the queue and is asked again (never a
failure, never forever), a no match is dead-lettered and never asked again, out of credits stops
the line and dead-letters nothing, the cache answers a second run, bulk calls carry many
records, and a code hook enriches in place of any request."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sync.budget.cluster import read_circuits
from sync.local.emulators.enrichment import EnrichmentConfig, is_no_match
from sync.local.emulators.enrichment.app import start_enrichment
from sync.local.verify import is_enriched
from sync.message.contract import Message, RecordHistory, RecordRef
from sync.message.counts import MessageCounts
from sync.services import ENRICHMENT_CONCURRENCY, Services
from sync.work import worker
from sync.work.enrich import enrich_all
from sync.work.message_run import LATER, MessageRun
from tests.test_failure_model import dead_letters
from tests.test_worker import FAST, Make, rows

EXAMPLES = Path(__file__).parents[1] / "examples" / "enrichment"
FAST_CIRCUIT = {"SYNC_CIRCUIT_OPEN_S": "1", "SYNC_CIRCUIT_MAX_OPEN_S": "2",
                "SYNC_MAX_RETRIES": "1"}
Shaped = Callable[..., Any]


@pytest.fixture
async def shaped(make_services: Make) -> AsyncIterator[Shaped]:
    """Services whose definition is ``definition`` (an example's name or a dict), asking the
    enrichment emulator started in ``shape``."""
    runners: list[Any] = []

    async def make(shape: str, definition: str | dict[str, Any] | None = None,
                   **config: Any) -> Services:
        runner, url = await start_enrichment(EnrichmentConfig(shape=shape, latency_ms=0,
                                                              **config))
        runners.append(runner)
        text = (json.dumps(definition) if isinstance(definition, dict)
                else (EXAMPLES / f"{definition or shape}.json").read_text())
        return await make_services(ENRICHMENT_URL=url, SYNC_DEFINITION=text, **FAST_CIRCUIT)

    yield make
    for runner in runners:
        await runner.cleanup()


async def records_of(services: Services, count: int, *,
                     no_match: bool = False) -> list[RecordRef]:
    """Seeded accounts as the planner hands them over (with the columns they carry); with
    ``no_match`` those the shapes know no company for first."""
    table = services.settings.definitions.first.table
    found = [RecordRef(str(r["accountid"]), str(r["websiteurl"]),
                       current={c: r.get(c) for c in table.carried_columns})
             for r in await rows(services)]
    if no_match:
        found.sort(key=lambda r: not is_no_match(r.input.removeprefix("https://www."), 0.02))
    return found[:count]


async def phase(services: Services, records: list[RecordRef]) -> tuple[MessageRun, list[Any]]:
    run = MessageRun(Message("t-000001", tuple(records)))
    return run, await enrich_all(services.first_work(), run, records)


async def process(services: Services, records: list[RecordRef],
                  batch_id: str = "t-000001") -> MessageCounts:
    return await worker.process_message(services, Message(batch_id, tuple(records)).to_json()
                                        .encode())


@pytest.mark.emulator(records=30, **FAST)
async def test_a_later_answer_waits_on_the_queue_and_is_asked_again(shaped: Shaped) -> None:
    services = await shaped("clearbit")
    records = [r for r in await records_of(services, 30)
               if not is_no_match(r.input.removeprefix("https://www."), 0.02)][:10]
    run, enriched = await phase(services, records)
    assert enriched == []
    assert run.delay_s == 30.0  # the spec's delay: Clearbit-like 202s carry no Retry-After
    assert {run.reason_unfinished(r.id) for r in records} == {LATER}
    again = run.unfinished()
    assert {r.history.laters for r in again if r.history} == {1}
    assert run.counts.enrichment.laters == 10
    assert run.counts.dead_lettered == 0
    second, enriched = await phase(services, list(again))
    assert len(enriched) == 10
    assert second.reasons == {}
    assert second.counts.enrichment.calls == 10


@pytest.mark.emulator(records=30, **FAST)
async def test_later_at_most_max_laters_times_then_the_record_is_dead_lettered(
        shaped: Shaped) -> None:
    services = await shaped("clearbit")
    record = next(r for r in await records_of(services, 30)
                  if not is_no_match(r.input.removeprefix("https://www."), 0.02))
    tired = RecordRef(record.id, record.input, history=RecordHistory(laters=10))
    run, enriched = await phase(services, [tired])
    assert enriched == []
    assert run.unfinished() == ()
    assert dict(run.counts.dead_lettered_by_reason) == {"never_ready": 1}
    letter = (await dead_letters(services))[0]
    assert "answered 202 (later) 10 times" in json.dumps(letter)


@pytest.mark.emulator(records=60, **FAST)
async def test_a_no_match_is_dead_lettered_once_and_answered_by_the_cache_after(
        shaped: Shaped) -> None:
    services = await shaped("pdl")
    records = await records_of(services, 60, no_match=True)
    first = await process(services, records)
    assert dict(first.dead_lettered_by_reason) == {"not_enrichable": 1}
    assert first.written == 59
    assert first.reenqueued == 0
    assert (first.enrichment.calls, first.enrichment.cache_misses) == (60, 60)
    reread = {r.id: r for r in await records_of(services, 60, no_match=True)}
    second = await process(services, [reread[r.id] for r in records], "t-000002")
    assert (second.enrichment.calls, second.enrichment.cache_hits) == (0, 60)
    assert dict(second.dead_lettered_by_reason) == {"not_enrichable": 1}
    assert second.unchanged == 59
    current = {str(r["accountid"]): r for r in await rows(services)}
    table = services.settings.definitions.first.table
    assert sum(is_enriched(current[r.id], table, "pdl") for r in records) == 59


@pytest.mark.emulator(records=40, **FAST)
async def test_out_of_credits_stops_the_line_and_dead_letters_nothing(shaped: Shaped) -> None:
    services = await shaped("today", {"mapping": {"description": "description"}},
                            out_of_credits_after=0)
    records = await records_of(services, 40)
    counts = await process(services, records)
    assert (counts.written, counts.dead_lettered, counts.reenqueued) == (0, 0, 40)
    # the circuit opened on the first answer: only the calls already in flight were sent
    assert counts.enrichment.calls <= ENRICHMENT_CONCURRENCY
    circuits = await read_circuits(services.storage.state)
    assert "out of credits" in circuits["enrichment"].reason
    assert await dead_letters(services) == []


@pytest.mark.emulator(records=250, **FAST)
async def test_bulk_calls_carry_up_to_max_inputs_records(shaped: Shaped) -> None:
    services = await shaped("pdl-bulk")
    records = await records_of(services, 250)
    counts = await process(services, records)
    assert (counts.enrichment.calls, counts.enrichment.inputs) == (3, 250)
    assert counts.written + counts.dead_lettered == 250
    assert set(counts.dead_lettered_by_reason) <= {"not_enrichable"}


async def hook(columns: dict[str, Any], session: aiohttp.ClientSession) -> dict[str, Any]:
    """A code hook: anything a spec cannot say, given the record's columns and the session."""
    assert isinstance(session, aiohttp.ClientSession)
    return {"description": f"{columns['name']} at {columns['websiteurl']}"}


@pytest.mark.emulator(records=10, **FAST)
async def test_a_code_hook_enriches_in_place_of_a_request(shaped: Shaped) -> None:
    services = await shaped("today", {
        "mapping": {"description": "description"},
        "enrichment": {"hook": "tests.test_enrichment_phase:hook",
                       "columns": ["websiteurl", "name"]}})
    records = await records_of(services, 10)
    counts = await process(services, records)
    assert counts.written == 10
    assert counts.enrichment.calls == 10
    current = {str(r["accountid"]): r for r in await rows(services)}
    assert {current[r.id]["description"] for r in records} == {
        f"{current[r.id]['name']} at {r.input}" for r in records}
