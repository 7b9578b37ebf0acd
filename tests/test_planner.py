"""The planner against the emulator and Azurite: continuations, change tracking, watermarks,
own writes skipped, expired tokens, a crash that never skips a record; and the guard on every
record read (property-based over rows of every size up to the limits and past them)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from azure.storage.queue.aio import QueueClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.clients.dataverse import Page, served_at_s
from sync.config.storage_names import BATCH_QUEUE, DEAD_LETTER_QUEUE, PLAN_QUEUE
from sync.config.table_definition import SyncDefinition
from sync.local.stack import local_token
from sync.message.contract import (
    MAX_INPUT_CHARS,
    MAX_QUEUE_MESSAGE_BYTES,
    Message,
    RecordRef,
    decode_message,
    encoded_size_bytes,
    fitting_groups,
    input_problem,
)
from sync.plan import planner
from sync.plan.plan_state import Checkpoint, load_checkpoint, plan_state_from, save_checkpoint
from sync.plan.planner import watermark_after
from sync.services import Services
from sync.state import manifests, runs

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)
Make = Callable[..., Any]


async def drain(services: Services, queue_name: str) -> list[bytes]:
    """Every message on a queue, removed, base64-decoded."""
    bodies: list[bytes] = []
    async with QueueClient.from_connection_string(
            str(services.settings.storage.connection_string), queue_name) as queue:
        while True:
            batch = [m async for m in queue.receive_messages(messages_per_page=32,
                                                              max_messages=32)]
            if not batch:
                return bodies
            for message in batch:
                bodies.append(base64.b64decode(message.content))
                await queue.delete_message(message)


async def run_plan(services: Services, now: datetime = NOW) -> tuple[Counter[str], int]:
    """Plan, then carry out every continuation as the plan queue's trigger would."""
    continuations = 0
    await planner.plan(services, now)
    while bodies := await drain(services, PLAN_QUEUE):
        for body in bodies:
            continuations += 1
            await planner.continue_plan(services, plan_state_from(body))
    planned: Counter[str] = Counter()
    for body in await drain(services, BATCH_QUEUE):
        planned.update(record.id for record in decode_message(body).records)
    return planned, continuations


async def rows(services: Services) -> list[dict[str, Any]]:
    url = f"{services.settings.dataverse_url}/_emulator/records"
    async with aiohttp.ClientSession() as session, session.get(
            url, params={"entityset": "accounts"}) as answer:
        data = await answer.json()
    return data["value"] if isinstance(data, dict) else data


async def change(services: Services, ids: list[str], token: str, method: str = "PATCH",
                 websites: dict[str, str] | None = None) -> None:
    """Change (or delete) records through the Web API as the user ``token`` names; their
    websites are ``websites``' where it names them."""
    api = f"{services.settings.dataverse_url}/api/data/v9.2/accounts"
    headers = {"Authorization": f"Bearer {token}", "If-Match": "*"}
    async with aiohttp.ClientSession() as session:
        for record_id in ids:
            website = (websites or {}).get(record_id, f"https://www.changed-{record_id[:8]}"
                                                      ".example")
            async with session.request(method, f"{api}({record_id})", headers=headers,
                                       json={"websiteurl": website} if method == "PATCH"
                                       else None) as answer:
                assert answer.status == 204, await answer.text()


@pytest.mark.emulator(records=25_000)
@pytest.mark.timeout(240)
async def test_large_plan_runs_as_many_short_invocations(make_services: Make) -> None:
    services = await make_services(SYNC_PAGE_SIZE="1000", SYNC_PLAN_BUDGET_S="0")
    planned, continuations = await run_plan(services)
    assert continuations >= 2
    assert len(planned) == 25_000
    assert set(planned.values()) == {1}


@pytest.mark.emulator(records=400)
async def test_second_tracked_plan_has_only_the_changes(make_services: Make) -> None:
    services = await make_services(SYNC_PAGE_SIZE="100")
    first, _ = await run_plan(services)
    assert len(first) == 400
    ids = [str(r["accountid"]) for r in await rows(services)]
    person = local_token()  # another user than the app's
    await change(services, ids[:30], person)
    await change(services, ids[30:35], person, method="DELETE")
    second, _ = await run_plan(services, NOW + timedelta(days=1))
    assert set(second) == set(ids[:30])


