"""The service protection limits over real HTTP: each facet's code, message and Retry-After,
concurrency answered at once, recovery as the window slides, penalties, users, web servers and
affinity, the headers on every answer, and stats that agree with what the client counted."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import aiohttp
import pytest
from yarl import URL

from sync.clients import ratelimit_headers
from sync.clock import ManualClock
from tests.webapi.conftest import FAST, GHOST, Answer, Client, token_for

QUICK: dict[str, Any] = {"servers": 1, "write_ms_min": 1.0, "write_ms_max": 2.0,
                         "read_page_ms": 1.0, "request_overhead_ms": 0.0,
                         "retry_after_resolution_s": 0.1, "penalty_s": 0.0}
"""One server, cheap writes, Retry-After to a tenth of a second, no penalty."""


async def first_id(client: Client) -> str:
    return (await client.ids(1))[0]


async def test_request_count_facet(client: Client) -> None:
    await client.configure(records=5, window_s=1.5, max_requests=6, **QUICK)
    record = await first_id(client)
    answers = [await client.patch(record, {"description": "x"}) for _ in range(7)]
    assert [a.status for a in answers] == [204] * 6 + [429]
    refused = answers[6]
    assert refused.error == {
        "code": "0x80072322",
        "message": "Number of requests exceeded the limit of 6 over time window of 1.5 seconds."}
    assert 0 < float(refused.headers["Retry-After"]) <= 1.5
    assert refused.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "0"


async def test_execution_time_facet(client: Client) -> None:
    await client.configure(records=5, window_s=2.0, max_exec_ms=40.0,
                           **{**QUICK, "write_ms_min": 20.0, "write_ms_max": 20.0})
    record = await first_id(client)
    statuses = [(await client.patch(record, {"description": "x"})).status for _ in range(2)]
    refused = await client.patch(record, {"description": "x"})
    assert statuses == [204, 204]  # the second fits: 20 of 40 ms spent, one 20 ms write left
    assert refused.status == 429
    assert refused.error == {
        "code": "0x80072321",
        "message": "Combined execution time of incoming requests exceeded limit of 40 "
                   "milliseconds over time window of 2 seconds. Decrease number of concurrent "
                   "requests or reduce the duration of requests and try again later."}
    assert 0 < float(refused.headers["Retry-After"]) <= 2.0
    assert refused.headers["x-ms-ratelimit-time-remaining-xrm-requests"] == "0.00"


async def wait_for_sleepers(clock: ManualClock, count: int) -> None:
    """Until ``count`` requests are being served (waiting out their server time on the
    emulator's clock); bounded in count, not a speed check."""
    for _ in range(1000):
        if clock.sleepers >= count:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"the emulator never held {count} requests in flight")


async def test_at_the_concurrency_limit_the_next_is_refused_at_once(client: Client) -> None:
    clock = ManualClock()
    await client.configure(records=5, max_concurrent=3, clock=clock,
                           **{**QUICK, "write_ms_min": 300.0, "write_ms_max": 300.0,
                              "read_page_ms": 0.0})
    record = await first_id(client)
    slow = [asyncio.create_task(client.patch(record, {"description": "slow"}))
            for _ in range(3)]
    await wait_for_sleepers(clock, 3)
    refused = await client.patch(record, {"description": "one too many"})
    assert clock.sleepers == 3  # answered while the three are still being served: at once
    assert refused.status == 429
    assert refused.error == {"code": "0x80072326",
                             "message": "Number of concurrent requests exceeded the limit of 3."}
    assert float(refused.headers["Retry-After"]) == 1.0
    clock.advance(0.3)
    assert [a.status for a in await asyncio.gather(*slow)] == [204, 204, 204]
    write = asyncio.create_task(client.patch(record, {"description": "x"}))
    await wait_for_sleepers(clock, 1)
    clock.advance(0.3)
    assert (await write).status == 204  # no episode


async def test_recovery_as_the_window_slides(client: Client) -> None:
    clock = ManualClock(auto_advance=True)  # each answer's server time passes on it
    await client.configure(records=5, window_s=1.0, max_requests=3, clock=clock, **QUICK)
    record = await first_id(client)
    started_s = clock.monotonic_s()
    assert [(await client.patch(record, {"description": "a"})).status for _ in range(2)] == [
        204, 204]
    clock.advance(0.5)
    assert (await client.patch(record, {"description": "b"})).status == 204
    refused = await client.patch(record, {"description": "c"})
    assert refused.status == 429
    wait_s = float(refused.headers["Retry-After"])
    assert 0.3 <= wait_s <= 0.6  # until the first two leave the window, not a whole window
    clock.advance(max(0.0, started_s + 0.5 + wait_s + 0.05 - clock.monotonic_s()))
    # the two of the first moment have left; the one sent half a window later has not
    statuses = [(await client.patch(record, {"description": "d"})).status for _ in range(3)]
    assert statuses == [204, 204, 429]


