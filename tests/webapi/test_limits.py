"""The service protection limits over real HTTP: each facet's code, message and Retry-After,
concurrency answered at once, recovery as the window slides, penalties, affinity, headers."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from sync.local.emulators.webapi import EmulatorConfig
from sync.local.emulators.webapi.limits import Bucket, admit, finish, round_up
from sync.local.emulators.webapi.stats import ceiling
from tests.webapi.conftest import Client, token_for

QUICK = {"servers": 1, "write_ms_min": 1.0, "write_ms_max": 2.0, "request_overhead_ms": 0.0,
         "retry_after_resolution_s": 0.1, "penalty_s": 0.5}


async def test_request_count_facet(client: Client) -> None:
    await client.configure(records=5, window_s=1.5, max_requests=6, **QUICK)
    answers = [await client.patch_first() for _ in range(8)]
    assert [a.status for a in answers[:6]] == [204] * 6
    refused = answers[6]
    assert refused.status == 429
    assert refused.body["error"]["code"] == "0x80072322"
    assert refused.body["error"]["message"] == (
        "Number of requests exceeded the limit of 6 over time window of 1.5 seconds.")
    assert 0 < float(refused.headers["Retry-After"]) <= 1.5


async def test_execution_time_facet(client: Client) -> None:
    await client.configure(records=5, window_s=2.0, max_exec_ms=30.0,
                           **{**QUICK, "write_ms_min": 20.0, "write_ms_max": 20.0})
    statuses = [(await client.patch_first()).status for _ in range(2)]
    refused = await client.patch_first()
    assert statuses == [204, 204]
    assert refused.status == 429
    assert refused.body["error"]["code"] == "0x80072321"
    assert refused.body["error"]["message"].startswith(
        "Combined execution time of incoming requests exceeded limit of 30 milliseconds over "
        "time window of 2 seconds.")
    assert float(refused.headers["Retry-After"]) > 0


async def test_concurrency_facet_answers_at_once_while_the_others_succeed(
        client: Client) -> None:
    await client.configure(records=5, max_concurrent=3,
                           **{**QUICK, "write_ms_min": 300.0, "write_ms_max": 300.0})
    slow = [asyncio.create_task(client.patch_first()) for _ in range(3)]
    await asyncio.sleep(0.1)
    started_s = time.monotonic()
    refused = await client.patch_first()
    assert time.monotonic() - started_s < 0.2  # not queued behind the three
    assert refused.status == 429
    assert refused.body["error"] == {
        "code": "0x80072326", "message": "Number of concurrent requests exceeded the limit of 3."}
    assert [a.status for a in await asyncio.gather(*slow)] == [204, 204, 204]


async def test_recovery_as_the_window_slides(client: Client) -> None:
    await client.configure(records=5, window_s=1.0, max_requests=3, **QUICK)
    for _ in range(3):
        assert (await client.patch_first()).status == 204
    refused = await client.patch_first()
    assert refused.status == 429
    await asyncio.sleep(float(refused.headers["Retry-After"]) + 0.05)
    assert (await client.patch_first()).status == 204


async def test_sending_while_throttled_gets_a_longer_retry_after(client: Client) -> None:
    await client.configure(records=5, window_s=2.0, max_requests=2,
                           **{**QUICK, "penalty_s": 1.0})
    for _ in range(2):
        await client.patch_first()
    first = float((await client.patch_first()).headers["Retry-After"])
    second = float((await client.patch_first()).headers["Retry-After"])
    assert second > first


async def test_limits_are_per_user(client: Client) -> None:
    await client.configure(records=5, window_s=5.0, max_requests=2, **QUICK)
    for _ in range(2):
        await client.patch_first()
    assert (await client.patch_first()).status == 429
    other = await client.patch_first(token=token_for("another-user"))
    assert other.status == 204


async def test_affinity_cookie_pins_and_no_cookie_spreads(client: Client) -> None:
    await client.configure(records=5, **{**QUICK, "servers": 3})
    for _ in range(9):
        await client.patch_first()
    spread = (await client.admin("stats"))["requests_by_server"]
    assert sorted(spread.values()) == [3, 3, 3]
    await client.admin("reset-stats", "POST")
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as sticky:
        for _ in range(6):
            await client.patch_first(session=sticky)
    assert list((await client.admin("stats"))["requests_by_server"].values()) == [6]


async def test_every_answer_carries_the_headers(client: Client) -> None:
    await client.configure(records=5, dop_hint=7, **{**QUICK, "servers": 2})
    answer = await client.get("accounts?$top=1")
    assert answer.headers["x-ms-dop-hint"] == "14"
    assert answer.headers["OData-Version"] == "4.0"
    assert int(answer.headers["x-ms-ratelimit-burst-remaining-xrm-requests"]) == 5999
    assert float(answer.headers["x-ms-ratelimit-time-remaining-xrm-requests"]) > 0
    assert "ARRAffinity=server-" in answer.headers["Set-Cookie"]
    await client.admin("config", "PATCH", {"dop_hint": 3})
    assert (await client.get("WhoAmI")).headers["x-ms-dop-hint"] == "6"


async def test_no_token_is_401(client: Client) -> None:
    await client.configure(records=1)
    answer = await client.get("accounts", token="")
    assert answer.status == 401
    assert answer.body["error"]["code"] == "0x80040220"


async def test_stats_agree_with_what_the_client_counted(client: Client) -> None:
    await client.configure(records=20, window_s=2.0, max_requests=10, **QUICK)
    counted: dict[int, int] = {}
    for _ in range(15):
        status = (await client.patch_first()).status
        counted[status] = counted.get(status, 0) + 1
    stats = await client.admin("stats")
    assert stats["requests"] == counted[204] == 10
    assert stats["throttled_by_code"] == {"0x80072322": counted[429]}
    assert stats["records"]["updated"] == 10


@pytest.mark.parametrize(("seconds", "step", "expected"), [
    (0.01, 1.0, 1.0), (1.0, 1.0, 1.0), (1.2, 1.0, 2.0), (0.25, 0.1, 0.3), (0.0, 0.1, 0.1)])
def test_retry_after_is_rounded_up_to_the_step(seconds: float, step: float,
                                               expected: float) -> None:
    assert round_up(seconds, step) == pytest.approx(expected)


def test_window_arithmetic_on_a_fake_clock() -> None:
    config = EmulatorConfig(max_requests=2, window_s=10.0, max_concurrent=5, penalty_s=0.0)
    bucket = Bucket()
    assert admit(bucket, config, 0.0) is None
    assert admit(bucket, config, 1.0) is None
    denial = admit(bucket, config, 2.0)
    assert denial is not None
    assert denial.retry_after_s == 8.0  # the first request leaves the window at 10 s
    finish(bucket, config, 2.5, 5.0)
    finish(bucket, config, 2.6, 5.0)
    assert admit(bucket, config, 10.5) is None


def test_scaled_keeps_the_documented_ratios() -> None:
    scaled = EmulatorConfig.scaled(30.0)
    documented = EmulatorConfig()
    assert scaled.max_requests / scaled.window_s == documented.max_requests / documented.window_s
    assert scaled.max_exec_ms / scaled.window_s == pytest.approx(
        documented.max_exec_ms / documented.window_s)
    assert scaled.max_concurrent == 52


@pytest.mark.parametrize(("overrides", "mode", "expected"), [
    ({}, "single", 40.0),                                    # 6000/300 per server, 2 servers
    ({"servers": 1}, "single", 20.0),
    ({"write_ms_min": 2000.0, "write_ms_max": 2000.0, "request_overhead_ms": 0.0,
      "max_concurrent": 1}, "single", 1.0),                  # concurrency-bound: 1 / 2 s, x2
    ({"bulk_target_ms": 10.0, "request_overhead_ms": 0.0}, "bulk", 800.0),  # 4 s/s / 10 ms x2
])
def test_ceiling(overrides: dict[str, Any], mode: str, expected: float) -> None:
    assert ceiling(EmulatorConfig(**overrides))[mode] == pytest.approx(expected, rel=0.01)
