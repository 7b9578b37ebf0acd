"""The enrichment API over HTTP: the key, the rate limit, the profiles, and the fault rules
(request-wide ones before anything else, per-domain ones once the domain is known, malformed
answers in place of a 200)."""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from sync.clock import SYSTEM_CLOCK, Clock
from sync.local.emulators.enrichment.bound import Admissions, TokenBucket
from sync.local.emulators.enrichment.faults import (
    ENRICHMENT,
    error_response,
    malformed_response,
)
from sync.local.emulators.enrichment.profiles import profile_for
from sync.local.emulators.fault_admin import add_fault_routes
from sync.local.emulators.webapi.faults import MALFORMED, FaultBook, Rule, Target

API_KEY_HEADER: Final = "x-api-key"


@dataclass(frozen=True, slots=True)
class EnrichmentConfig:
    """Settings of the enrichment emulator."""

    api_key: str = field(default="local-enrichment-key", repr=False)
    rate_per_s: float = 500.0
    burst: int = 500
    latency_ms: float = 5.0
    seed: int = 1
    """Seed of the fault rules' rates."""
    fault_rules: tuple[Rule, ...] = ()
    """Fault rules in force from the start (more can be added at run time)."""


@dataclass
class Enrichment:
    """The emulator's state behind the routes."""

    config: EnrichmentConfig
    rules: FaultBook
    counts: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    buckets: list[TokenBucket] = field(default_factory=list)
    admissions: Admissions = field(default_factory=Admissions)

    def bucket(self, now_s: float) -> TokenBucket:
        if not self.buckets:
            self.buckets.append(TokenBucket(self.config.rate_per_s, self.config.burst, now_s))
        return self.buckets[0]

    def limit(self, now_s: float) -> float:
        """A call reaches the rate limit at ``now_s``: 0.0 when admitted, else the seconds
        until a token."""
        self.admissions.reached(now_s)
        wait_s = self.bucket(now_s).take(now_s)
        if wait_s == 0:
            self.admissions.admit(now_s)
        return wait_s

    def stats_json(self) -> dict[str, Any]:
        """The answers by status, the faults, what was served (the 200s), the limit and the
        run's bound (``bound.py``)."""
        rate_per_s, burst = self.config.rate_per_s, self.config.burst
        return {**self.counts, "faults": dict(self.faults), "served": self.counts["200"],
                "limit": {"rate_per_s": rate_per_s, "burst": burst,
                          "buckets": len(self.buckets)},
                "ceiling_per_s": rate_per_s, "run": self.admissions.as_json(rate_per_s, burst)}

    def injected(self, rule: Rule) -> Rule:
        self.faults[rule.name] += 1
        return rule


ENRICHMENT_STATE: Final = web.AppKey("enrichment", Enrichment)


def create_app(config: EnrichmentConfig, clock: Clock = SYSTEM_CLOCK) -> web.Application:
    """The aiohttp application serving the enrichment API; fault windows run on ``clock``."""
    rules = FaultBook(clock, random.Random(config.seed), ENRICHMENT)
    for rule in config.fault_rules:
        rules.add(rule)
    app = web.Application()
    app[ENRICHMENT_STATE] = Enrichment(config, rules)
    app.router.add_get("/v1/companies", _companies)
    app.router.add_get("/_emulator/stats", _stats)
    add_fault_routes(app, lambda served: served[ENRICHMENT_STATE].rules)
    return app


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENRICHMENT_STATE].stats_json())


async def _companies(request: web.Request) -> web.StreamResponse:
    state = request.app[ENRICHMENT_STATE]
    domain = request.query.get("domain", "").strip().lower()
    rule = state.rules.pick(Target("reads", frozenset({domain})))
    if rule is not None and rule.kind in ("error", "reset"):
        return _refuse(request, state.injected(rule))
    if request.headers.get(API_KEY_HEADER) != state.config.api_key:
        state.counts["401"] += 1
        return web.json_response({"error": "missing or wrong API key"}, status=401)
    wait_s = state.limit(asyncio.get_running_loop().time())
    if wait_s > 0:
        state.counts["429"] += 1
        return web.json_response({"error": "rate limit exceeded"}, status=429,
                                 headers={"Retry-After": str(max(1, math.ceil(wait_s)))})
    return await _answer(state, domain, rule)


def _refuse(request: web.Request, rule: Rule) -> web.Response:
    if rule.kind == "error":
        return error_response(rule)
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)  # never sent: the connection is gone


async def _answer(state: Enrichment, domain: str, rule: Rule | None) -> web.Response:
    if not domain or "." not in domain:
        state.counts["400"] += 1
        return web.json_response({"error": "domain must be a DNS name"}, status=400)
    await asyncio.sleep(state.config.latency_ms / 1000)
    per_domain = state.rules.pick(Target("reads", frozenset({domain})), keyed=True)
    if per_domain is not None:
        return error_response(state.injected(per_domain))
    if domain.endswith(".invalid"):
        state.counts["404"] += 1
        return web.json_response({"error": f"no company known for {domain}"}, status=404)
    if rule is not None and rule.kind in MALFORMED:
        return malformed_response(state.injected(rule), profile_for(domain))
    state.counts["200"] += 1
    return web.json_response(profile_for(domain))


async def start_enrichment(config: EnrichmentConfig, host: str = "127.0.0.1", port: int = 0,
                           clock: Clock = SYSTEM_CLOCK) -> tuple[web.AppRunner, str]:
    """Serve on ``host:port`` (0 picks a free port); answer the runner and the base URL."""
    runner = web.AppRunner(create_app(config, clock), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    return runner, f"http://{bound[0]}:{bound[1]}"
