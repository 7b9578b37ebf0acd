"""The enrichment emulator's faults over real HTTP: down for a window (503 or resets) on its
clock, errors and resets at a seeded rate, a refused key, malformed 200s, per-domain faults,
the admin endpoints, counts in the stats, and the ``--fault`` option."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sync.clock import ManualClock
from sync.local.emulators.enrichment import (
    API_KEY_HEADER,
    EnrichmentConfig,
    profile_for,
    start_enrichment,
)
from sync.local.emulators.enrichment.cli import fault_rule
from sync.local.emulators.enrichment.faults import FAULT_HEADER, NOT_JSON_BODY
from tests.emulator_command import emulator_serving

ROOT = Path(__file__).parents[1]
KEY = EnrichmentConfig().api_key


@dataclass
class Reply:
    status: int
    mark: str | None
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.raw)


def _reply(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    assert "chunked" not in headers.get("transfer-encoding", ""), "aiohttp sends a length"
    return Reply(int(status_line.split(" ")[1]), headers.get(FAULT_HEADER), body)


class Enrichment:
    """The emulator on a free port, on a manual clock, and a session that talks to it."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.clock = ManualClock()
        self.runner: Any = None
        self.url = ""

    async def start(self, **fields: Any) -> None:
        self.runner, self.url = await start_enrichment(
            EnrichmentConfig(latency_ms=0.0, **fields), clock=self.clock)

    async def company(self, domain: str, key: str = KEY) -> Reply:
        """One call on a fresh connection, read by hand: aiohttp would silently send a GET
        again after a reset, and a test must see each reset once."""
        host, port = self.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(f"GET /v1/companies?domain={domain} HTTP/1.1\r\nHost: {host}\r\n"
                         f"{API_KEY_HEADER}: {key}\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read()
        except ConnectionResetError:
            raw = b""
        finally:
            writer.close()
        if not raw:
            raise aiohttp.ServerDisconnectedError()
        return _reply(raw)

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        async with self.session.request(method, f"{self.url}/_emulator/{path}",
                                        json=body) as answer:
            assert answer.status == 200, await answer.text()
            return await answer.json()

    async def add(self, *rules: dict[str, Any]) -> None:
        await self.admin("POST", "faults", list(rules))

    async def faults(self) -> dict[str, int]:
        found: dict[str, int] = (await self.admin("GET", "stats"))["faults"]
        return found


@pytest.fixture
async def enrichment() -> AsyncIterator[Enrichment]:
    connector = aiohttp.TCPConnector(force_close=True)  # a reset costs one connection only
    async with aiohttp.ClientSession(connector=connector) as session:
        served = Enrichment(session)
        yield served
        if served.runner is not None:
            await served.runner.cleanup()


async def test_down_for_a_window_answers_503_until_the_clock_passes_it(
        enrichment: Enrichment) -> None:
    await enrichment.start()
    await enrichment.add({"preset": "down", "window_s": 120})
    down = await enrichment.company("contoso.com")
    assert (down.status, down.mark) == (503, "down")
    assert down.json() == {"error": "the service is temporarily unavailable",
                           "code": "service_unavailable"}
    enrichment.clock.advance(119)
    assert (await enrichment.company("fabrikam.com")).status == 503
    enrichment.clock.advance(1)
    up = await enrichment.company("contoso.com")
    assert (up.status, up.json()) == (200, profile_for("contoso.com"))
    assert await enrichment.faults() == {"down": 2}


async def test_down_by_resets_drops_every_connection(enrichment: Enrichment) -> None:
    await enrichment.start()
    await enrichment.add({"kind": "reset", "window_s": 30})
    for _ in range(3):
        with pytest.raises(aiohttp.ClientConnectionError):
            await enrichment.company("contoso.com")
    enrichment.clock.advance(30)
    assert (await enrichment.company("contoso.com")).status == 200
    assert await enrichment.faults() == {"reset": 3}


async def test_errors_and_resets_at_a_rate_follow_the_seed(enrichment: Enrichment) -> None:
    await enrichment.start(seed=7)
    await enrichment.add({"kind": "error", "status": 502, "rate": 0.2},
                         {"kind": "reset", "rate": 0.25})
    seen = []
    for _ in range(100):
        try:
            seen.append((await enrichment.company("contoso.com")).status)
        except aiohttp.ClientConnectionError:
            seen.append(0)
    draws = random.Random(7)
    expected = []
    for _ in range(100):  # one draw per matching rule, in the order they were added
        expected.append(502 if draws.random() < 0.2 else 0 if draws.random() < 0.25 else 200)
    assert seen == expected
    assert await enrichment.faults() == {"error-502": seen.count(502), "reset": seen.count(0)}


async def test_a_refused_key_for_a_window(enrichment: Enrichment) -> None:
    await enrichment.start()
    await enrichment.add({"preset": "401", "window_s": 10})
    refused = await enrichment.company("contoso.com")
    assert (refused.status, refused.json()["code"]) == (401, "invalid_api_key")
    enrichment.clock.advance(10)
    assert (await enrichment.company("contoso.com")).status == 200


async def test_malformed_answers_are_what_they_claim(enrichment: Enrichment) -> None:
    await enrichment.start()
    await enrichment.add({"kind": "not_json"})
    assert (await enrichment.company("a.com")).raw == NOT_JSON_BODY
    await enrichment.admin("DELETE", "faults")
    await enrichment.add({"kind": "truncated_json"})
    cut = await enrichment.company("a.com")
    assert cut.status == 200
    assert json.dumps(profile_for("a.com")).encode().startswith(cut.raw)
    with pytest.raises(json.JSONDecodeError):
        cut.json()
    await enrichment.admin("DELETE", "faults")
    await enrichment.add({"kind": "missing_field"})
    missing = await enrichment.company("a.com")
    assert missing.json() == {k: v for k, v in profile_for("a.com").items() if k != "employees"}
    assert await enrichment.faults() == {"not_json": 1, "truncated_json": 1,
                                         "missing-employees": 1}


@pytest.mark.parametrize(("rule", "status", "name"), [
    ({"preset": "422-unknown-company"}, 422, "key-422-unknown-company"),
    ({"kind": "error", "status": 500}, 500, "key-error-500")])
async def test_a_per_domain_fault_hits_that_domain_alone(
        enrichment: Enrichment, rule: dict[str, Any], status: int, name: str) -> None:
    await enrichment.start()
    await enrichment.add({**rule, "domains": ["Broken.example"]})
    assert [(await enrichment.company("broken.example")).status for _ in range(3)] == [
        status] * 3
    assert (await enrichment.company("fine.example")).status == 200
    assert await enrichment.faults() == {name: 3}


async def test_admin_lists_and_clears_and_refuses_bad_rules(enrichment: Enrichment) -> None:
    await enrichment.start()
    await enrichment.add({"preset": "down", "window_s": 60}, {"kind": "reset", "rate": 0.1})
    listed = (await enrichment.admin("GET", "faults"))["rules"]
    assert [(r["name"], r["window_left_s"]) for r in listed] == [("down", 60.0),
                                                                  ("reset", None)]
    async with enrichment.session.post(f"{enrichment.url}/_emulator/faults",
                                       json={"kind": "commit_then_drop"}) as answer:
        assert answer.status == 400
        assert "kind must be one of" in (await answer.json())["error"]
    assert await enrichment.admin("DELETE", "faults") == {"cleared": 2}
    assert (await enrichment.company("contoso.com")).status == 200


def test_the_fault_option_parses_a_rule_or_says_why_not() -> None:
    assert fault_rule('{"preset": "down", "window_s": 5}').status == 503
    with pytest.raises(Exception, match="domains must be a list"):
        fault_rule('{"preset": "500", "domains": "a.com"}')


async def test_the_fault_option_puts_rules_in_force_from_the_start() -> None:
    rule = '{"preset": "422-unknown-company", "domains": ["nope.example"]}'
    async with emulator_serving("enrichment", "--fault", rule) as url, \
            aiohttp.ClientSession() as session:
        for domain, status in (("nope.example", 422), ("fine.example", 200)):
            async with session.get(f"{url}/v1/companies", params={"domain": domain},
                                   headers={API_KEY_HEADER: KEY}) as answer:
                assert answer.status == status


async def test_the_stats_count_the_domains_answered_and_those_asked_again(
        enrichment: Enrichment) -> None:
    """``asked_again``: a company asked once more, a paid call made twice."""
    await enrichment.start()
    for domain in ("one.example", "two.example", "one.example", "one.example"):
        assert (await enrichment.company(domain)).status == 200
    stats = await enrichment.admin("GET", "stats")
    assert (stats["served"], stats["domains"], stats["asked_again"]) == (4, 2, 2)
