"""Writing safely against production data, end to end (the worker, Azurite and the emulators over
HTTP): records already holding their enriched values are not written, a person's edit between
the read and the write is kept (or overwritten, as the definition says), a record that keeps
changing goes back on the queue, the bulk-job options reach the service (and a missing privilege
is configuration), and every Dataverse request is counted."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from azure.storage.queue.aio import QueueClient

from sync.clients.odata_batch import Operation
from sync.config.storage_names import BATCH_QUEUE
from sync.failures.errors import RecordFault
from sync.local.verify import expected_columns
from sync.message.contract import Message, RecordRef
from sync.message.ids import run_id_of
from sync.plan.planner import refs_from
from sync.services import Services
from sync.state import runs
from sync.work import worker
from tests.test_worker import FAST, emulator, enqueue, rows, work_until_done

Make = Callable[..., Any]
MODES = ["single", "batch", "bulk"]
PERSON_EMPLOYEES = 7


async def planned_refs(services: Services, count: int) -> list[RecordRef]:
    """Records as the planner reads them: with their ETag and mapped columns' values."""
    table = services.settings.definitions.first.table
    url = services.first_lane.dataverse.collection_url(table.entity_set, table.read_columns, "")
    page = await services.first_lane.dataverse.read_page(url, 5000, track_changes=False)
    return list(refs_from(page.rows, table, None))[:count]


async def edit(services: Services, changes: list[dict[str, Any]]) -> None:
    answer = await emulator(services, "records", "POST", {"rows": changes})
    assert answer == {"changed": len(changes)}


async def enrich_in_place(services: Services, records: list[RecordRef]) -> None:
    """Give records the values the enrichment returns for them (a re-run with no changes)."""
    definition = services.settings.definitions.first.table
    await edit(services, [{"accountid": r.id, **(expected_columns(r.input, definition) or {})}
                          for r in records])


async def process(services: Services, batch_id: str, records: list[RecordRef]) -> Any:
    return await worker.process_message(
        services, Message(batch_id, tuple(records)).to_json().encode())


async def by_id(services: Services) -> dict[str, dict[str, Any]]:
    return {str(r["accountid"]): r for r in await rows(services)}


def definition(**fields: Any) -> str:
    return json.dumps(fields)


async def holding_all_but_employees(services: Services) -> tuple[RecordRef, dict[str, Any]]:
    """A record that already holds its enriched country and description (not its employee
    count), as the planner reads it, and the columns its enrichment maps."""
    record = (await planned_refs(services, 1))[0]
    expected = expected_columns(record.input, services.settings.definitions.first.table) or {}
    await edit(services, [{"accountid": record.id, "address1_country": expected[
        "address1_country"], "description": expected["description"]}])
    return (await planned_refs(services, 1))[0], expected


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.emulator(records=40, **FAST)
async def test_records_holding_their_values_are_not_written_and_the_run_completes(
        make_services: Make, mode: str) -> None:
    services = await make_services(SYNC_WRITE_MODE=mode, SYNC_BULK_TARGETS="25")
    await enrich_in_place(services, (await planned_refs(services, 30))[:27])
    records = await planned_refs(services, 30)
    await emulator(services, "reset-stats", "POST")
    counts = await process(services, "rerun", records)
    assert (counts.unchanged, counts.written, counts.dead_lettered) == (27, 3, 0)
    stats = await emulator(services, "stats")
    assert stats["records"]["updated"] == 3
    assert counts.requests.total == stats["requests"]
    totals = await runs.read_run(services.storage.ledger, run_id_of("rerun"))
    assert totals is not None
    assert totals.run.completed
    assert totals.counts.unchanged == 27


@pytest.mark.emulator(records=20, **FAST)
async def test_a_rerun_with_nothing_to_change_sends_nothing(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="bulk")
    await enrich_in_place(services, await planned_refs(services, 20))
    records = await planned_refs(services, 20)
    await emulator(services, "reset-stats", "POST")
    counts = await process(services, "nothing", records)
    assert counts.unchanged == 20
    assert (await emulator(services, "stats"))["requests"] == 0
    assert counts.requests.total == 0


