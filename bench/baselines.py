"""The loops users write today, each enriching and writing the same records.

1. ``sequential``: one record at a time (the seeds' "fourteen hours" loop);
2. ``fixed-parallel``: 52 records at once, each request retrying on its own after Retry-After
   (what the .NET ServiceClient and the WebAPIService sample do), affinity cookie kept;
3. ``dop-hint``: as many at once as ``x-ms-dop-hint`` says, cookies off (the seeds'
   ``Parallel.ForEachAsync`` pattern), each request retrying on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from sync.failures.triage import error_code_and_message, parse_retry_after_s

API: Final = "/api/data/v9.2/"
MAX_RETRIES: Final = 10
"""The .NET ServiceClient's MaxRetryCount; a record that exhausts it is lost."""
FIXED_CONCURRENCY: Final = 52


@dataclass
class Tally:
    """What one baseline did."""

    written: int = 0
    lost: int = 0
    throttled_by_code: Counter[str] = field(default_factory=Counter)
    retry_wait_s: float = 0.0
    unfinished: int = 0
    timeline: list[tuple[float, int]] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    """Where the baseline sends its requests."""

    dataverse_url: str
    enrichment_url: str
    token: str
    api_key: str
    mapping: dict[str, str]


async def _send(session: aiohttp.ClientSession, tally: Tally, method: str, url: str,
                **kwargs: Any) -> tuple[int, Any]:
    """One request with per-request retries after Retry-After; answers (status, json)."""
    for _ in range(MAX_RETRIES + 1):
        async with session.request(method, url, **kwargs) as answer:
            body = await answer.read()
            if answer.status != 429:
                return answer.status, (await answer.json() if body and answer.ok else None)
            code, _ = error_code_and_message(body)
            wait_s = parse_retry_after_s(answer.headers.get("Retry-After"))
        tally.throttled_by_code[code or "enrichment-429"] += 1
        tally.retry_wait_s += wait_s
        await asyncio.sleep(wait_s)
    return 429, None


async def _one(session: aiohttp.ClientSession, target: Target, tally: Tally,
               record: tuple[str, str]) -> None:
    record_id, domain = record
    status, profile = await _send(session, tally, "GET", f"{target.enrichment_url}/v1/companies",
                                  params={"domain": domain},
                                  headers={"x-api-key": target.api_key})
    if status != 200:
        tally.lost += 1
        return
    columns = {column: profile.get(source) for column, source in target.mapping.items()}
    status, _ = await _send(session, tally, "PATCH",
                            f"{target.dataverse_url}{API}accounts({record_id})", json=columns,
                            headers={"Authorization": f"Bearer {target.token}",
                                     "If-Match": "*"})
    if status == 204:
        tally.written += 1
    else:
        tally.lost += 1


async def run_baseline(name: str, target: Target, records: list[tuple[str, str]],
                       seconds: float) -> Tally:
    """Run ``name`` over ``records`` until done or ``seconds`` have passed."""
    tally = Tally()
    keep_cookies = name != "dop-hint"
    jar: aiohttp.abc.AbstractCookieJar = (aiohttp.CookieJar(unsafe=True) if keep_cookies
                                          else aiohttp.DummyCookieJar())
    connector = aiohttp.TCPConnector(limit=FIXED_CONCURRENCY * 2)
    async with aiohttp.ClientSession(cookie_jar=jar, connector=connector) as session:
        concurrency = {"sequential": 1, "fixed-parallel": FIXED_CONCURRENCY}.get(name) or \
            await _dop_hint(session, target)
        await _fan_out(session, target, tally, records, concurrency, seconds)
    return tally


async def _dop_hint(session: aiohttp.ClientSession, target: Target) -> int:
    async with session.get(f"{target.dataverse_url}{API}WhoAmI",
                           headers={"Authorization": f"Bearer {target.token}"}) as answer:
        return int(answer.headers.get("x-ms-dop-hint", "5"))


GRACE_S: Final = 15.0
"""After the run's time, records still waiting on a Retry-After are given this long, then the
loop is stopped (they count as unfinished, as a user's overnight loop would still be asleep)."""


async def _fan_out(session: aiohttp.ClientSession, target: Target, tally: Tally,
                   records: list[tuple[str, str]], concurrency: int, seconds: float) -> None:
    started_s = time.monotonic()
    queue = iter(records)

    async def worker() -> None:
        for record in queue:
            if time.monotonic() - started_s > seconds:
                return
            await _one(session, target, tally, record)

    async def sample() -> None:
        while True:
            tally.timeline.append((round(time.monotonic() - started_s, 2), tally.written))
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample())
    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    _, late = await asyncio.wait(workers, timeout=seconds + GRACE_S)
    for task in late:
        task.cancel()
    tally.unfinished = len(late)
    sampler.cancel()
    tally.timeline.append((round(time.monotonic() - started_s, 2), tally.written))