@pytest.mark.emulator(records=200)
async def test_own_writes_are_not_planned_again(make_services: Make,
                                                app_env: dict[str, str]) -> None:
    services = await make_services(SYNC_PAGE_SIZE="100")
    await run_plan(services)
    ids = [str(r["accountid"]) for r in await rows(services)]
    await change(services, ids[:10], app_env["DATAVERSE_STATIC_TOKEN"])
    await change(services, ids[10:13], local_token())
    second, _ = await run_plan(services, NOW + timedelta(days=1))
    assert set(second) == set(ids[10:13])


@pytest.mark.emulator(records=150)
async def test_refused_delta_token_falls_back_to_a_full_scan(make_services: Make) -> None:
    services = await make_services(SYNC_PAGE_SIZE="100")
    await run_plan(services)
    saved = await load_checkpoint(services.storage.state, "accounts")
    assert saved.delta_link
    broken = saved.delta_link.split("$deltatoken=")[0] + "$deltatoken=expired-or-unknown"
    await save_checkpoint(services.storage.state, "accounts", Checkpoint(delta_link=broken), "x")
    again, _ = await run_plan(services, NOW + timedelta(days=1))
    assert len(again) == 150
    assert (await load_checkpoint(services.storage.state, "accounts")).delta_link != broken


WATERMARK = {"SYNC_PAGE_SIZE": "100", "SYNC_CLOCK_SKEW_S": "0",
             "SYNC_DEFINITION": json.dumps({"change_tracking": False})}


@pytest.mark.emulator(records=300)
async def test_watermark_mode_plans_what_changed_since(make_services: Make) -> None:
    services = await make_services(**WATERMARK)
    await asyncio.sleep(1.1)  # modifiedon has whole seconds: read after the seeding's second
    first, _ = await run_plan(services, datetime.now(UTC))
    assert len(first) == 300
    assert (await load_checkpoint(services.storage.state, "accounts")).watermark
    ids = [str(r["accountid"]) for r in await rows(services)]
    await asyncio.sleep(1.1)  # and change after the watermark's
    await change(services, ids[:7], local_token())
    second, _ = await run_plan(services, datetime.now(UTC))
    assert set(second) == set(ids[:7])


@pytest.mark.emulator(records=100)
async def test_a_host_clock_ahead_of_dataverse_skips_no_change(make_services: Make) -> None:
    """The watermark is Dataverse's time when it answered the first page, not the host's: a
    host an hour ahead (its timer's time) still plans what changed after its plan."""
    services = await make_services(**WATERMARK)
    await asyncio.sleep(1.1)
    ahead = datetime.now(UTC) + timedelta(hours=1)
    first, _ = await run_plan(services, ahead)
    assert len(first) == 100
    mark = (await load_checkpoint(services.storage.state, "accounts")).watermark
    assert mark is not None
    assert datetime.fromisoformat(mark) < datetime.now(UTC)
    ids = [str(r["accountid"]) for r in await rows(services)]
    await asyncio.sleep(1.1)
    await change(services, ids[:5], local_token())
    second, _ = await run_plan(services, ahead + timedelta(seconds=5))
    assert set(second) == set(ids[:5])


def test_the_watermark_is_dataverses_date_less_the_margin_else_the_hosts() -> None:
    served = served_at_s("Sat, 05 Dec 2026 04:20:07 GMT")
    assert served == datetime(2026, 12, 5, 4, 20, 7, tzinfo=UTC).timestamp()
    page = Page(rows=[], next_link=None, delta_link=None, served_at_s=served)
    assert watermark_after(page, "2026-12-05T05:20:00Z", 5.0) == "2026-12-05T04:20:02Z"
    bare = Page(rows=[], next_link=None, delta_link=None)
    assert watermark_after(bare, "2026-12-05T05:20:00Z", 5.0) == "2026-12-05T05:19:55Z"
    assert [served_at_s(v) for v in (None, "", "yesterday")] == [None, None, None]