async def test_sending_while_throttled_gets_a_longer_retry_after(client: Client) -> None:
    await client.configure(records=5, window_s=2.0, max_requests=2,
                           **{**QUICK, "penalty_s": 1.0})
    record = await first_id(client)
    for _ in range(2):
        await client.patch(record, {"description": "x"})
    first = float((await client.patch(record, {"description": "x"})).headers["Retry-After"])
    again = float((await client.patch(record, {"description": "x"})).headers["Retry-After"])
    assert again == pytest.approx(first + 1.0, abs=0.15)  # pushed back by the penalty


async def test_limits_are_per_user(client: Client) -> None:
    await client.configure(records=5, window_s=5.0, max_requests=2, **QUICK)
    record = await first_id(client)
    other = token_for("another-user")
    for _ in range(2):
        assert (await client.patch(record, {"description": "x"})).status == 204
    assert (await client.patch(record, {"description": "x"})).status == 429
    assert (await client.patch(record, {"description": "y"}, token=other)).status == 204
    me = (await client.get("WhoAmI", token=other)).body["UserId"]
    stats = await client.admin("stats")
    assert len(stats["peak_concurrency_by_user"]) == 2
    assert me in stats["peak_concurrency_by_user"]


async def test_limits_are_per_web_server(client: Client) -> None:
    """Without the cookie a client's requests spread and it gets every server's budget."""
    await client.configure(records=5, window_s=5.0, max_requests=2, **{**QUICK, "servers": 2})
    record = await first_id(client)
    spread = [(await client.patch(record, {"description": "x"})).status for _ in range(5)]
    assert spread == [204] * 4 + [429]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as sticky:
        pinned = [(await client.patch(record, {"description": "y"}, session=sticky,
                                      token=token_for("pinned"))).status for _ in range(3)]
    assert pinned == [204, 204, 429]


async def test_affinity_cookie_pins_and_no_cookie_spreads(client: Client) -> None:
    await client.configure(records=5, **{**QUICK, "servers": 3})
    record = await first_id(client)
    for _ in range(9):
        await client.patch(record, {"description": "x"})
    assert sorted((await client.admin("stats"))["requests_by_server"].values()) == [3, 3, 3]
    await client.admin("reset-stats", "POST")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as sticky:
        answers = [await client.patch(record, {"description": "x"}, session=sticky)
                   for _ in range(6)]
        cookie = sticky.cookie_jar.filter_cookies(URL(client.url))["ARRAffinity"].value
    by_server = (await client.admin("stats"))["requests_by_server"]
    assert by_server == {cookie: 6}
    assert {a.headers["Set-Cookie"].split(";")[0] for a in answers} == {f"ARRAffinity={cookie}"}
    left = [int(a.headers["x-ms-ratelimit-burst-remaining-xrm-requests"]) for a in answers]
    assert left == sorted(left, reverse=True)
    assert len(set(left)) == 6  # one server's window: each request takes one more


async def test_every_answer_carries_the_headers(client: Client) -> None:
    await client.configure(records=5, dop_hint=7, window_s=60.0, max_requests=1000,
                           **{**FAST, "servers": 2})
    record = await first_id(client)
    answers: list[Answer] = [
        await client.get("accounts?$select=name"),
        await client.get(f"accounts({record})"),
        await client.patch(record, {"description": "x"}),
        await client.get("accounts?$filter=name eq"),
        await client.patch(GHOST, {"description": "x"}),
        await client.call("PATCH", f"accounts({record})", headers={"If-None-Match": "*"},
                          json_body={"name": "x"}),
        await client.get("WhoAmI"),
        await client.call("POST", "$batch", data=b"not a batch",
                          headers={"Content-Type": "multipart/mixed; boundary=b"}),
    ]
    await client.admin("config", "PATCH", {"max_concurrent": 1, "fault_503_rate": 1.0})
    answers.append(await client.get("WhoAmI"))
    await client.admin("config", "PATCH", {"fault_503_rate": 0.0, "fault_500_rate": 1.0})
    answers.append(await client.get("WhoAmI"))
    await client.admin("config", "PATCH", {"fault_500_rate": 0.0, "max_requests": 1})
    answers.append(await client.get("WhoAmI"))
    assert [a.status for a in answers] == [200, 200, 204, 400, 404, 412, 200, 400, 503, 500,
                                           429]
    for answer in answers:
        assert answer.headers["x-ms-dop-hint"] == "14"  # 7 per server, 2 servers
        assert answer.headers["OData-Version"] == "4.0"
        assert ratelimit_headers.requests_left(
            answer.headers["x-ms-ratelimit-burst-remaining-xrm-requests"]) is not None
        assert ratelimit_headers.time_left_s(
            answer.headers["x-ms-ratelimit-time-remaining-xrm-requests"]) is not None
        assert answer.headers["Set-Cookie"].startswith("ARRAffinity=")
    anonymous = await client.get("WhoAmI", token="")
    assert anonymous.headers["x-ms-dop-hint"] == "14"
    assert anonymous.headers["OData-Version"] == "4.0"


