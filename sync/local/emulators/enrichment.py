"""An enrichment API emulator: deterministic company profiles per domain, with its own rate limit.

``GET /v1/companies?domain=contoso.com`` with header ``x-api-key`` answers::

    {"domain": "contoso.com", "employees": 1234, "country": "Norway",
     "description": "Contoso: software company ..."}

The same domain always gets the same profile (``profile_for``), so a run can be checked. Domains
under ``.invalid`` answer 404 (a permanent error). Over ``rate_per_s`` (token bucket of ``burst``)
it answers 429 with ``Retry-After`` in seconds. ``GET /_emulator/stats`` counts answers.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from sync.local.emulators import until_signalled

API_KEY_HEADER: Final = "x-api-key"
_COUNTRIES: Final = ("Norway", "Germany", "Japan", "Brazil", "Canada", "Kenya", "India", "Chile")
_SECTORS: Final = ("software", "logistics", "retail", "energy", "health care", "manufacturing")


def profile_for(domain: str) -> dict[str, object]:
    """The profile the emulator serves for ``domain``; pure, so a run can be verified."""
    digest = hashlib.sha256(domain.encode("utf-8")).digest()
    name = domain.split(".", maxsplit=1)[0].capitalize()
    sector = _SECTORS[digest[2] % len(_SECTORS)]
    return {"domain": domain,
            "employees": 1 + int.from_bytes(digest[:2], "big") % 50_000,
            "country": _COUNTRIES[digest[3] % len(_COUNTRIES)],
            "description": f"{name}: {sector} company ({domain})"}


@dataclass(frozen=True, slots=True)
class EnrichmentConfig:
    """Settings of the enrichment emulator."""

    api_key: str = field(default="local-enrichment-key", repr=False)
    rate_per_s: float = 500.0
    burst: int = 500
    latency_ms: float = 5.0


class TokenBucket:
    """A token bucket on an injected clock: ``take`` answers 0 or the seconds until a token."""

    __slots__ = ("_burst", "_clock", "_rate_per_s", "_stamp_s", "_tokens")

    def __init__(self, rate_per_s: float, burst: int, clock: asyncio.AbstractEventLoop) -> None:
        self._rate_per_s, self._burst, self._clock = rate_per_s, burst, clock
        self._tokens, self._stamp_s = float(burst), clock.time()

    def take(self) -> float:
        now_s = self._clock.time()
        self._tokens = min(self._burst, self._tokens + (now_s - self._stamp_s) * self._rate_per_s)
        self._stamp_s = now_s
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate_per_s


def create_app(config: EnrichmentConfig) -> web.Application:
    """The aiohttp application serving the enrichment API."""
    app = web.Application()
    counts: Counter[str] = Counter()
    bucket: list[TokenBucket] = []

    async def companies(request: web.Request) -> web.Response:
        if request.headers.get(API_KEY_HEADER) != config.api_key:
            counts["401"] += 1
            return web.json_response({"error": "missing or wrong API key"}, status=401)
        if not bucket:
            bucket.append(TokenBucket(config.rate_per_s, config.burst, asyncio.get_running_loop()))
        wait_s = bucket[0].take()
        if wait_s > 0:
            counts["429"] += 1
            return web.json_response({"error": "rate limit exceeded"}, status=429,
                                     headers={"Retry-After": str(max(1, math.ceil(wait_s)))})
        return await _answer(request, config, counts)

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(dict(counts))

    app.router.add_get("/v1/companies", companies)
    app.router.add_get("/_emulator/stats", stats)
    return app


async def _answer(request: web.Request, config: EnrichmentConfig,
                  counts: Counter[str]) -> web.Response:
    domain = request.query.get("domain", "").strip().lower()
    if not domain or "." not in domain:
        counts["400"] += 1
        return web.json_response({"error": "domain must be a DNS name"}, status=400)
    await asyncio.sleep(config.latency_ms / 1000)
    if domain.endswith(".invalid"):
        counts["404"] += 1
        return web.json_response({"error": f"no company known for {domain}"}, status=404)
    counts["200"] += 1
    return web.json_response(profile_for(domain))


async def start_enrichment(config: EnrichmentConfig, host: str = "127.0.0.1",
                           port: int = 0) -> tuple[web.AppRunner, str]:
    """Serve on ``host:port`` (0 picks a free port); answer the runner and the base URL."""
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    return runner, f"http://{bound[0]}:{bound[1]}"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m sync emulator enrichment``."""
    defaults = EnrichmentConfig()
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one")
    parser.add_argument("--rate-per-s", type=float, default=defaults.rate_per_s,
                        help=f"requests per second before 429 ({defaults.rate_per_s:g})")
    parser.add_argument("--burst", type=int, default=defaults.burst,
                        help=f"token bucket size ({defaults.burst})")
    parser.add_argument("--latency-ms", type=float, default=defaults.latency_ms,
                        help=f"time to answer one call ({defaults.latency_ms:g} ms)")
    parser.add_argument("--api-key", default=defaults.api_key,
                        help="key clients must send in x-api-key")


def main(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM."""
    config = EnrichmentConfig(api_key=args.api_key, rate_per_s=args.rate_per_s,
                              burst=args.burst, latency_ms=args.latency_ms)
    asyncio.run(_serve(config, args.host, args.port))
    return 0


async def _serve(config: EnrichmentConfig, host: str, port: int) -> None:
    runner, url = await start_enrichment(config, host, port)
    print(f"Enrichment API emulator listening on {url}", flush=True)
    await until_signalled()
    await runner.cleanup()
