"""Before-images and rollback against Azurite and the emulators: a run's previous values come
back; a person's later edit is kept; expired images, unknown runs and a dry rollback change
nothing; the command line prints the counts and exits by them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sync.clients.record_client import RecordClient
from sync.clock import ManualClock
from sync.local.stack import local_token
from sync.message.contract import Message, RecordRef
from sync.ops import rollback as rollback_cli
from sync.ops.target import TargetError
from sync.safety import before_images
from sync.safety.before_images import Image, entity_of, image_from, split, transaction_groups
from sync.safety.image_sweep import index_range, sweep
from sync.safety.restore import (
    MAX_ATTEMPTS,
    RollbackError,
    RollbackReport,
    roll_back,
    still_written,
)
from sync.services import Services
from sync.state.runs import index_key
from sync.work import worker
from tests.test_dry_run import read_ref
from tests.test_worker import GHOST, emulator, rows

Make = Callable[..., Any]
ROOT = Path(__file__).resolve().parents[1]
DAY_S = 86_400


def mapped(services: Services, row: dict[str, Any]) -> dict[str, Any]:
    return {column: row.get(column) for column in services.settings.definitions.first.table.mapping}


def by_id(table: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(row["accountid"]): row for row in table}


async def write_run(services: Services, run_id: str, count: int,
                    *, read: bool = True) -> list[dict[str, Any]]:
    """Let the worker write ``count`` records as one message of run ``run_id``; the rows
    as they were before."""
    before = (await rows(services))[:count]
    refs = tuple(read_ref(services, row) if read else
                 RecordRef(str(row["accountid"]), str(row["websiteurl"])) for row in before)
    counts = await worker.process_message(services, Message(run_id, refs).to_json().encode())
    assert counts.written == count
    return before


async def person_edits(services: Services, record_id: str, values: dict[str, Any]) -> None:
    """Someone changes a record through the Web API after the run."""
    url = f"{services.settings.dataverse_url}/api/data/v9.2/accounts({record_id})"
    async with aiohttp.ClientSession() as session, session.patch(
            url, json=values, headers={"Authorization": f"Bearer {local_token()}",
                                       "If-Match": "*"}) as answer:
        assert answer.status == 204


async def rolled_back(services: Services, run_id: str, *, dry_run: bool = False,
                      clock: Any = None) -> RollbackReport:
    settings = services.settings
    async with aiohttp.ClientSession() as session:
        client = RecordClient(session, settings.dataverse_url, services.first_lane.tokens, 10.0)
        extra = {"clock": clock} if clock is not None else {}
        storage = services.storage
        return await roll_back(client, storage.before_images, storage.ledger, run_id,
                               dry_run=dry_run, **extra)


@pytest.mark.parametrize(("values", "written", "expected"), [
    pytest.param({"a": 120.0, "b": ""}, {"a": 120, "b": None}, True, id="same-values-as-written"),
    pytest.param({"a": 121, "b": None}, {"a": 120, "b": None}, False, id="a-column-edited"),
    pytest.param({"b": None}, {"a": 120}, False, id="a-column-not-read"),
])
def test_still_written(values: dict[str, Any], written: dict[str, Any], expected: bool) -> None:
    assert still_written(values, written) is expected


def test_long_values_are_split_over_properties_and_joined_back() -> None:
    image = Image("run-1", "r1", "accounts", {"description": "a" * 70_000}, {"description": "b"},
                  123.0)
    entity = entity_of(image)
    assert {"Before", "Before1", "Before2"} <= set(entity)
    assert all(len(v) <= before_images.PART_CHARS for v in entity.values() if isinstance(v, str))
    assert image_from(entity) == image
    assert split("", "After") == {"After": ""}


def some_images(count: int, expires_at_s: float = 123.0, chars: int = 10) -> list[Image]:
    return [Image("run-1", f"r{n:03d}", "accounts",
                  None if n == 1 else {"description": "a" * chars, "revenue": n},
                  {"description": "b"}, expires_at_s) for n in range(count)]


def test_a_messages_images_go_in_one_pack_and_come_back() -> None:
    written = some_images(100)
    (entity,) = before_images.pack_entities("run-1", "run-1-p000000-000|0000", written)
    assert entity["RowKey"] == "pack:run-1-p000000-000|0000|000"
    assert entity["Records"] == 100
    assert before_images.images_from(entity) == written
    assert not before_images.images_from(entity)[1].restorable


def test_images_beyond_a_packs_size_go_in_more_packs_of_bounded_properties() -> None:
    written = some_images(30, chars=20_000)  # about 600 KB of JSON
    entities = before_images.pack_entities("run-1", "b|0000", written)
    assert len(entities) == 3
    assert [e["RowKey"] for e in entities] == [f"pack:b|0000|00{n}" for n in range(3)]
    assert all(len(v) <= before_images.PART_CHARS for e in entities for v in e.values()
               if isinstance(v, str))
    assert all(sum(len(v) for k, v in e.items() if k.startswith("Images"))
               <= before_images.MAX_PACK_CHARS for e in entities)
    assert [i for e in entities for i in before_images.images_from(e)] == written


@pytest.mark.emulator(records=10)
async def test_a_run_written_before_packs_and_after_reads_back_whole(
        make_services: Make) -> None:
    services = await make_services()
    table = services.storage.before_images
    old = Image("run-1", "r100", "accounts", {"revenue": 1}, {"revenue": 2}, 100.0)
    await table.upsert_entity(entity_of(old))
    for entity in before_images.pack_entities("run-1", "b|0000",
                                              some_images(3, expires_at_s=100.0)):
        await table.upsert_entity(entity)
    again = some_images(3, expires_at_s=200.0)[2:]  # the same record written again, later
    for entity in before_images.pack_entities("run-1", "b.1|0000", again):
        await table.upsert_entity(entity)
    found, swept = await before_images.read_images(table, "run-1")
    assert not swept
    assert [i.record_id for i in found] == ["r000", "r001", "r002", "r100"]
    assert found[2].expires_at_s == 200.0
    assert found[3] == old


@pytest.mark.parametrize(("sizes", "expected"), [
    pytest.param([10] * 250, [100, 100, 50], id="at-most-100-entities"),
    pytest.param([600_000] * 5, [2, 2, 1], id="at-most-the-payload-bytes"),
])
def test_transaction_groups(sizes: list[int], expected: list[int]) -> None:
    entities = [{"RowKey": str(n), "Blob": "x" * size} for n, size in enumerate(sizes)]
    groups = list(transaction_groups(entities))
    assert [len(group) for group in groups] == expected
    assert [e for group in groups for e in group] == entities


@pytest.mark.emulator(records=20)
async def test_rollback_restores_the_previous_values_of_a_run(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="bulk")
    before = await write_run(services, "wet-1", 12)
    images, _ = await before_images.read_images(services.storage.before_images, "wet-1")
    assert {image.record_id for image in images} == {str(r["accountid"]) for r in before}
    stored = services.storage.before_images.query_entities("PartitionKey eq 'wet-1'")
    assert len([row async for row in stored]) == 1  # one pack: one write for the message
    written = by_id(await rows(services))
    assert any(mapped(services, written[str(r["accountid"])]) != mapped(services, r)
               for r in before)

    report = await rolled_back(services, "wet-1")
    assert report.outcomes["restored"] == len(images)
    assert report.failed == 0
    now = by_id(await rows(services))
    for row in before:
        assert mapped(services, now[str(row["accountid"])]) == mapped(services, row)


@pytest.mark.emulator(records=10)
async def test_only_written_records_keep_an_image(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    table = await rows(services)
    written = [read_ref(services, row) for row in table[:3]]
    ghost = RecordRef(GHOST, "https://ghost.example", etag='W/"1"', current={"description": "x"})
    counts = await worker.process_message(
        services, Message("wet-9", (*written, ghost)).to_json().encode())
    assert (counts.written, counts.dead_lettered) == (3, 1)
    images, _ = await before_images.read_images(services.storage.before_images, "wet-9")
    assert sorted(image.record_id for image in images) == sorted(r.id for r in written)
    assert all(image.expires_at_s > time.time() + 13 * DAY_S for image in images)


@pytest.mark.emulator(records=20)
async def test_a_persons_edit_after_the_run_is_kept(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    before = await write_run(services, "wet-2", 6)
    edited = str(before[0]["accountid"])
    await person_edits(services, edited, {"description": "typed by a salesperson"})

    report = await rolled_back(services, "wet-2")
    assert report.outcomes["changed_since"] == 1
    assert report.outcomes["restored"] == 5
    now = by_id(await rows(services))
    assert now[edited]["description"] == "typed by a salesperson"
    for row in before[1:]:
        assert mapped(services, now[str(row["accountid"])]) == mapped(services, row)


@pytest.mark.emulator(records=20)
async def test_a_second_rollback_tells_what_it_restored_from_what_a_person_changed(
        make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    before = await write_run(services, "wet-12", 6)
    first = await rolled_back(services, "wet-12")
    assert first.outcomes["restored"] == 6
    edited = str(before[0]["accountid"])
    await person_edits(services, edited, {"description": "typed after the rollback"})

    second = await rolled_back(services, "wet-12")
    assert (second.outcomes["already_restored"], second.outcomes["changed_since"],
            second.outcomes["restored"]) == (5, 1, 0)
    assert "already restored        5  held their previous values already" in \
        rollback_cli.render(second)


@pytest.mark.emulator(records=10)
async def test_a_dry_rollback_changes_nothing(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    await write_run(services, "wet-3", 5)
    after_run = await rows(services)
    updated = (await emulator(services, "stats"))["records"]["updated"]
    report = await rolled_back(services, "wet-3", dry_run=True)
    assert report.outcomes["restored"] == 5
    assert await rows(services) == after_run
    assert (await emulator(services, "stats"))["records"]["updated"] == updated


@pytest.mark.emulator(records=10)
async def test_expired_images_are_not_restored(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single", SYNC_ROLLBACK_RETENTION_DAYS="2")
    await write_run(services, "wet-4", 4)
    after_run = await rows(services)
    later = ManualClock(wall_start_s=time.time() + 2 * DAY_S + 60)
    with pytest.raises(RollbackError, match=r"expired.*nothing changed"):
        await rolled_back(services, "wet-4", clock=later)
    assert await rows(services) == after_run


@pytest.mark.parametrize(("started_days_ago", "swept"), [
    pytest.param(13.9, False, id="within-the-retention"),
    pytest.param(14.1, True, id="just-past-the-retention"),
    pytest.param(20.9, True, id="near-the-end-of-the-lookback"),
    pytest.param(21.1, False, id="past-the-lookback"),
])
def test_the_sweep_looks_at_runs_started_in_its_range(started_days_ago: float,
                                                      swept: bool) -> None:
    now_s = 1_800_000_000.0
    low, high = index_range(now_s, 14)
    key = index_key(now_s - started_days_ago * DAY_S, "run-x")
    assert (low <= key < high) is swept


@pytest.mark.emulator(records=10)
async def test_the_sweep_deletes_expired_images_and_rollback_says_so(
        make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    await write_run(services, "wet-11", 3)
    soon_s, later_s = time.time() + DAY_S, time.time() + 15 * DAY_S
    assert await sweep(services.storage.before_images, services.storage.ledger, soon_s, 14,
                       monotonic_s=time.monotonic) == 0
    assert await sweep(services.storage.before_images, services.storage.ledger, later_s, 14,
                       monotonic_s=time.monotonic) == 3
    assert await before_images.read_images(services.storage.before_images, "wet-11") == ([], True)
    after_sweep = await rows(services)
    with pytest.raises(RollbackError, match=r"expired .* deleted: nothing changed"):
        await rolled_back(services, "wet-11", clock=ManualClock(wall_start_s=later_s))
    assert await rows(services) == after_sweep


@pytest.mark.emulator(records=10)
async def test_records_written_without_a_read_are_not_restorable(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    await write_run(services, "producer-1", 3, read=False)
    report = await rolled_back(services, "producer-1")
    assert report.outcomes["not_restorable"] == 3
    assert report.outcomes["restored"] == 0


@pytest.mark.emulator(records=10)
async def test_an_unknown_run_is_a_clear_error(make_services: Make) -> None:
    services = await make_services()
    with pytest.raises(RollbackError, match="no run 'run-nope'"):
        await rolled_back(services, "run-nope")


async def add_fault(services: Services, rule: dict[str, Any]) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"{services.settings.dataverse_url}/_emulator/faults", json=rule) as answer:
        assert answer.status == 200, await answer.text()


async def faults(services: Services) -> dict[str, int]:
    return dict((await emulator(services, "stats"))["faults"])


@pytest.mark.emulator(records=10)
async def test_a_412_is_judged_again_once_then_the_record_fails(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    before = await write_run(services, "wet-6", 3)
    racing = str(before[0]["accountid"])
    await add_fault(services, {"kind": "error", "name": "race", "status": 412, "code": "0x80060882",
                               "message": "The version of the existing record doesn't match",
                               "record_ids": [racing]})
    report = await rolled_back(services, "wet-6")
    assert report.outcomes["failed"] == 1
    assert report.outcomes["restored"] == 2
    assert (await faults(services))["race"] == 2
    assert mapped(services, by_id(await rows(services))[racing]) != mapped(services, before[0])


@pytest.mark.emulator(records=10)
async def test_a_throttled_restore_waits_retry_after_and_succeeds(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    before = await write_run(services, "wet-7", 2)
    await add_fault(services, {"preset": "429-requests", "hits": "writes", "retry_after_s": 1,
                               "window_s": 0.5})
    report = await rolled_back(services, "wet-7")
    assert report.outcomes["restored"] == 2
    assert (await faults(services))["429-requests"] >= 1
    now = by_id(await rows(services))
    assert all(mapped(services, now[str(r["accountid"])]) == mapped(services, r) for r in before)


@pytest.mark.emulator(records=10)
async def test_a_service_that_keeps_failing_fails_the_record_after_the_tries(
        make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    await write_run(services, "wet-8", 1)
    await add_fault(services, {"preset": "503", "hits": "writes"})
    report = await rolled_back(services, "wet-8", clock=ManualClock(
        wall_start_s=time.time(), auto_advance=True))
    assert report.outcomes["failed"] == 1
    assert (await faults(services))["503"] == MAX_ATTEMPTS


async def command(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sync", "rollback", *args, cwd=ROOT,
        env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.emulator(records=10)
@pytest.mark.timeout(120)
async def test_the_command_prints_the_counts_and_exits_by_them(
        make_services: Make, app_env: dict[str, str]) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    before = await write_run(services, "wet-5", 4)
    code, out, _ = await command(app_env, "wet-5", "--dry-run")
    assert code == 0
    assert "dry run" in out
    assert " 4  their previous values" in out
    code, _, err = await command(app_env, "wet-5")
    assert code == 3, "it writes to Dataverse: without a terminal it asks for --yes"
    assert f"This writes to Dataverse, environment default at {app_env['DATAVERSE_URL']}" in err
    code, out, _ = await command({**app_env, "DATAVERSE_URL": ""}, "wet-5", "--yes")
    assert code == 0, "the environment comes from the run's definition, as published"
    now = by_id(await rows(services))
    assert all(mapped(services, now[str(r["accountid"])]) == mapped(services, r) for r in before)
    code, _, err = await command(app_env, "run-unknown")
    assert code == 1
    assert "sync: error: no run 'run-unknown'" in err


def test_a_static_token_is_refused_off_loopback() -> None:
    with pytest.raises(TargetError, match="loopback"):
        rollback_cli.dataverse_access({"DATAVERSE_URL": "https://contoso.crm.dynamics.com",
                                       "DATAVERSE_STATIC_TOKEN": "t"})


GUID_ONE = "11111111-1111-1111-1111-111111111111"


def test_a_run_of_another_environment_is_restored_there_as_its_first_identity() -> None:
    lanes = json.dumps({"prod": {"url": "https://contoso.crm.dynamics.com",
                                 "identities": {"sync1": GUID_ONE, "sync2": None}},
                        "test": {"url": "http://127.0.0.1:9/",
                                 "identities": {"sync1": None}}})
    env = {"SYNC_ENVIRONMENTS": lanes, "DATAVERSE_STATIC_TOKEN": "t"}
    test = rollback_cli.dataverse_access(env, "test")
    assert (test.url, test.static_token, test.client_id) == ("http://127.0.0.1:9", "t-sync1",
                                                              None)
    prod = rollback_cli.dataverse_access({"SYNC_ENVIRONMENTS": lanes}, "prod")
    assert (prod.url, prod.client_id) == ("https://contoso.crm.dynamics.com", GUID_ONE)
    with pytest.raises(TargetError, match=r"several environments \(prod, test\)"):
        rollback_cli.dataverse_access({"SYNC_ENVIRONMENTS": lanes})
    with pytest.raises(TargetError, match="no environment 'dev'"):
        rollback_cli.dataverse_access({"SYNC_ENVIRONMENTS": lanes}, "dev")
