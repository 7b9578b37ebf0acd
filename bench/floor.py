"""``python -m bench.floor``: the HTTP client's CPU floor, what one GET costs the client itself.

Starts the enrichment API emulator (``python -m sync emulator enrichment``, its rate limit far
above the load so nothing is throttled), then runs each client IN ITS OWN PROCESS
(``python -m bench.floor client ...``, so the emulator's CPU is not counted): a warm-up, then
``requests`` GETs at each concurrency, bounded in time too, reading the client process's
``time.process_time()`` around the measured calls only. Two clients (``bench/callcost.py``): a
bare aiohttp client and the product's enrichment call (``EnrichmentClient`` through
``sync.clients.http.exchange``, without the governor). The bench runs it first (``measure_floor``);
``python -m bench --only floor`` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp

from bench.callcost import BARE, CLIENTS, PRODUCT, CallCost, Floor
from bench.runbaseline import LOG_DIR, URL_WAIT_S
from sync.clients.enrichment import EnrichmentClient
from sync.clients.http import new_session
from sync.local.emulators.enrichment import API_KEY_HEADER, EnrichmentConfig
from sync.local.processes import Children

CONCURRENCIES: Final = (16, 64)
UNTHROTTLED_RATE_PER_S: Final = 1_000_000
"""The emulator's rate and burst: far above what two cores send, so no call is a 429."""
CALL_TIMEOUT_S: Final = 10.0
DOMAINS: Final = 1000
"""Distinct domains the calls cycle through (the product caches nothing per domain but the
parsed website, which these calls skip)."""
API_KEY: Final = EnrichmentConfig().api_key
"""The emulator's default key: the floor's emulator is started without ``--api-key``."""
Call = Callable[[int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class FloorPlan:
    """How many calls, how many in flight, how long at most."""

    requests: int = 5000
    warmup: int = 500
    time_bound_s: float = 20.0
    """Per client and concurrency: the measured calls stop there even if fewer were made."""
    concurrencies: tuple[int, ...] = CONCURRENCIES

    def __post_init__(self) -> None:
        if self.requests < 1 or self.warmup < 0 or self.time_bound_s <= 0:
            raise ValueError(f"impossible floor plan {self!r}")


DEFAULT_FLOOR: Final = FloorPlan()
QUICK_FLOOR: Final = FloorPlan(requests=1000, warmup=100, time_bound_s=10.0)


def domain(number: int) -> str:
    return f"company-{number % DOMAINS}.example"


async def calls(call: Call, count: int, concurrency: int, deadline_s: float) -> int:
    """``count`` calls, ``concurrency`` in flight, none started after ``deadline_s``
    (``time.monotonic``); answers how many were made. A failed call raises."""
    numbers = iter(range(count))
    made = 0

    async def worker() -> None:
        nonlocal made
        for number in numbers:
            if time.monotonic() > deadline_s:
                return
            await call(number)
            made += 1

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return made


@asynccontextmanager
async def bare_client(url: str, concurrency: int) -> AsyncIterator[Call]:
    """A GET with aiohttp alone: one session, keep-alive, the body read."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT_S)
    headers = {API_KEY_HEADER: API_KEY}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def call(number: int) -> None:
            async with session.get(f"{url}/v1/companies?domain={domain(number)}",
                                   headers=headers) as answer:
                answer.raise_for_status()
                await answer.read()

        yield call


@asynccontextmanager
async def product_client(url: str, concurrency: int) -> AsyncIterator[Call]:
    """The product's enrichment call on the product's session
    (``sync.clients.http.new_session``)."""
    async with new_session(concurrency) as session:
        client = EnrichmentClient(session, url, lambda: API_KEY, CALL_TIMEOUT_S)

        async def call(number: int) -> None:
            await client.profile(domain(number))

        yield call


CLIENT_OF: Final = {BARE: bare_client, PRODUCT: product_client}


async def measure(client: str, url: str, concurrency: int, plan: FloorPlan) -> CallCost:
    """In this process: the warm-up, then the measured calls and this process's CPU for them."""
    async with CLIENT_OF[client](url, concurrency) as call:
        deadline_s = time.monotonic() + plan.time_bound_s
        await calls(call, plan.warmup, concurrency, deadline_s)
        started_s, started_cpu_s = time.monotonic(), time.process_time()
        made = await calls(call, plan.requests, concurrency, started_s + plan.time_bound_s)
        cpu_s, elapsed_s = time.process_time() - started_cpu_s, time.monotonic() - started_s
    return CallCost(client, concurrency, made, cpu_s, elapsed_s)


def measure_apart(client: str, url: str, concurrency: int, plan: FloorPlan) -> CallCost:
    """``measure`` in a process of its own (``python -m bench.floor client``)."""
    args = [sys.executable, "-m", "bench.floor", "--requests", str(plan.requests),
            "--warmup", str(plan.warmup), "--time-bound-s", repr(plan.time_bound_s),
            "client", client, "--url", url, "--concurrency", str(concurrency)]
    done = subprocess.run(args, capture_output=True, text=True, check=False,
                          timeout=2 * plan.time_bound_s + URL_WAIT_S)
    if done.returncode:
        raise RuntimeError(f"the {client} floor client failed ({done.returncode}): "
                           f"{done.stderr.strip()[-500:]}")
    return CallCost(**json.loads(done.stdout))


def measure_floor(plan: FloorPlan, log_dir: Path = LOG_DIR) -> Floor:
    """Every client at every concurrency, against a fresh unthrottled enrichment emulator."""
    children = Children(log_dir)
    try:
        _, url = children.start("floor-enrichment", [
            "emulator", "enrichment", "--rate-per-s", str(UNTHROTTLED_RATE_PER_S),
            "--burst", str(UNTHROTTLED_RATE_PER_S)], wait_for_url_s=URL_WAIT_S)
        return Floor(tuple(measure_apart(client, url, concurrency, plan)
                           for client in CLIENTS for concurrency in plan.concurrencies))
    finally:
        children.stop_all()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    plan = FloorPlan(args.requests, args.warmup, args.time_bound_s)
    if args.command == "client":
        cost = asyncio.run(measure(args.client, args.url, args.concurrency, plan))
        print(json.dumps({k: v for k, v in cost.as_dict().items() if k != "cpu_ms_per_call"}))
        return 0
    floor = measure_floor(plan)
    for cost in floor.costs:
        print(f"{cost.client} at {cost.concurrency}: {cost.requests} calls, "
              f"{cost.cpu_s:.3f} s CPU in {cost.elapsed_s:.2f} s: "
              f"{cost.cpu_ms_per_call:.3f} ms CPU per call")
    print(floor.line())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=DEFAULT_FLOOR.requests,
                        help=f"measured calls per client and concurrency "
                             f"({DEFAULT_FLOOR.requests})")
    parser.add_argument("--warmup", type=int, default=DEFAULT_FLOOR.warmup,
                        help=f"calls before the measured ones ({DEFAULT_FLOOR.warmup})")
    parser.add_argument("--time-bound-s", type=float, default=DEFAULT_FLOOR.time_bound_s,
                        help="the measured calls stop after this long "
                             f"({DEFAULT_FLOOR.time_bound_s:g} s)")
    commands = parser.add_subparsers(dest="command")
    one = commands.add_parser("client", help="one client at one concurrency, in this process")
    one.add_argument("client", choices=CLIENTS)
    one.add_argument("--url", required=True)
    one.add_argument("--concurrency", type=int, required=True)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