@pytest.mark.emulator(records=20, **FAST)
async def test_only_the_changed_columns_are_written(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    read, expected = await holding_all_but_employees(services)
    unversioned = replace(read, etag=None)  # If-Match: *, so the edit below is no conflict
    await edit(services, [{"accountid": read.id, "description": "typed by a person"}])
    counts = await process(services, "partial", [unversioned])
    assert (counts.written, counts.requests.reads, counts.requests.writes) == (1, 0, 1)
    row = (await by_id(services))[read.id]
    assert row["description"] == "typed by a person"  # not in the write: only employees was
    assert row["numberofemployees"] == expected["numberofemployees"]


@pytest.mark.emulator(records=20, **FAST)
async def test_a_column_a_person_changed_is_kept_while_the_others_are_written(
        make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    read, expected = await holding_all_but_employees(services)
    await edit(services, [{"accountid": read.id, "address1_country": "Elsewhere"}])
    counts = await process(services, "kept", [read])
    assert (counts.written, counts.requests.reads, counts.requests.writes) == (1, 1, 2)
    row = (await by_id(services))[read.id]
    assert row["address1_country"] == "Elsewhere"
    assert row["numberofemployees"] == expected["numberofemployees"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("policy", "kept"), [("keep", True), ("overwrite", False)])
@pytest.mark.emulator(records=20, **FAST)
async def test_an_edit_between_read_and_write_follows_the_edit_policy(
        make_services: Make, mode: str, policy: str, kept: bool) -> None:
    services = await make_services(SYNC_WRITE_MODE=mode,
                                   SYNC_DEFINITION=definition(edit_policy=policy))
    records = await planned_refs(services, 10)
    edited = records[3]
    await edit(services, [{"accountid": edited.id, "numberofemployees": PERSON_EMPLOYEES}])
    await emulator(services, "reset-stats", "POST")
    counts = await process(services, f"edit-{policy}-{mode}", records)
    assert (counts.written, counts.dead_lettered, counts.reenqueued) == (10, 0, 0)
    expected = expected_columns(edited.input, services.settings.definitions.first.table) or {}
    row = (await by_id(services))[edited.id]
    assert row["numberofemployees"] == (PERSON_EMPLOYEES if kept else
                                        expected["numberofemployees"])
    assert row["address1_country"] == expected["address1_country"]
    assert row["description"] == expected["description"]
    assert counts.requests.reads >= 1  # the record read again (or the bulk check)
    assert counts.requests.total == (await emulator(services, "stats"))["requests"]


@pytest.mark.parametrize(("read_age_s", "check_reads"), [(5.0, 0), (60.0, 1)],
                         ids=["a fresh read is its own check", "an older one is read again"])
@pytest.mark.emulator(records=20, **FAST)
async def test_a_bulk_group_is_checked_again_only_once_the_planners_read_is_old(
        make_services: Make, read_age_s: float, check_reads: int) -> None:
    """``bulk_etag_check_after_s`` (30 s by default; no clock skew between these instances):
    the planner's read of the group is the check while it is younger; then the group's ETags
    are read again before UpdateMultiple, which cannot carry them."""
    services = await make_services(SYNC_WRITE_MODE="bulk", SYNC_CLOCK_SKEW_S="0")
    records = await planned_refs(services, 10)
    await emulator(services, "reset-stats", "POST")
    read_at = services.clock.wall_s() - read_age_s
    counts = await worker.process_message(services, Message(
        f"fresh-{read_age_s:g}", tuple(records), read_at=read_at).to_json().encode())
    assert counts.written == 10
    assert (counts.requests.reads, counts.requests.writes) == (check_reads, 1)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.emulator(records=20, **FAST)
async def test_a_record_that_keeps_changing_is_read_again_a_bounded_number_of_times_then_waits(
        make_services: Make, mode: str) -> None:
    services = await make_services(SYNC_WRITE_MODE=mode)
    records = await planned_refs(services, 5)
    stormy = records[1]
    added = await emulator(services, "faults", "POST", {
        "kind": "error", "status": 412, "code": "0x80060882", "hits": "writes",
        "record_ids": [stormy.id],
        "message": "The version of the existing record doesn't match the RowVersion property "
                   "provided."})
    assert "error" not in added
    counts = await process(services, f"storm-{mode}", records)
    assert counts.written == 4
    assert counts.dead_lettered == 0
    assert counts.reenqueued_by_reason == {"changed_since_read": 1}
    assert counts.requests.reads <= 4  # three reads again (and the bulk check at most)
    assert counts.requests.reads >= 3


@pytest.mark.emulator(records=20, **FAST)
async def test_the_emulator_answers_412_to_a_stale_etag_in_a_single_patch_and_a_batch_part(
        make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="batch")
    first, second = await planned_refs(services, 2)
    await edit(services, [{"accountid": first.id, "numberofemployees": 1},
                          {"accountid": second.id, "numberofemployees": 1}])
    assert first.etag is not None
    with pytest.raises(RecordFault, match="412") as raised:
        await services.first_lane.dataverse.update("accounts", first.id, {"numberofemployees": 2},
                                        if_match=first.etag)
    assert raised.value.reason == "changed_since_read"
    results = await services.first_lane.dataverse.execute_batch([
        Operation("PATCH", f"accounts({second.id})", {"If-Match": str(second.etag)},
                  {"numberofemployees": 2}),
        Operation("PATCH", f"accounts({first.id})", {"If-Match": "*"},
                  {"numberofemployees": 3})])
    assert [r.status for r in results] == [412, 204]
    current = await by_id(services)
    assert (current[first.id]["numberofemployees"],
            current[second.id]["numberofemployees"]) == (3, 1)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.emulator(records=20, **FAST)
async def test_bypass_without_the_privilege_opens_the_circuit_and_nothing_is_dead_lettered(
        make_services: Make, mode: str) -> None:
    services = await make_services(SYNC_WRITE_MODE=mode, SYNC_DEFINITION=definition(
        bypass_business_logic=True, suppress_duplicate_detection=True))
    records = await planned_refs(services, 6)
    counts = await process(services, f"bypass-{mode}", records)
    assert (counts.written, counts.dead_lettered) == (0, 0)
    assert counts.reenqueued == 6
    assert services.first_lane.dependency.circuit.state == "open"
    assert "prvBypassCustomBusinessLogic" in services.first_lane.dependency.circuit.view.reason


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.emulator(records=20, bypass_privilege=True, **FAST)
async def test_bulk_job_options_reach_every_write_in_every_mode(
        make_services: Make, mode: str) -> None:
    services = await make_services(SYNC_WRITE_MODE=mode, SYNC_BULK_TARGETS="3",
                                   SYNC_BATCH_OPERATIONS="3", SYNC_DEFINITION=definition(
                                       bypass_business_logic=["CustomSync"],
                                       suppress_duplicate_detection=True))
    records = await planned_refs(services, 6)
    await emulator(services, "reset-stats", "POST")
    counts = await process(services, f"options-{mode}", records)
    assert counts.written == 6
    writes = {"single": 6, "batch": 6, "bulk": 2}[mode]  # a $batch's parts each carry them
    assert (await emulator(services, "stats"))["write_options"] == {
        "MSCRM.BypassBusinessLogicExecution: CustomSync": writes,
        "MSCRM.SuppressDuplicateDetection: true": writes}
    assert counts.requests.writes == {"single": 6, "batch": 2, "bulk": 2}[mode]


@pytest.mark.emulator(records=20, **FAST)
async def test_retries_are_counted_as_request_usage(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    records = await planned_refs(services, 4)
    added = await emulator(services, "faults", "POST", {
        "kind": "error", "status": 503, "code": "0x80040216", "hits": "writes", "rate": 1.0,
        "record_ids": [records[0].id], "message": "Service Unavailable", "window_s": 0.3})
    assert "error" not in added
    await emulator(services, "reset-stats", "POST")
    counts = await process(services, "retries", records)
    stats = await emulator(services, "stats")
    assert counts.requests.writes == 4
    assert counts.requests.retries == counts.transient_retries
    assert counts.requests.retries >= 1
    assert counts.requests.total == stats["requests"]


@pytest.mark.emulator(records=20, **FAST)
async def test_a_persons_edit_is_kept_across_deliveries_after_a_storm(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="batch")
    records = await planned_refs(services, 5)
    edited = records[2]
    await edit(services, [{"accountid": edited.id, "numberofemployees": PERSON_EMPLOYEES}])
    added = await emulator(services, "faults", "POST", {
        "kind": "error", "status": 412, "code": "0x80060882", "hits": "writes",
        "record_ids": [edited.id], "message": "The version of the existing record doesn't "
                                              "match the RowVersion property provided."})
    assert "error" not in added
    await enqueue(services, records, size=5)
    first = await work_once(services)
    assert (first.written, first.reenqueued_by_reason) == (4, {"changed_since_read": 1})
    await emulator(services, "faults", "DELETE")
    totals = await work_until_done(services, 5)
    assert (totals.written, totals.dead_lettered) == (5, 0)
    row = (await by_id(services))[edited.id]
    expected = expected_columns(edited.input, services.settings.definitions.first.table) or {}
    assert row["numberofemployees"] == PERSON_EMPLOYEES
    assert row["description"] == expected["description"]


async def work_once(services: Services) -> Any:
    """Take the one visible message and carry it out, as the host would."""
    async with QueueClient.from_connection_string(
            str(services.settings.storage.connection_string), BATCH_QUEUE) as queue:
        (message,) = [m async for m in queue.receive_messages(max_messages=1)]
        counts = await worker.process_message(services, base64.b64decode(message.content))
        await queue.delete_message(message)
    return counts