@pytest.mark.emulator(records=500)
async def test_a_crash_between_enqueues_never_skips_a_record(make_services: Make) -> None:
    services = await make_services(SYNC_PAGE_SIZE="100", SYNC_BATCH_SIZE="20")
    real_send = services.storage.batches.send_message
    sent = 0

    async def failing_send(*args: Any, **kwargs: Any) -> Any:
        nonlocal sent
        sent += 1
        if sent == 12:
            raise ConnectionResetError("injected crash between two enqueues")
        return await real_send(*args, **kwargs)

    services.storage.batches.send_message = failing_send  # type: ignore[method-assign]
    with pytest.raises(ConnectionResetError):
        await run_plan(services)
    assert await load_checkpoint(services.storage.state, "accounts") == Checkpoint()
    crashed = Counter(r.id for body in await drain(services, BATCH_QUEUE)
                      for r in decode_message(body).records)
    assert 0 < len(crashed) < 500
    services.storage.batches.send_message = real_send  # type: ignore[method-assign]
    rerun, _ = await run_plan(services, NOW + timedelta(minutes=5))
    assert len(set(rerun) | set(crashed)) == 500
    assert len(rerun) == 500


async def plan_until_complete(services: Services) -> Counter[str]:
    """Plan, then carry out continuations until the plan is complete."""
    await planner.plan(services, NOW)
    return await plan_until_complete_from(services)


async def add_fault(services: Services, rule: dict[str, Any]) -> None:
    url = f"{services.settings.dataverse_url}/_emulator/faults"
    async with aiohttp.ClientSession() as session, session.post(url, json=rule) as answer:
        assert answer.status == 200, await answer.text()


@pytest.mark.parametrize("rule", [
    {"kind": "error", "status": 500, "hits": "reads", "rate": 0.3},
    {"kind": "truncated_json", "rate": 0.3},
    {"kind": "not_json", "rate": 0.3},
    {"kind": "reset", "hits": "reads", "rate": 0.3},
], ids=["500s", "truncated JSON", "not JSON", "resets"])
@pytest.mark.emulator(records=2_000, seed=3)
async def test_page_reads_that_fail_at_a_rate_lose_no_page(make_services: Make,
                                                           rule: dict[str, Any]) -> None:
    services = await make_services(SYNC_PAGE_SIZE="100", SYNC_MAX_RETRIES="1",
                                   SYNC_CIRCUIT_OPEN_S="1", SYNC_CIRCUIT_MAX_OPEN_S="2")
    await add_fault(services, rule)
    planned = await plan_until_complete(services)
    assert len(planned) == 2_000
    assert set(planned.values()) == {1}


@pytest.mark.emulator(records=600)
async def test_a_plan_that_cannot_read_waits_at_its_page_and_resumes(make_services: Make) -> None:
    services = await make_services(SYNC_PAGE_SIZE="100", SYNC_MAX_RETRIES="0",
                                   SYNC_CIRCUIT_OPEN_S="1", SYNC_CIRCUIT_MAX_OPEN_S="2")
    await add_fault(services, {"preset": "503", "hits": "reads", "window_s": 3})
    handed_on = await planner.plan(services, NOW)
    assert handed_on is not None
    assert handed_on.page == 0
    planned = await plan_until_complete_from(services)
    assert len(planned) == 600
    assert set(planned.values()) == {1}
    checkpoint = await load_checkpoint(services.storage.state, "accounts")
    assert checkpoint.delta_link or checkpoint.watermark


async def plan_until_complete_from(services: Services, limit_s: float = 60.0) -> Counter[str]:
    """Carry out continuations as they become visible (a plan that could not read waits on
    the queue) until the manifest says the plan is complete; bounded by ``limit_s``."""
    deadline_s = asyncio.get_running_loop().time() + limit_s
    while not all(m.complete for m in await manifests.plans(services.storage.ledger)):
        assert asyncio.get_running_loop().time() < deadline_s, "the plan never completed"
        for body in await drain(services, PLAN_QUEUE):
            await planner.continue_plan(services, plan_state_from(body))
        await asyncio.sleep(0.2)
    planned: Counter[str] = Counter()
    for body in await drain(services, BATCH_QUEUE):
        planned.update(record.id for record in decode_message(body).records)
    return planned


