"""Fault rules over real HTTP: every kind answers what it claims, windows end on the emulator's
clock, record-level faults fail only the writes touching their records (in PATCH, in $batch
parts, and the whole UpdateMultiple), commit-then-drop commits, the admin endpoints and the
``--fault`` option."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sync.clock import ManualClock
from sync.local.emulators.webapi.cli import fault_rule
from sync.local.emulators.webapi.faults import DATAVERSE
from sync.local.emulators.webapi.injection import FAULT_HEADER, NOT_JSON_BODY
from tests.webapi.conftest import API, FAST, Client
from tests.webapi.test_batch import changeset, flat, op, read, send
from tests.webapi.test_bulk import bulk

ROOT = Path(__file__).parents[2]


async def add(client: Client, *rules: dict[str, Any]) -> list[dict[str, Any]]:
    answer = await client.admin("faults", "POST", list(rules))
    listed: list[dict[str, Any]] = answer["rules"]
    return listed


async def faults(client: Client) -> dict[str, int]:
    found: dict[str, int] = (await client.admin("stats"))["faults"]
    return found


@pytest.mark.parametrize("preset", sorted(DATAVERSE.presets))
async def test_each_preset_answers_its_documented_error_on_writes_only(
        client: Client, preset: str) -> None:
    await client.configure(records=2, **FAST)
    await add(client, {"preset": preset, "hits": "writes"})
    record = (await client.ids(1))[0]
    refused = await client.patch(record, {"description": "x"})
    expected = DATAVERSE.presets[preset]
    assert refused.status == expected.status
    assert refused.error == {"code": expected.code, "message": expected.message}
    assert refused.headers[FAULT_HEADER] == preset
    if expected.retry_after_s is not None:
        assert float(refused.headers["Retry-After"]) == expected.retry_after_s
    assert ("WWW-Authenticate" in refused.headers) is (expected.status == 401)
    assert "x-ms-dop-hint" in refused.headers  # an answer of the service, headers and all
    assert (await client.get("accounts")).status == 200
    assert (await client.row(record) or {})["description"] is None
    assert await faults(client) == {preset: 1}


async def test_a_window_ends_on_the_emulators_clock(client: Client) -> None:
    clock = ManualClock()
    await client.configure(records=1, clock=clock, **FAST)
    await add(client, {"preset": "403-privilege", "hits": "writes", "window_s": 15})
    record = (await client.ids(1))[0]
    assert (await client.patch(record, {"description": "a"})).status == 403
    clock.advance(14.9)
    assert (await client.patch(record, {"description": "b"})).status == 403
    assert (await client.admin("faults"))["rules"][0]["window_left_s"] == pytest.approx(0.1)
    clock.advance(0.1)
    assert (await client.patch(record, {"description": "c"})).status == 204
    assert (await client.admin("faults"))["rules"] == []
    assert await faults(client) == {"403-privilege": 2}


async def test_a_rule_given_at_start_runs_from_the_start(client: Client) -> None:
    clock = ManualClock(auto_advance=True)  # the server time of each answer passes on it
    rule = {"preset": "401", "window_s": 5}
    await client.configure(records=1, clock=clock,
                           fault_rules=(fault_rule(json.dumps(rule)),), **FAST)
    assert (await client.get("WhoAmI")).status == 401
    clock.advance(5)
    assert (await client.get("WhoAmI")).status == 200


async def test_page_reads_fail_at_a_rate_while_other_calls_succeed(client: Client) -> None:
    await client.configure(records=3, seed=4, **FAST)
    await add(client, {"kind": "error", "status": 500, "hits": "reads", "rate": 0.5})
    reads = [(await client.get("accounts")).status for _ in range(60)]
    others = {(await client.get("WhoAmI")).status for _ in range(20)}
    assert set(reads) == {200, 500}
    assert others == {200}
    assert await faults(client) == {"error-500": reads.count(500)}


async def test_a_reset_drops_the_connection_without_an_answer(client: Client) -> None:
    await client.configure(records=1, **FAST)
    await add(client, {"kind": "reset", "hits": "writes"})
    record = (await client.ids(1))[0]
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.patch(record, {"description": "x"})
    assert (await client.row(record) or {})["description"] is None
    assert await faults(client) == {"reset": 1}


async def test_commit_then_drop_writes_the_record_and_drops_the_answer(client: Client) -> None:
    await client.configure(records=2, **FAST)
    await add(client, {"kind": "commit_then_drop"})
    record = (await client.ids(1))[0]
    with pytest.raises(aiohttp.ClientConnectionError):
        await client.patch(record, {"description": "committed"})
    assert (await client.row(record) or {})["description"] == "committed"
    assert (await client.admin("stats"))["records"]["updated"] == 1
    assert (await client.get("accounts")).status == 200  # reads are not writes
    assert await faults(client) == {"commit_then_drop": 1}


async def raw_get(client: Client, path: str, **headers: str) -> tuple[int, str, bytes]:
    async with client.session.get(f"{client.url}{API}{path}", headers={
            "Authorization": f"Bearer {client.token}", **headers}) as answer:
        return answer.status, answer.headers[FAULT_HEADER], await answer.read()


async def test_a_200_that_is_not_json(client: Client) -> None:
    await client.configure(records=2, **FAST)
    await add(client, {"kind": "not_json"})
    status, mark, raw = await raw_get(client, "accounts")
    assert (status, mark, raw) == (200, "not_json", NOT_JSON_BODY)
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)


async def test_a_200_whose_json_is_cut_off(client: Client) -> None:
    await client.configure(records=4, **FAST)
    await add(client, {"kind": "truncated_json"})
    status, mark, raw = await raw_get(client, "accounts")
    assert (status, mark) == (200, "truncated_json")
    assert raw.startswith(b'{"@odata.context": ')
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw)


@pytest.mark.parametrize("field", ["value", "@odata.nextLink"])
async def test_a_200_missing_a_field(client: Client, field: str) -> None:
    await client.configure(records=5, **FAST)
    whole = (await client.get("accounts", headers={"Prefer": "odata.maxpagesize=2"})).body
    await add(client, {"kind": "missing_field", "field": field})
    status, mark, raw = await raw_get(client, "accounts", Prefer="odata.maxpagesize=2")
    assert (status, mark) == (200, f"missing-{field}")
    assert json.loads(raw) == {k: v for k, v in whole.items() if k != field}


async def test_a_malformed_rule_leaves_answers_without_a_json_body_alone(
        client: Client) -> None:
    await client.configure(records=1, **FAST)
    await add(client, {"kind": "truncated_json", "hits": "all"})
    record = (await client.ids(1))[0]
    assert (await client.patch(record, {"description": "x"})).status == 204
    assert await faults(client) == {}


async def test_a_record_fault_fails_only_patches_of_that_record(client: Client) -> None:
    await client.configure(records=3, **FAST)
    bad, good = await client.ids(2)
    await add(client, {"preset": "500-plugin", "record_ids": [bad]})
    refused = await client.patch(bad, {"description": "x"})
    assert (refused.status, refused.error["code"]) == (500, "0x80040265")
    assert (await client.patch(good, {"description": "y"})).status == 204
    assert [(await client.row(i) or {})["description"] for i in (bad, good)] == [None, "y"]
    assert await faults(client) == {"key-500-plugin": 1}


async def test_a_record_fault_fails_only_its_parts_of_a_batch(client: Client) -> None:
    await client.configure(records=3, **FAST)
    bad, good, other = await client.ids(3)
    await add(client, {"preset": "403-privilege", "record_ids": [bad]})
    answer = await send(client,
                        op("PATCH", f"accounts({good})", {"description": "1"}, If_Match="*"),
                        op("PATCH", f"accounts({bad})", {"description": "2"}, If_Match="*"),
                        changeset(op("PATCH", f"accounts({other})", {"description": "3"},
                                     If_Match="*", content_id="1"),
                                  op("PATCH", f"accounts({bad})", {"description": "4"},
                                     If_Match="*", content_id="2")),
                        continue_on_error=True)
    assert answer.status == 200
    statuses = [r.status for r in flat(read(answer))]
    assert statuses == [204, 403, 403]  # the changeset answers with its failure alone
    descriptions = [(await client.row(i) or {})["description"] for i in (good, bad, other)]
    assert descriptions == ["1", None, None]  # the changeset rolled back
    assert await faults(client) == {"key-403-privilege": 2}


async def test_a_record_fault_fails_the_whole_update_multiple(client: Client) -> None:
    await client.configure(records=3, **FAST)
    bad, good = await client.ids(2)
    await add(client, {"preset": "500-plugin", "record_ids": [bad]})
    refused = await bulk(client, "UpdateMultiple", {"accountid": good, "description": "g"},
                         {"accountid": bad, "description": "b"})
    assert (refused.status, refused.error["code"]) == (500, "0x80040265")
    assert [(await client.row(i) or {})["description"] for i in (bad, good)] == [None, None]
    alone = await bulk(client, "UpdateMultiple", {"accountid": good, "description": "g"})
    assert alone.status == 204
    assert (await client.row(good) or {})["description"] == "g"


async def test_admin_adds_lists_and_clears_rules(client: Client) -> None:
    # a clock that moves only with the answers' server time: the listing's time left holds
    await client.configure(records=1, clock=ManualClock(auto_advance=True), **FAST)
    assert (await client.admin("faults"))["rules"] == []
    listed = await add(client, {"preset": "503", "window_s": 30},
                       {"kind": "reset", "rate": 0.1, "hits": "writes"})
    assert [(r["id"], r["name"], r["hits"], r["window_s"]) for r in listed] == [
        (1, "503", "all", 30.0), (2, "reset", "writes", None)]
    assert listed[0]["status"] == 503
    assert (await client.admin("faults"))["rules"] == listed
    assert (await client.admin("faults", "DELETE")) == {"cleared": 2}
    assert (await client.get("WhoAmI")).status == 200


@pytest.mark.parametrize(("body", "reason"), [
    (b"not json", "send a JSON object"), (b'{"kind": "explode"}', "kind must be one of"),
    (b'[{"preset": "503"}, {"kind": "reset", "rate": 2}]', "rules[1]: rate must be")])
async def test_admin_refuses_a_bad_rule_and_adds_nothing(client: Client, body: bytes,
                                                         reason: str) -> None:
    await client.configure(records=1, **FAST)
    async with client.session.post(f"{client.url}/_emulator/faults", data=body) as answer:
        assert answer.status == 400
        assert reason in (await answer.json())["error"]
    assert (await client.admin("faults"))["rules"] == []


async def test_the_fault_option_puts_rules_in_force_from_the_start() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sync", "emulator", "dataverse", "--records", "2",
        "--fault", '{"preset": "429-requests", "hits": "reads", "window_s": 600}',
        "--fault", '{"kind": "reset", "rate": 0.5}', cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        found = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert found, first
        assert "2 fault rules" in first
        async with aiohttp.ClientSession() as session, session.get(
                f"{found.group(0)}/_emulator/faults") as answer:
            rules = (await answer.json())["rules"]
        assert [(r["name"], r.get("code")) for r in rules] == [
            ("429-requests", "0x80072322"), ("reset", None)]
    finally:
        process.terminate()
        code = await asyncio.wait_for(process.wait(), timeout=30)
    assert code == 0
