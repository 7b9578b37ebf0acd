"""The loops users write today, each enriching and writing the same records, in any write mode.

Patterns (each request retries on its own after Retry-After, at most ``MAX_RETRIES`` times, as
the .NET ServiceClient and the WebAPIService sample do; a record whose request gives up fails):

- ``sequential``: one unit of work at a time (the seeds' "fourteen hours" loop); in bulk mode
  this is "bulk at 1", what Microsoft's bulk guidance suggests for standard tables;
- ``fixed-52``: 52 units at once, affinity cookie kept (the ServiceClient's defaults);
- ``recommended-x1`` / ``-x3``: as many at once as ``x-ms-dop-hint`` says, affinity cookie off
  (the seeds' ``Parallel.ForEachAsync`` pattern), in 1 or 3 processes each reading the hint; in
  bulk mode x1 is "bulk at the DOP hint".

Write modes: ``single`` (a PATCH per record), ``batch`` (a ``$batch`` of 10 PATCHes with
continue-on-error), ``bulk`` (an ``UpdateMultiple`` of 100 targets). A unit enriches its records
(concurrently), then writes them in one request.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from bench.scenarios import UNIT_RECORDS
from sync.clients.odata_batch import Operation, batch_request, parse_batch_response
from sync.failures.triage import error_code_and_message, parse_retry_after_s

API: Final = "/api/data/v9.2/"
MAX_RETRIES: Final = 10
"""The .NET ServiceClient's MaxRetryCount; a request that exhausts it gives its records up."""
FIXED_CONCURRENCY: Final = 52
SAMPLE_EVERY_S: Final = 0.5
ODATA_TYPE: Final = "Microsoft.Dynamics.CRM.account"

Record = tuple[str, str]
"""(accountid, domain)"""