async def test_the_ratelimit_headers_count_down(client: Client) -> None:
    """In the service's formats: an integer, and seconds with a thousands separator."""
    await client.configure(records=5, window_s=60.0, max_requests=100, max_exec_ms=1_200_000.0,
                           **{**QUICK, "write_ms_min": 10.0, "write_ms_max": 10.0})
    record = await first_id(client)
    answers = [await client.patch(record, {"description": str(n)}) for n in range(3)]
    assert [a.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] for a in answers] == [
        "99", "98", "97"]
    assert [a.headers["x-ms-ratelimit-time-remaining-xrm-requests"] for a in answers] == [
        "1,199.99", "1,199.98", "1,199.97"]


async def test_changing_the_dop_hint_at_run_time(client: Client) -> None:
    await client.configure(records=1, dop_hint=10, **FAST)
    assert (await client.get("WhoAmI")).headers["x-ms-dop-hint"] == "20"
    changed = await client.admin("config", "PATCH", {"dop_hint": 3})
    assert changed["dop_hint"] == 3
    assert (await client.get("WhoAmI")).headers["x-ms-dop-hint"] == "6"
    assert (await client.admin("stats"))["dop_hint"] == 6


async def test_changing_an_unknown_or_impossible_setting_is_refused(client: Client) -> None:
    await client.configure(records=1, **FAST)
    async with client.session.patch(f"{client.url}/_emulator/config",
                                    json={"servers": 9}) as answer:
        assert answer.status == 400
    async with client.session.patch(f"{client.url}/_emulator/config",
                                    json={"dop_hint": 0}) as answer:
        assert answer.status == 400
    assert (await client.get("WhoAmI")).headers["x-ms-dop-hint"] == "20"


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer ", "Basic dXNlcg=="])
async def test_no_token_is_401(client: Client, authorization: str | None) -> None:
    await client.configure(records=1, **FAST)
    headers = {} if authorization is None else {"Authorization": authorization}
    async with client.session.get(f"{client.url}/api/data/v9.2/accounts",
                                  headers=headers) as response:
        body = await response.json()
        assert response.status == 401
    assert body["error"]["code"] == "0x80040220"
    assert (await client.admin("stats"))["requests"] == 0  # refused before any limit


async def test_stats_agree_with_what_the_client_counted(client: Client) -> None:
    await client.configure(records=20, window_s=30.0, max_requests=12, max_concurrent=3,
                           **{**QUICK, "servers": 2, "write_ms_min": 30.0,
                              "write_ms_max": 30.0})
    record = await first_id(client)
    users = {name: token_for(name) for name in ("alice", "bob")}
    ids = {name: (await client.get("WhoAmI", token=t)).body["UserId"]
           for name, t in users.items()}
    await client.admin("reset-stats", "POST")
    statuses: Counter[int] = Counter()
    codes: Counter[str] = Counter()
    retry_after_s = 0.0
    answers = await asyncio.gather(*(client.patch(record, {"description": "x"}, token=token)
                                     for token in users.values() for _ in range(20)))
    for answer in answers:
        statuses[answer.status] += 1
        if answer.status == 429:
            codes[answer.error["code"]] += 1
            retry_after_s += float(answer.headers["Retry-After"])
    stats = await client.admin("stats")
    assert set(statuses) == {204, 429}
    assert stats["requests"] == sum(stats["requests_by_server"].values()) == statuses[204]
    assert stats["throttled_by_code"] == dict(codes)
    assert stats["throttled"] == statuses[429]
    assert stats["retry_after_announced_s"] == pytest.approx(retry_after_s)
    assert stats["records"] == {"created": 0, "updated": statuses[204], "deleted": 0}
    assert set(stats["peak_concurrency_by_user"]) == set(ids.values())
    for peak in stats["peak_concurrency_by_user"].values():
        assert 3 < peak <= 6  # over both servers, at most 3 on each
    for peak in stats["peak_concurrency_by_server"].values():
        assert peak <= 6  # two users, at most 3 each


async def test_the_rate_limit_headers_can_be_left_out(client: Client) -> None:
    await client.configure(records=1, ratelimit_headers=0, **QUICK)
    answer = await client.get("WhoAmI")
    assert answer.status == 200
    assert "x-ms-ratelimit-burst-remaining-xrm-requests" not in answer.headers
    assert "x-ms-ratelimit-time-remaining-xrm-requests" not in answer.headers
    assert answer.headers["x-ms-dop-hint"]