@pytest.mark.emulator(records=40)
async def test_each_record_carries_its_etag_and_mapped_values_as_read(make_services: Make) -> None:
    services = await make_services()
    await planner.plan(services, NOW)
    while bodies := await drain(services, PLAN_QUEUE):
        for body in bodies:
            await planner.continue_plan(services, plan_state_from(body))
    carried = {r.id: r for body in await drain(services, BATCH_QUEUE)
               for r in decode_message(body).records}
    mapping = services.settings.definitions.first.table.mapping
    read = {str(row["accountid"]): row for row in await rows(services)}
    assert len(carried) == 40
    for record_id, record in carried.items():
        assert record.current == {column: read[record_id].get(column) for column in mapping}
        assert record.etag == f'W/"{read[record_id]["versionnumber"]}"'


async def emulator_requests(services: Services) -> int:
    url = f"{services.settings.dataverse_url}/_emulator/stats"
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        return int((await answer.json())["requests"])


@pytest.mark.emulator(records=400)
async def test_the_plans_requests_are_counted_across_its_invocations(make_services: Make) -> None:
    services = await make_services(SYNC_PAGE_SIZE="100", SYNC_PLAN_BUDGET_S="0")
    _, continuations = await run_plan(services)
    assert continuations >= 2
    first = (await manifests.plans(services.storage.ledger))[0]
    assert first.requests.reads >= 4  # a page per 100 records
    assert first.requests.total == await emulator_requests(services)
    await change(services, [str(r["accountid"]) for r in await rows(services)][:5],
                 local_token())
    before = await emulator_requests(services)
    await run_plan(services, NOW + timedelta(days=1))
    plans = await manifests.plans(services.storage.ledger)
    second = next(m for m in plans if m.run_id != first.run_id)
    assert second.requests.total == await emulator_requests(services) - before
    assert second.requests.reads >= 2  # WhoAmI, then the delta page


# ------------------------------------------------------------ the guard on every record read

GUARD_ID = "5b1c2a3e-0000-4000-8000-000000000001"
TABLE = SyncDefinition()


def row(value: Any, key: Any = GUARD_ID) -> dict[str, Any]:
    return {TABLE.key: key, TABLE.input_column: value, "@odata.etag": 'W/"7"',
            **dict.fromkeys(TABLE.mapping)}


@pytest.mark.parametrize(("value", "key", "reason"), [
    ("x" * 2049, GUARD_ID, "input must be a string of 1-2048 characters; it holds 2049"),
    ("é" * 16_000, GUARD_ID, "it holds 16000"),
    (42, GUARD_ID, "input must be text, not a number"),
    (["a.com"], GUARD_ID, "input must be text, not a list"),
    ("\ud800.com", GUARD_ID, "a lone surrogate at character 0"),
    ("contoso.com", "not-a-guid", "id must be a GUID"),
], ids=["2,049 characters", "16,000 é", "a number", "a list", "a lone surrogate",
        "a key that is not a GUID"])
def test_a_record_that_breaks_the_contract_is_set_apart_with_its_reason(
        value: Any, key: Any, reason: str) -> None:
    (found,) = planner.refs_from([row(value, key)], TABLE, None)
    assert isinstance(found, planner.Unusable)
    assert reason in found.reason
    assert found.record.id == key


@pytest.mark.parametrize("value", [None, "", "   "], ids=["null", "empty", "blank"])
def test_a_row_without_an_input_is_skipped_as_before(value: Any) -> None:
    assert list(planner.refs_from([row(value)], TABLE, None)) == []


def test_the_longest_input_the_contract_allows_is_planned() -> None:
    (found,) = planner.refs_from([row(" " + "😀" * MAX_INPUT_CHARS + " ")], TABLE, None)
    assert isinstance(found, RecordRef)
    assert found.input == "😀" * MAX_INPUT_CHARS


INPUT_CHARS = st.sampled_from(["a", "é", "€", "😀", '"', "\\", "\n", "\u2028"])


