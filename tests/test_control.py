"""Pause, resume, cancel and the canary against Azurite and the emulators: held messages stay
queued (and are never poisoned), resume finishes the run, cancel completes it, a canary admits
exactly its records across instances, an automatic canary pauses or goes on."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
from azure.data.tables.aio import TableClient
from azure.storage.queue.aio import QueueClient

from sync import cli
from sync.clock import ManualClock
from sync.config.canary_policy import CanaryPolicy
from sync.config.settings import StorageSettings
from sync.config.storage_names import BATCH_QUEUE, STATE_TABLE
from sync.config.table_definition import parse_definition
from sync.failures.errors import ConfigError
from sync.local.verify import is_enriched
from sync.message.contract import Message, RecordRef, decode_message
from sync.ops.control import Unknown, apply
from sync.ops.run_status import read_status
from sync.ops.status_view import render, status_dict
from sync.plan import planner
from sync.safety import canary, flags
from sync.safety.flags import CONTROL_CACHE_S, ControlCache
from sync.services import Services
from sync.state import ledger, manifests, runs
from sync.state.manifests import PlanManifest
from sync.state.storage import ensure_resources, table_client
from sync.telemetry import names
from sync.work import worker
from sync.work.holds import hold_delay_s
from tests.test_worker import FAST, GHOST, refs, rows, work_until_done

Make = Callable[..., Any]
NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
VISIBLE_WITHIN_S = 10.0
"""A held message is invisible for SYNC_PAUSE_DELAY_S (1 here) plus at most 2 s of jitter."""
SMALL = {"SYNC_BATCH_SIZE": "10", "SYNC_PAUSE_DELAY_S": "1", "SYNC_WRITE_MODE": "single"}


@pytest.fixture
def events(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[str], list[Any]]]:
    with caplog.at_level(logging.INFO, logger="sync.events"):
        yield lambda name: [r for r in caplog.records
                            if r.name == "sync.events" and r.getMessage() == name]


def batches(services: Services) -> QueueClient:
    return QueueClient.from_connection_string(
        str(services.settings.storage.connection_string), BATCH_QUEUE)


async def host_once(instances: list[Services], queue: QueueClient, most: int = 32) -> list[Any]:
    """Be the host once: take up to ``most`` visible messages, hand them round the instances
    concurrently, delete each after its invocation succeeded; answer the messages taken."""
    taken = [m async for m in queue.receive_messages(messages_per_page=most, max_messages=most,
                                                     visibility_timeout=120)]

    async def run(services: Services, message: Any) -> None:
        await worker.process_message(services, base64.b64decode(message.content))
        await queue.delete_message(message)

    await asyncio.gather(*(run(instances[n % len(instances)], m) for n, m in enumerate(taken)))
    return taken


async def come_back(queue: QueueClient, count: int) -> list[Any]:
    """Wait (bounded) until ``count`` held messages are visible again; peek them."""
    deadline_s = time.monotonic() + VISIBLE_WITHIN_S
    while len(found := await queue.peek_messages(max_messages=32)) < count:
        assert time.monotonic() < deadline_s, f"{len(found)} of {count} came back"
        await asyncio.sleep(0.2)
    return found


async def queued(queue: QueueClient) -> int:
    return (await queue.get_queue_properties()).approximate_message_count or 0


async def enriched(services: Services) -> int:
    table = services.settings.definitions.first.table
    return sum(is_enriched(r, table) for r in await rows(services))


async def planned_run(services: Services) -> PlanManifest:
    await planner.plan(services, NOW)
    (manifest,) = await manifests.plans(services.storage.ledger)
    assert manifest.complete
    return manifest


def manual_control(services: Services) -> ManualClock:
    clock = ManualClock()
    services.control = ControlCache(clock)
    return clock


@pytest.mark.emulator(records=60, **FAST)
@pytest.mark.timeout(120)
async def test_pause_keeps_every_remaining_message_queued_and_resume_finishes_the_run(
        make_services: Make) -> None:
    services = await make_services(**SMALL)
    clock = manual_control(services)
    manifest = await planned_run(services)
    assert manifest.batches >= 5
    async with batches(services) as queue:
        assert len(await host_once([services], queue, most=2)) == 2
        await apply(services.settings.storage, "pause", "default", None, reason="looks wrong",
                    now_s=clock.wall_s())
        clock.advance(CONTROL_CACHE_S)  # the cached "running" expires
        remaining = manifest.batches - 2
        assert len(await host_once([services], queue)) == remaining
        assert await queued(queue) == remaining
        assert await queue.peek_messages() == []  # held out of sight for the pause delay
        assert (await ledger.message_totals(services.storage.ledger)).written == 20
        assert await enriched(services) == 20
        for _ in range(2):  # however often they come back, each is a new message
            back = await come_back(queue, remaining)
            assert {m.dequeue_count for m in back} == {0}  # peeked: never delivered yet
            taken = await host_once([services], queue)
            assert {m.dequeue_count for m in taken} == {1}
            assert sum(len(decode_message(base64.b64decode(m.content)).records)
                       for m in taken) == manifest.records - 20
        assert await queued(queue) == remaining
        assert await planner.plan(services, NOW) is None  # a paused definition plans nothing
        assert len(await manifests.plans(services.storage.ledger)) == 1
        shown = await read_status(services.settings.storage, None, clock.wall_s())
        assert status_dict(shown)["control"]["definition"]["state"] == "paused"
        assert "definition flag  paused since " in render(shown)
        assert ": looks wrong" in render(shown)
        await apply(services.settings.storage, "resume", "default", None, reason="",
                    now_s=clock.wall_s())
        clock.advance(CONTROL_CACHE_S)
    totals = await work_until_done(services, manifest.records)
    assert totals.written == manifest.records
    assert await enriched(services) == manifest.records
    run = await runs.read_run(services.storage.ledger, manifest.run_id)
    assert run is not None
    assert run.run.completed


@pytest.mark.emulator(records=60, **FAST)
@pytest.mark.timeout(120)
async def test_cancel_counts_the_rest_cancelled_and_the_run_completes(
        make_services: Make, events: Callable[[str], list[Any]]) -> None:
    services = await make_services(**SMALL)
    clock = manual_control(services)
    manifest = await planned_run(services)
    with pytest.raises(Unknown, match="no run 'run-nope'"):
        await apply(services.settings.storage, "cancel", "default", "run-nope", reason="",
                    now_s=clock.wall_s())
    async with batches(services) as queue:
        await host_once([services], queue, most=2)
        await apply(services.settings.storage, "cancel", "default", manifest.run_id,
                    reason="bad mapping", now_s=clock.wall_s())
        clock.advance(CONTROL_CACHE_S)
        await host_once([services], queue)
        assert await queued(queue) == 0
    run = await runs.read_run(services.storage.ledger, manifest.run_id)
    assert run is not None
    assert (run.counts.written, run.counts.cancelled) == (20, manifest.records - 20)
    assert run.counts.dead_lettered == 0
    assert run.run.completed
    assert await enriched(services) == 20
    (completed,) = events(names.RUN_COMPLETED)
    assert completed.__dict__[names.CANCELLED] == manifest.records - 20


@pytest.mark.emulator(records=60, **FAST)
@pytest.mark.timeout(120)
async def test_a_canary_of_ten_writes_ten_across_three_instances_until_approved(
        make_services: Make) -> None:
    env = {**SMALL, "SYNC_BATCH_SIZE": "4", "SYNC_DEFINITION": '{"canary": {"records": 10}}'}
    instances = [await make_services(**env) for _ in range(3)]
    manifest = await planned_run(instances[0])
    async with batches(instances[0]) as queue:
        assert len(await host_once(instances, queue)) == manifest.batches
        assert (await ledger.message_totals(instances[0].storage.ledger)).written == 10
        assert await enriched(instances[0]) == 10
        back = await come_back(queue, await queued(queue))  # the held ones come back
        await host_once(instances, queue, most=len(back))
        assert await enriched(instances[0]) == 10  # still the canary's ten
        await apply(instances[0].settings.storage, "approve", "default", manifest.run_id,
                    reason="", now_s=time.time())
    totals = await work_until_done(instances[1], manifest.records)
    assert totals.written == manifest.records
    run = await runs.read_run(instances[0].storage.ledger, manifest.run_id)
    assert run is not None
    assert run.run.completed


async def canary_run(services: Services, ghosts: int) -> list[Message]:
    """A planned run of 20 records in four messages of five; the first two (the canary's ten)
    hold ``ghosts`` records that do not exist (dead letters)."""
    run_id = planner.new_run_id(NOW)
    await runs.start_plan(services.storage.ledger, run_id, NOW.timestamp())
    await manifests.record_plan(services.storage.ledger,
                                PlanManifest(run_id, 20, 4, 1, complete=True))
    good = await refs(services, 20 - ghosts)
    lost = [RecordRef(GHOST[:-1] + str(n), "https://www.ghost.example") for n in range(ghosts)]
    records = lost + good
    return [Message(planner.batch_id(run_id, 0, n), tuple(records[5 * n:5 * n + 5]))
            for n in range(4)]


@pytest.mark.parametrize(("ghosts", "goes_on"), [
    pytest.param(3, False, id="30%-failed-above-20%-pauses"),
    pytest.param(1, True, id="10%-failed-under-20%-goes-on"),
])
@pytest.mark.emulator(records=30, **FAST)
@pytest.mark.timeout(120)
async def test_an_automatic_canary_pauses_above_its_failure_rate_and_goes_on_under_it(
        make_services: Make, events: Callable[[str], list[Any]], ghosts: int,
        goes_on: bool) -> None:
    auto = '{"canary": {"records": 10, "then": "auto", "max_failure_rate": 0.2}}'
    services = await make_services(**SMALL, SYNC_DEFINITION=auto)
    messages = await canary_run(services, ghosts)
    outcomes = [await worker.process_message(services, message.to_json().encode())
                for message in messages]
    totals = await ledger.message_totals(services.storage.ledger)
    flag = await flags.read_flag(services.storage.state, flags.definition_scope("default"))
    async with batches(services) as queue:
        held = await queued(queue)
    if goes_on:
        assert (totals.written, totals.dead_lettered, held) == (20 - ghosts, ghosts, 0)
        assert flag.state == "running"
        assert events(names.CANARY_FAILED) == []
        return
    assert (totals.written, totals.dead_lettered, held) == (10 - ghosts, ghosts, 2)
    assert [dict(c.reenqueued_by_reason) for c in outcomes[2:]] == [{"canary": 5}] * 2
    assert flag.state == "paused"
    assert "30.0% > max_failure_rate 20.0%" in flag.reason
    (failed,) = events(names.CANARY_FAILED)
    assert failed.__dict__[names.FAILURE_RATE] == pytest.approx(0.3)


@pytest.mark.parametrize(("policy", "planned", "limit"), [
    pytest.param(CanaryPolicy(records=10), None, 10, id="records-before-the-plan-is-complete"),
    pytest.param(CanaryPolicy(records=10), 4, 4, id="records-capped-by-a-small-run"),
    pytest.param(CanaryPolicy(percent=5), None, None, id="percent-waits-for-the-total"),
    pytest.param(CanaryPolicy(percent=5), 1001, 51, id="percent-rounds-up"),
])
def test_canary_limit(policy: CanaryPolicy, planned: int | None, limit: int | None) -> None:
    assert policy.limit(planned) == limit


@pytest.mark.emulator(records=40, write_ms_min=40.0, write_ms_max=50.0,
                      request_overhead_ms=1.0)
@pytest.mark.timeout(60)
async def test_a_message_being_written_finishes_its_requests_and_sends_the_rest_back(
        make_services: Make) -> None:
    services = await make_services(**SMALL, DATAVERSE_MAX_CONCURRENCY="2")
    clock = manual_control(services)
    records = await refs(services, 30)
    message = Message("pause-midway", tuple(records))
    task = asyncio.create_task(worker.process_message(services, message.to_json().encode()))
    deadline_s = time.monotonic() + 20
    while await enriched(services) < 4:
        assert time.monotonic() < deadline_s, "no write started"
        assert not task.done(), "the message ended before the pause"
        await asyncio.sleep(0.05)
    await flags.set_flag(services.storage.state, flags.definition_scope("default"),
                           flags.PAUSED, "midway", clock.wall_s())
    clock.advance(CONTROL_CACHE_S)  # the watcher looks again
    counts = await task
    assert counts.written >= 4
    assert counts.reenqueued > 0
    assert counts.written + counts.reenqueued == 30
    assert dict(counts.reenqueued_by_reason) == {"paused": counts.reenqueued}
    assert await enriched(services) == counts.written  # nothing half-written, none uncounted
    async with batches(services) as queue:
        (back,) = await come_back(queue, 1)
    sent_back = decode_message(base64.b64decode(back.content)).records
    assert len(sent_back) == counts.reenqueued


@pytest.mark.parametrize(("value", "error"), [
    pytest.param([], "must be an object", id="not-an-object"),
    pytest.param({"records": 5, "percent": 1}, "exactly one of", id="both-sizes"),
    pytest.param({}, "exactly one of", id="no-size"),
    pytest.param({"records": 0}, "at least 1", id="no-records"),
    pytest.param({"percent": 150}, "at most 100", id="over-100-percent"),
    pytest.param({"records": 5, "then": "later"}, '"approve" or "auto"', id="unknown-then"),
    pytest.param({"records": 5, "max_failure_rate": 2}, "between 0 and 1", id="rate-over-1"),
    pytest.param({"records": 5, "count": 1}, "unknown fields: count", id="unknown-field"),
])
def test_a_bad_canary_names_its_field(value: Any, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_definition(json.dumps({"canary": value}))


def test_a_canary_defaults_to_approval_and_two_percent() -> None:
    assert parse_definition('{"canary": {"percent": 1}}').canary == CanaryPolicy(percent=1.0)
    assert parse_definition("").canary is None


@pytest.mark.parametrize(("delay_s", "rand", "held_s"), [
    pytest.param(60.0, 0.0, 60, id="no-jitter"),
    pytest.param(60.0, 0.5, 61, id="half-jitter"),
    pytest.param(1.0, 0.99, 3, id="most-jitter-rounds-up"),
])
def test_hold_delay(delay_s: float, rand: float, held_s: int) -> None:
    assert hold_delay_s(delay_s, rand) == held_s


async def _flag(storage: StorageSettings) -> flags.Flag:
    async with table_client(storage, STATE_TABLE, None) as state:
        return await flags.read_flag(state, flags.definition_scope("default"))


def test_the_commands_set_the_flag_and_refuse_what_does_not_exist(
        app_env: dict[str, str], storage: StorageSettings,
        capsys: pytest.CaptureFixture[str]) -> None:
    """No host has published yet: the shell's settings (one definition) are the names."""
    asyncio.run(ensure_resources(storage))
    assert cli.main(["pause", "--reason", "checking descriptions", "--wait", "0"]) == 0
    assert "definition default paused" in capsys.readouterr().out
    paused = asyncio.run(_flag(storage))
    assert (paused.state, paused.reason) == ("paused", "checking descriptions")
    assert cli.main(["approve", "run-20261122T020000Z-000000"]) == 1
    assert "sync: error: no run 'run-20261122T020000Z-000000'" in capsys.readouterr().err
    assert cli.main(["cancel", "--definition", "contacts", "--yes"]) == 1
    err = capsys.readouterr().err
    assert "no definition 'contacts'; the deployment runs: default" in err
    assert "taken from this shell's settings" in err
    assert cli.main(["resume", "--wait", "0"]) == 0
    assert asyncio.run(_flag(storage)).state == "running"


DEPLOYMENT_SETTINGS = ("DATAVERSE_URL", "DATAVERSE_STATIC_TOKEN", "ENRICHMENT_URL",
                       "ENRICHMENT_API_KEY", "SYNC_DEFINITIONS", "SYNC_ENVIRONMENTS")


def two_definitions(url: str) -> dict[str, str]:
    """Two environments on the one emulator, a definition each (as the local stack with
    ``--environments 2``)."""
    environments = {name: {"url": url, "identities": {"default": None}}
                    for name in ("env1", "env2")}
    definitions = {name: {"environment": name} for name in ("env1", "env2")}
    return {"SYNC_ENVIRONMENTS": json.dumps(environments),
            "SYNC_DEFINITIONS": json.dumps(definitions)}


@pytest.fixture
def laptop(app_env: dict[str, str], storage: StorageSettings, monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> dict[str, str]:
    """A shell with none of the deployment's settings, only where the storage is (the hosts
    the test starts keep the whole ``app_env``, returned)."""
    for name in DEPLOYMENT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AzureWebJobsStorage", str(storage.connection_string))
    monkeypatch.chdir(tmp_path)  # no local.settings.json here
    return app_env


async def sync_command(*argv: str) -> int:
    """``sync ARGV`` beside the running hosts (their loop goes on while it waits)."""
    return await asyncio.to_thread(cli.main, list(argv))


@pytest.mark.timeout(90)
async def test_pause_names_come_from_the_hosts_and_a_worker_acknowledges(
        make_services: Make, laptop: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    services = await make_services(**two_definitions(laptop["DATAVERSE_URL"]))
    assert await sync_command("pause", "--definition", "env1", "--reason", "r") == 0
    out = capsys.readouterr().out
    assert "definition env1 paused" in out
    assert f"acknowledged by {services.control.host} (" in out
    state = services.storage.state
    assert (await flags.read_flag(state, flags.definition_scope("env1"))).state == "paused"
    assert (await flags.read_flag(state, flags.definition_scope("env2"))).set_at_s == 0.0
    assert await sync_command("pause", "--definition", "env3") == 1
    assert ("sync: error: no definition 'env3'; the deployment runs: env1, env2 (as the "
            "deployment's hosts published them)") in capsys.readouterr().err
    assert await sync_command("pause") == 1
    assert "name the definition with --definition NAME" in capsys.readouterr().err
    assert await sync_command("pause", "--definition", "Env1") == 2
    assert "names are 1-32 characters" in capsys.readouterr().err


@pytest.mark.timeout(60)
async def test_cancel_asks_first_and_without_a_terminal_needs_yes(
        make_services: Make, laptop: dict[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    services = await make_services(**two_definitions(laptop["DATAVERSE_URL"]))
    assert await sync_command("cancel", "--definition", "env2", "--wait", "0") == 3
    err = capsys.readouterr().err
    assert "This cancels definition env2" in err
    assert "sync: error: no terminal to ask for a confirmation: add --yes" in err
    scope = flags.definition_scope("env2")
    assert (await flags.read_flag(services.storage.state, scope)).set_at_s == 0.0
    assert await sync_command("cancel", "--definition", "env2", "--wait", "0", "--yes") == 0
    assert (await flags.read_flag(services.storage.state, scope)).state == "cancelled"


async def test_hosts_acknowledge_each_version_once_and_a_new_version_starts_afresh(
        storage: StorageSettings) -> None:
    async with table_client(storage, STATE_TABLE, None) as state:
        scope = flags.definition_scope("env1")
        await flags.set_flag(state, scope, flags.PAUSED, "a", 100.0)
        hosts = [ControlCache(ManualClock(wall_start_s=100.0 + n), host=f"h{n}")
                 for n in range(3)]
        for cache in hosts:
            await cache.read_all(state)
        read = await flags.read_flag(state, scope)
        assert (read.acked_by, read.first_ack_s) == (("h0", "h1", "h2"), 100.0)
        await hosts[0].read_all(state)
        assert (await flags.read_flag(state, scope)).acked_by == ("h0", "h1", "h2")
        await flags.set_flag(state, scope, flags.RUNNING, "", 200.0)
        assert (await flags.read_flag(state, scope)).acked_by == ()
        await hosts[2].read_all(state)
        assert (await flags.read_flag(state, scope)).acked_by == ("h2",)


async def test_acknowledgements_stop_at_a_few_hosts(storage: StorageSettings) -> None:
    async with table_client(storage, STATE_TABLE, None) as state:
        scope = flags.run_scope("run-1")
        await flags.set_flag(state, scope, flags.PAUSED, "", 1.0)
        for n in range(flags.ACK_HOSTS + 3):
            await ControlCache(host=f"host{n}").read_all(state)
        assert len((await flags.read_flag(state, scope)).acked_by) == flags.ACK_HOSTS


async def test_a_stale_read_acknowledges_nothing(storage: StorageSettings) -> None:
    async with table_client(storage, STATE_TABLE, None) as state:
        scope = flags.definition_scope("env1")
        await flags.set_flag(state, scope, flags.PAUSED, "", 1.0)
        stale = await flags.read_flag(state, scope)
        await flags.set_flag(state, scope, flags.CANCELLED, "", 2.0)
        assert not await flags.acknowledge(state, stale, "late", 3.0)
        assert (await flags.read_flag(state, scope)).acked_by == ()


@pytest.mark.parametrize(("stored", "state"), [
    pytest.param("running", "running", id="running"),
    pytest.param("cancelled", "cancelled", id="cancelled"),
    pytest.param("paused", "paused", id="paused"),
    pytest.param("stopped", "paused", id="unknown-reads-as-paused"),
])
def test_a_stored_state_reads_safe(stored: str, state: str) -> None:
    assert flags.state_of(stored) == state


@pytest.mark.emulator(records=60, **FAST)
@pytest.mark.timeout(60)
async def test_a_percentage_canary_takes_its_share_of_the_planned_run(
        make_services: Make) -> None:
    services = await make_services(**SMALL, SYNC_DEFINITION='{"canary": {"percent": 10}}')
    manifest = await planned_run(services)
    async with batches(services) as queue:
        await host_once([services], queue)
    assert await enriched(services) == math.ceil(manifest.records / 10)
    row = await canary.read_canary(services.storage.state, manifest.run_id)
    assert row is not None
    assert (row.admitted, row.released) == (math.ceil(manifest.records / 10), False)


class FlagsKeepChanging:
    """The state table, on which every write of a flag row loses its race: the flag keeps
    changing under the writer (an operator and other instances setting it at once)."""

    def __init__(self, table: TableClient) -> None:
        self._table = table

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    async def create_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any:
        if entity.get("PartitionKey") == flags.CONTROL_PARTITION:
            raise ResourceExistsError("created by another writer")
        return await self._table.create_entity(entity, **kwargs)

    async def update_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any:
        if entity.get("PartitionKey") == flags.CONTROL_PARTITION:
            raise ResourceModifiedError("changed by another writer")
        return await self._table.update_entity(entity, **kwargs)


@pytest.mark.emulator(records=30, **FAST)
@pytest.mark.timeout(120)
async def test_a_failed_canary_whose_pause_keeps_conflicting_holds_its_run_and_raises_nothing(
        make_services: Make, caplog: pytest.LogCaptureFixture) -> None:
    auto = '{"canary": {"records": 10, "then": "auto", "max_failure_rate": 0.2}}'
    services = await make_services(**SMALL, SYNC_DEFINITION=auto)
    messages = await canary_run(services, ghosts=3)
    services.storage = dataclasses.replace(
        services.storage, state=cast(TableClient, FlagsKeepChanging(services.storage.state)))
    outcomes = [await worker.process_message(services, message.to_json().encode())
                for message in messages]  # none raises: a raise would count a dequeue
    assert [dict(c.reenqueued_by_reason) for c in outcomes[2:]] == [{"canary": 5}] * 2
    assert [r for r in caplog.records if getattr(r, "event", "") == "canary_pause_conflict"]


async def test_the_flag_cache_keeps_only_what_is_fresh_and_at_most_its_bound(
        storage: StorageSettings) -> None:
    clock = ManualClock()
    cache = ControlCache(clock, ttl_s=5.0)
    async with table_client(storage, STATE_TABLE, None) as table:
        for n in range(flags.CACHED_FLAGS_MAX + 50):  # each producer message is its own run
            await cache.flag(table, flags.run_scope(f"import-{n}"))
        assert len(cache) == flags.CACHED_FLAGS_MAX
        clock.advance(5.0)
        await cache.flag(table, flags.definition_scope("default"))
        assert len(cache) == 1  # the others were past their time


def test_released_runs_keep_the_latest_only() -> None:
    cache = ControlCache(ManualClock())
    for n in range(flags.RELEASED_RUNS_MAX + 10):
        cache.released_runs.add(f"run-{n}")
    assert len(cache.released_runs) == flags.RELEASED_RUNS_MAX
    assert "run-0" not in cache.released_runs
    assert f"run-{flags.RELEASED_RUNS_MAX + 9}" in cache.released_runs
