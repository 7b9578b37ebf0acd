"""Lanes, named definitions and their schedules: the settings, the contract's lane, the state
keys, and the worker and planner over real HTTP and Azurite with two identities."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from sync.budget import routing
from sync.budget.lane import state_keys
from sync.config.lanes import LaneKey, parse_environments
from sync.config.schedule import parse_schedule
from sync.config.settings import Settings
from sync.failures.errors import ConfigError, ContractError, ServiceFault
from sync.local.emulators.webapi import EmulatorConfig, start_emulator
from sync.message.contract import Message, RecordRef, decode_message
from sync.plan import due, planner
from sync.services import Services
from sync.work import worker
from sync.work.requeue import REQUEUE_JITTER_MAX_S
from tests.test_worker import refs

Make = Callable[..., Any]
GUID = "11111111-1111-1111-1111-111111111111"


def two_lanes(url: str, scope: str = "environment") -> dict[str, str]:
    environments = {"prod": {"url": url, "identities": {"a": None, "b": None},
                             "dop_scope": scope}}
    return {"SYNC_ENVIRONMENTS": json.dumps(environments),
            "SYNC_DEFINITIONS": json.dumps({"accounts": {"environment": "prod"}})}


def settings_with(**extra: str) -> Settings:
    base = {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "ENRICHMENT_URL": "http://127.0.0.1:9", "ENRICHMENT_API_KEY": "k",
            "DATAVERSE_URL": "http://127.0.0.1:8"}
    return Settings.from_env({**base, **extra})


def test_without_lane_settings_there_is_one_default_lane_and_definition() -> None:
    settings = settings_with()
    definition = settings.definitions.first
    assert (definition.name, definition.lanes) == ("default", (LaneKey("default", "default"),))
    assert definition.table.entity_set == "accounts"


def test_environments_and_definitions_are_read_with_their_defaults() -> None:
    settings = settings_with(**two_lanes("http://127.0.0.1:8"))
    definition = settings.definitions.first
    assert definition.name == "accounts"
    assert definition.lanes == (LaneKey("prod", "a"), LaneKey("prod", "b"))
    assert definition.schedule is None
    assert definition.enrichment_key_setting == "ENRICHMENT_API_KEY"


@pytest.mark.parametrize(("environments", "definitions", "message"), [
    ({"Prod": {"url": "https://x", "identities": {"a": None}}}, None, "names are 1-32"),
    ({"prod\n": {"url": "https://x", "identities": {"a": None}}}, None, "names are 1-32"),
    ({"prod": {"url": "ftp://x", "identities": {"a": None}}}, None, "http\\(s\\) URL"),
    ({"prod": {"url": "https://x", "identities": {"a": "not-a-guid"}}}, None, "GUID"),
    ({"prod": {"url": "https://x", "identities": {}}}, None, "identities must map"),
    ({"prod": {"url": "https://x", "identities": {"a": GUID}, "dop_scope": "user"}}, None,
     "dop_scope"),
    ({"a": {"url": "https://x", "identities": {"i": None}},
      "b": {"url": "https://y", "identities": {"i": None}}}, None, "set SYNC_DEFINITIONS"),
    ({"prod": {"url": "https://x", "identities": {"a": None}}},
     {"d": {"environment": "test"}}, "must name an environment"),
    ({"prod": {"url": "https://x", "identities": {"a": None}}},
     {"d": {"identities": ["z"]}}, "not an identity of environment prod"),
    ({"prod": {"url": "https://x", "identities": {"a": None}}},
     {"d": {"schedule": "0 0 2 * *"}}, "six NCRONTAB fields"),
    ({"prod": {"url": "https://x", "identities": {"a": None}}},
     {"d": {"enrichment_key_setting": "OTHER_KEY"}}, "starts with ENRICHMENT_API_KEY"),
    ({"prod": {"url": "https://x", "identities": {"a": None}}},
     {"d": {"enrichment_key_setting": "ENRICHMENT_API_KEY_D"}}, "ENRICHMENT_API_KEY_D is "
                                                                 "required"),
    ({"prod": {"url": "https://x", "identities": {"a": None}}},
     {"d": {"mapping": {"x": "nope"}}}, "SYNC_DEFINITIONS.d.mapping.x"),
])
def test_bad_lane_settings_name_the_part_at_fault(environments: Any, definitions: Any,
                                                  message: str) -> None:
    extra = {"SYNC_ENVIRONMENTS": json.dumps(environments)}
    if definitions is not None:
        extra["SYNC_DEFINITIONS"] = json.dumps(definitions)
    with pytest.raises(ConfigError, match=message):
        settings_with(**extra)


def test_one_definition_setting_or_the_other_not_both() -> None:
    with pytest.raises(ConfigError, match="not both"):
        settings_with(SYNC_DEFINITION="{}", SYNC_DEFINITIONS=json.dumps({"d": {}}))


def test_a_static_token_is_refused_when_any_environment_is_off_loopback() -> None:
    environments = {"a": {"url": "http://127.0.0.1:8", "identities": {"i": None}},
                    "b": {"url": "https://contoso.crm.dynamics.com", "identities": {"i": None}}}
    with pytest.raises(ConfigError, match="DATAVERSE_STATIC_TOKEN"):
        settings_with(SYNC_ENVIRONMENTS=json.dumps(environments),
                      SYNC_DEFINITIONS=json.dumps({"d": {"environment": "a"}}),
                      DATAVERSE_STATIC_TOKEN="t")


def test_environments_from_a_file_in_the_app() -> None:
    with pytest.raises(ConfigError, match=r"SYNC_ENVIRONMENTS file 'missing\.json'"):
        parse_environments("@missing.json")


def test_the_default_lane_keeps_the_single_lane_keys_and_others_are_prefixed() -> None:
    assert state_keys(LaneKey("default", "default"), "environment").gate == ("gate", "dataverse")
    shared = state_keys(LaneKey("prod", "a"), "environment")
    assert (shared.gate, shared.slots, shared.leases, shared.circuits) == (
        ("prod.a|gate", "dataverse"), "prod|slot", "prod|lease", "prod.a|circuit")
    own = state_keys(LaneKey("prod", "a"), "identity")
    assert (own.slots, own.hint) == ("prod.a|slot", ("prod.a|dop", "hint"))


@pytest.mark.parametrize(("schedule", "since", "now", "due_"), [
    ("0 0 2 * * *", "2026-12-01T01:59:00", "2026-12-01T02:00:00", True),
    ("0 0 2 * * *", "2026-12-01T02:00:00", "2026-12-01T03:00:00", False),
    ("0 0 2 * * *", "2026-11-29T03:00:00", "2026-12-01T01:00:00", True),
    ("0 */15 * * * *", "2026-12-01T10:01:00", "2026-12-01T10:14:59", False),
    ("0 */15 * * * *", "2026-12-01T10:01:00", "2026-12-01T10:15:00", True),
    ("30 0 2 * * 0", "2026-12-05T00:00:00", "2026-12-06T02:00:30", True),  # a Sunday
    ("30 0 2 * * 1-5", "2026-12-05T00:00:00", "2026-12-06T02:00:30", False),
])
def test_a_schedule_is_due_when_an_occurrence_fell_since(schedule: str, since: str, now: str,
                                                         due_: bool) -> None:
    parsed = parse_schedule(schedule, "s")
    at = [datetime.fromisoformat(t).replace(tzinfo=UTC) for t in (since, now)]
    assert parsed.due(*at) is due_


def test_a_message_names_its_lane_and_older_ones_none() -> None:
    record = RecordRef("5b1c7f9e-0000-4000-8000-000000000001", "https://x.example")
    message = Message("b-1", (record,), definition="accounts", lane=("prod", "a"))
    assert decode_message(message.to_json().encode()).lane == ("prod", "a")
    v3 = {"version": 3, "batch_id": "b", "records": [record.to_wire()]}
    assert decode_message(json.dumps(v3).encode()).lane is None
    bad = {**v3, "version": 4, "lane": {"environment": "Prod", "identity": "a"}}
    with pytest.raises(ContractError, match=r"lane\.environment"):
        decode_message(json.dumps(bad).encode())


async def received(services: Services, visibility_s: int = 30) -> list[Message]:
    found = []
    async for item in services.storage.batches.receive_messages(visibility_timeout=visibility_s,
                                                                 messages_per_page=32):
        found.append(decode_message(item.content.encode()))
    return found


async def first_visible(services: Services, within_s: float) -> Message:
    """The first message that becomes visible on the batches queue (bounded in time)."""
    for _ in range(int(within_s / 0.25) + 1):
        found = await received(services)
        if found:
            return found[0]
        await asyncio.sleep(0.25)
    raise AssertionError(f"no message became visible within {within_s} s")


async def test_a_message_for_a_lane_the_definition_does_not_use_is_poison(
        make_services: Make, dataverse_url: str) -> None:
    services = await make_services(**two_lanes(dataverse_url))
    record = (await refs(services, 1))[0]
    for message, reason in [
            (Message("b-1", (record,), definition="accounts", lane=("prod", "c")),
             "lane prod/c is not a lane of definition accounts"),
            (Message("b-2", (record,), definition="contacts"),
             "unknown definition 'contacts'; this deployment defines: accounts")]:
        counts = await worker.process_message(services, message.to_json().encode())
        assert counts.rejected_messages == 1
        poisoned = [m async for m in services.storage.poison.receive_messages()]
        assert reason in poisoned[-1].content


async def test_a_throttled_lane_hands_its_records_to_an_open_lane_at_once(
        make_services: Make, dataverse_url: str) -> None:
    services = await make_services(**two_lanes(dataverse_url))
    a, b = services.lanes[LaneKey("prod", "a")], services.lanes[LaneKey("prod", "b")]
    a.governor.close_gate(120.0)  # lane a is throttled for two minutes; b is open
    assert routing.away_from(a, [a, b]) is b
    records = tuple(await refs(services, 5))
    message = Message("b-1", records, definition="accounts", lane=("prod", "a"))
    counts = await worker.process_message(services, message.to_json().encode())
    assert (counts.written, counts.reenqueued) == (0, 5)
    assert counts.requeue_delay_s <= 1 + REQUEUE_JITTER_MAX_S  # not the 120 s
    moved = await first_visible(services, within_s=1 + REQUEUE_JITTER_MAX_S + 2)
    assert moved.lane is None  # taken by whichever lane is open then (b, not a)
    assert routing.pick([a, b]) is b
    b.governor.close_gate(120.0)  # now both are throttled: the records wait on their lane
    again = Message("b-2", records, definition="accounts", lane=("prod", "b"))
    counts = await worker.process_message(services, again.to_json().encode())
    assert counts.requeue_delay_s >= 100


async def knows_hint(services: Services) -> None:
    """Every lane has had an answer (the planner's page reads give one in a run): the pool is
    the hint, no longer the one slot of an unknown hint."""
    for lane in services.lanes.values():
        await lane.dataverse.who_am_i()
    await refreshed(services)


async def test_each_lane_writes_as_its_own_user(make_services: Make,
                                                dataverse_url: str) -> None:
    services = await make_services(**two_lanes(dataverse_url))
    await knows_hint(services)
    records = await refs(services, 4)
    for lane, part in ((("prod", "a"), records[:2]), (("prod", "b"), records[2:])):
        message = Message(f"b-{lane[1]}", tuple(part), definition="accounts", lane=lane)
        counts = await worker.process_message(services, message.to_json().encode())
        assert counts.written == 2
    tokens = {str(lane.key): await lane.tokens.token() for lane in services.lanes.values()}
    assert tokens["prod/a"] != tokens["prod/b"]
    assert tokens["prod/a"].endswith("-a")


async def test_the_planner_deals_a_definitions_messages_to_its_lanes(
        make_services: Make, dataverse_url: str) -> None:
    services = await make_services(SYNC_BATCH_SIZE="5", **two_lanes(dataverse_url))
    assert await planner.plan(services, datetime.now(UTC)) is None
    messages = await received(services)
    assert messages
    assert {m.definition for m in messages} == {"accounts"}
    lanes = [m.lane for m in messages]
    assert lanes.count(("prod", "a")) == lanes.count(("prod", "b")) == len(messages) // 2
    saved = [e async for e in services.storage.state.query_entities(
        "PartitionKey eq 'checkpoint'")]
    assert [e["RowKey"] for e in saved] == ["accounts.accounts"]


async def test_a_scheduled_definition_is_planned_when_due_only(make_services: Make,
                                                               dataverse_url: str) -> None:
    env = two_lanes(dataverse_url)
    env["SYNC_DEFINITIONS"] = json.dumps({"accounts": {"environment": "prod",
                                                       "schedule": "0 0 2 * * *"}})
    services = await make_services(**env)
    definition = services.settings.definitions.first
    night = datetime(2026, 12, 1, 2, 0, 0, tzinfo=UTC)
    table = services.storage.state
    assert await due.claim(table, definition, night)  # new: planned at its first tick
    assert not await due.claim(table, definition, night + timedelta(hours=1))
    assert await due.claim(table, definition, night + timedelta(days=1))


async def test_a_throttled_or_broken_lane_does_not_slow_another(make_services: Make,
                                                               dataverse_url: str) -> None:
    services = await make_services(**two_lanes(dataverse_url))
    await knows_hint(services)
    a, b = services.lanes[LaneKey("prod", "a")], services.lanes[LaneKey("prod", "b")]
    for _ in range(services.settings.circuit_threshold):
        a.dependency.circuit.failed(ServiceFault("dataverse", "503", status=503))
    assert a.dependency.circuit.state == "open"
    await a.cluster.publish_gate(120.0, "0x80072322")  # shared with every instance's lane a
    await a.cluster.publish_circuit("dataverse")
    await a.cluster.refresh()
    await b.cluster.refresh()  # lane b reads its own keys: nothing of lane a's
    assert a.governor.gate_remaining_s() > 100
    records = tuple(await refs(services, 10))
    message = Message("b-1", records, definition="accounts", lane=("prod", "b"))
    counts = await worker.process_message(services, message.to_json().encode())
    assert (counts.written, counts.reenqueued) == (10, 0)
    assert b.governor.gate_remaining_s() == 0
    assert b.dependency.circuit.state == "closed"


async def test_an_environment_in_an_outage_leaves_the_other_to_finish(
        make_services: Make, dataverse_url: str) -> None:
    other = await start_emulator(EmulatorConfig(records=50, seed=7))
    try:
        environments = {"broken": {"url": dataverse_url, "identities": {"a": None}},
                        "fine": {"url": other.url, "identities": {"a": None}}}
        definitions = {"one": {"environment": "broken"}, "two": {"environment": "fine"}}
        services = await make_services(SYNC_ENVIRONMENTS=json.dumps(environments),
                                       SYNC_DEFINITIONS=json.dumps(definitions),
                                       SYNC_MAX_RETRIES="0")
        async with aiohttp.ClientSession() as session:
            await (await session.post(f"{dataverse_url}/_emulator/faults",
                                      json={"preset": "503", "hits": "writes"})).read()
            answer = await session.get(f"{other.url}/_emulator/records",
                                       params={"entityset": "accounts"})
            fine_rows = (await answer.json())["value"]
        broken = tuple(await refs(services, 10))
        counts = await worker.process_message(services, Message(
            "b-1", broken, definition="one").to_json().encode())
        assert (counts.written, counts.dead_lettered, counts.reenqueued) == (0, 0, 10)
        fine = tuple(RecordRef(str(r["accountid"]), str(r["websiteurl"])) for r in fine_rows[:10])
        counts = await worker.process_message(services, Message(
            "b-2", fine, definition="two").to_json().encode())
        assert (counts.written, counts.reenqueued) == (10, 0)
        assert services.lanes[LaneKey("fine", "a")].dependency.circuit.state == "closed"
    finally:
        await other.close()


async def refreshed(services: Services, rounds: int = 3) -> None:
    for _ in range(rounds):
        for lane in services.lanes.values():
            lane.activity.touch()  # busy: each lane leases its part
            await lane.cluster.refresh()


@pytest.mark.parametrize("scope", ["environment", "identity"])
@pytest.mark.emulator(dop_hint=4)
async def test_the_lanes_of_an_environment_share_its_hint_unless_it_is_per_identity(
        make_services: Make, dataverse_url: str, scope: str) -> None:
    services = await make_services(**two_lanes(dataverse_url, scope))
    for lane in services.lanes.values():
        await lane.dataverse.who_am_i()  # each learns the hint from an answer
    hint = services.first_lane.dataverse.dop_hint
    assert hint is not None
    await refreshed(services)
    shares = [lane.governor.share for lane in services.lanes.values()]
    assert all(share > 0 for share in shares)
    if scope == "environment":  # one budget: the lanes together hold the hint
        assert sum(shares) == hint
    else:  # each lane its own
        assert shares == [hint, hint]


async def test_only_the_lanes_a_definition_uses_are_built(make_services: Make,
                                                          dataverse_url: str) -> None:
    env = two_lanes(dataverse_url)
    env["SYNC_DEFINITIONS"] = json.dumps({"accounts": {"identities": ["b"]}})
    services = await make_services(**env)
    assert list(services.lanes) == [LaneKey("prod", "b")]