@dataclass
class Tally:
    """What one baseline process did."""

    written: int = 0
    failed: int = 0
    throttled_by_code: Counter[str] = field(default_factory=Counter)
    retry_wait_s: float = 0.0
    timeline: list[tuple[float, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the baseline sends its requests."""

    dataverse_url: str
    enrichment_url: str
    token: str
    api_key: str
    mapping: dict[str, str]


@dataclass(frozen=True, slots=True)
class Loop:
    """How a pattern sends: a fixed concurrency (None: the DOP hint), cookies kept or not."""

    concurrency: int | None
    keep_cookies: bool


def loop_of(pattern: str) -> Loop:
    """The loop a pattern name stands for."""
    if pattern == "sequential":
        return Loop(1, keep_cookies=True)
    if pattern == "fixed-52":
        return Loop(FIXED_CONCURRENCY, keep_cookies=True)
    if pattern.startswith("recommended"):
        return Loop(None, keep_cookies=False)
    raise ValueError(f"unknown baseline pattern {pattern!r}")


def units(records: list[Record], mode: str) -> Iterator[list[Record]]:
    """The records in units of one write request each."""
    size = UNIT_RECORDS[mode]
    for start in range(0, len(records), size):
        yield records[start:start + size]


class Client:
    """One baseline process's HTTP: per-request retries after Retry-After, 429s counted."""

    def __init__(self, session: aiohttp.ClientSession, target: Target, tally: Tally) -> None:
        self.session, self.target, self.tally = session, target, tally

    async def send(self, method: str, url: str, **kwargs: Any) -> tuple[int, bytes, str]:
        """Answers (status, body, content type); 429 after the last retry; 0 on a transport
        error (not retried)."""
        for _ in range(MAX_RETRIES + 1):
            try:
                async with self.session.request(method, url, **kwargs) as answer:
                    body = await answer.read()
                    if answer.status != 429:
                        return answer.status, body, answer.headers.get("Content-Type", "")
                    wait_s = parse_retry_after_s(answer.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError):
                return 0, b"", ""
            code, _ = error_code_and_message(body)
            self.tally.throttled_by_code[code or "enrichment-429"] += 1
            self.tally.retry_wait_s += wait_s
            await asyncio.sleep(wait_s)
        return 429, b"", ""

    async def enrich(self, record: Record) -> dict[str, Any] | None:
        """The mapped columns of one record, or None when the enrichment call gave up."""
        status, body, _ = await self.send(
            "GET", f"{self.target.enrichment_url}/v1/companies", params={"domain": record[1]},
            headers={"x-api-key": self.target.api_key})
        if status != 200:
            return None
        profile = _json(body)
        return {column: profile.get(source) for column, source in self.target.mapping.items()}

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.target.token}"}

    @property
    def api_url(self) -> str:
        return f"{self.target.dataverse_url}{API}"


def _json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def write_unit(client: Client, mode: str, unit: list[tuple[str, dict[str, Any]]]) -> int:
    """Write enriched records in one request of ``mode``; answers how many were written."""
    if mode == "single":
        (record_id, columns), = unit
        status, _, _ = await client.send(
            "PATCH", f"{client.api_url}accounts({record_id})", json=columns,
            headers={**client.headers, "If-Match": "*"})
        return 1 if status == 204 else 0
    if mode == "batch":
        return await _batch(client, unit)
    targets = [{"@odata.type": ODATA_TYPE, "accountid": record_id, **columns}
               for record_id, columns in unit]
    status, _, _ = await client.send(
        "POST", f"{client.api_url}accounts/Microsoft.Dynamics.CRM.UpdateMultiple",
        json={"Targets": targets}, headers=client.headers)
    return len(unit) if status == 204 else 0


async def _batch(client: Client, unit: list[tuple[str, dict[str, Any]]]) -> int:
    operations = [Operation("PATCH", f"accounts({record_id})", {"If-Match": "*"}, columns)
                  for record_id, columns in unit]
    content_type, body = batch_request(operations, API)
    status, answer, answer_type = await client.send(
        "POST", f"{client.api_url}$batch", data=body,
        headers={**client.headers, "Content-Type": content_type,
                 "Prefer": "odata.continue-on-error"})
    if status != 200:
        return 0
    try:
        return sum(1 for part in parse_batch_response(answer_type, answer) if part.status == 204)
    except ValueError:
        return 0


async def do_unit(client: Client, mode: str, unit: list[Record]) -> None:
    """Enrich a unit's records at once, write those enriched; count the rest as failed."""
    enriched = await asyncio.gather(*(client.enrich(record) for record in unit))
    ready = [(record[0], columns) for record, columns in zip(unit, enriched, strict=True)
             if columns is not None]
    written = await write_unit(client, mode, ready) if ready else 0
    client.tally.written += written
    client.tally.failed += len(unit) - written


async def run_baseline(pattern: str, mode: str, target: Target, records: list[Record],
                       seconds: float, grace_s: float) -> Tally:
    """Run one loop over ``records`` until done, or ``seconds`` (plus ``grace_s`` for requests
    asleep in a Retry-After) have passed; it always stops by itself."""
    tally, loop = Tally(), loop_of(pattern)
    jar: aiohttp.abc.AbstractCookieJar = (aiohttp.CookieJar(unsafe=True) if loop.keep_cookies
                                          else aiohttp.DummyCookieJar())
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(cookie_jar=jar, connector=connector) as session:
        client = Client(session, target, tally)
        concurrency = loop.concurrency or await dop_hint(client)
        await _fan_out(client, mode, records, concurrency, seconds, grace_s)
    return tally


async def dop_hint(client: Client) -> int:
    """``x-ms-dop-hint`` of the environment (5 when absent)."""
    async with client.session.get(f"{client.api_url}WhoAmI", headers=client.headers) as answer:
        return max(1, int(answer.headers.get("x-ms-dop-hint", "5")))


async def _fan_out(client: Client, mode: str, records: list[Record], concurrency: int,
                   seconds: float, grace_s: float) -> None:
    started_s = time.monotonic()
    queue = units(records, mode)
    tally = client.tally

    async def worker() -> None:
        for unit in queue:
            if time.monotonic() - started_s > seconds:
                return
            await do_unit(client, mode, unit)

    async def sample() -> None:
        while True:
            tally.timeline.append((round(time.monotonic() - started_s, 2), tally.written))
            await asyncio.sleep(SAMPLE_EVERY_S)

    sampler = asyncio.create_task(sample())
    workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
    _, late = await asyncio.wait(workers, timeout=seconds + grace_s)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    sampler.cancel()
    tally.timeline.append((round(time.monotonic() - started_s, 2), tally.written))