@st.composite
def read_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A row as a page brings it: an input of any length up to 20,000 characters (or not
    text), an ETag, mapped values of any length up to the contract's and past it."""
    length = draw(st.one_of(st.integers(1, 40), st.integers(2000, 2100),
                            st.integers(1, 20_000)))
    value: Any = draw(st.one_of(
        st.builds(lambda c, n: c * n, INPUT_CHARS, st.just(length)),
        st.integers(), st.booleans(), st.floats(allow_nan=False)))
    cells = st.one_of(st.none(), st.integers(), st.builds(lambda c, n: c * n, INPUT_CHARS,
                                                          st.integers(0, 4100)))
    return {TABLE.key: str(uuid.uuid4()), TABLE.input_column: value,
            "@odata.etag": draw(st.builds(lambda c, n: c * n, INPUT_CHARS, st.integers(1, 130))),
            **{column: draw(cells) for column in TABLE.mapping}}


@given(st.lists(read_rows(), min_size=1, max_size=12), st.integers(1, 1000))
@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_every_message_the_planner_makes_fits_the_contract_and_the_queue(
        read: list[dict[str, Any]], batch_size: int) -> None:
    """Whatever a page holds, each record is planned in messages the worker accepts whole and
    the queue takes, or set apart with a reason: none is lost, none poisons a message."""
    found = list(planner.refs_from(read, TABLE, None))
    with_input = [r for r in read if not isinstance(r[TABLE.input_column], str)
                  or r[TABLE.input_column].strip()]
    assert [item.id if isinstance(item, RecordRef) else item.record.id for item in found] == \
        [r[TABLE.key] for r in with_input]
    refs = [item for item in found if isinstance(item, RecordRef)]
    for item, source in zip(found, with_input, strict=True):
        value = source[TABLE.input_column]
        assert isinstance(item, planner.Unusable) is (input_problem(
            value.strip() if isinstance(value, str) else value) is not None)
    groups = list(fitting_groups(refs, batch_size))
    assert [r.id for group in groups for r in group] == [r.id for r in refs]
    for group in groups:
        text = Message("b" * 128, group, 999_999, definition="d" * 63,
                       lane=("e" * 32, "i" * 32)).to_json()
        assert encoded_size_bytes(text) <= MAX_QUEUE_MESSAGE_BYTES
        assert len(decode_message(text.encode()).records) == len(group)


def test_a_record_too_large_with_its_values_travels_without_them() -> None:
    wide = {column: "é" * 4000 for column in TABLE.mapping}
    record = RecordRef(GUARD_ID, "contoso.com", etag='W/"7"', current=wide)
    (group,) = fitting_groups([record, RecordRef(GUARD_ID.replace("1", "2"), "a.com")], 10)
    assert group[0].current is None  # the worker writes it without comparing
    assert group[0].input == "contoso.com"


@pytest.mark.emulator(records=120)
async def test_long_inputs_are_dead_lettered_at_planning_and_the_table_is_planned(
        make_services: Make) -> None:
    """Before: one message over 64 KiB failed the plan at every tick, nothing was planned."""
    services = await make_services(SYNC_PAGE_SIZE="50", SYNC_BATCH_SIZE="100")
    ids = [str(r["accountid"]) for r in await rows(services)]
    long_ones = {ids[3]: "x" * 2049, ids[60]: "é" * 16_000, ids[61]: "https://" + "é" * 16_000,
                 ids[119]: "y" * 3000}
    await change(services, list(long_ones), local_token(), websites=long_ones)
    planned, _ = await run_plan(services)
    assert set(planned) == set(ids) - set(long_ones)
    letters = {letter["record"]["id"]: letter for letter in await dead_letters(services)}
    assert set(letters) == set(long_ones)
    for record_id, letter in letters.items():
        assert letter["reason"] == "unusable_input"
        assert f"it holds {len(long_ones[record_id])}" in letter["message"]
        assert len(letter["record"]["input"]) == MAX_INPUT_CHARS + 1  # shown, still too long
    (manifest,) = await manifests.plans(services.storage.ledger)
    assert manifest.records == 120
    assert manifest.complete
    totals = await runs.read_totals(services.storage.ledger, manifest.run_id)
    assert totals is not None
    assert totals.counts.dead_lettered_by_reason == {"unusable_input": 4}


async def dead_letters(services: Services) -> list[dict[str, Any]]:
    return [json.loads(body) for body in await drain(services, DEAD_LETTER_QUEUE)]
