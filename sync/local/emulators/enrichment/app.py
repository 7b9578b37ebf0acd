"""The enrichment API over HTTP, in the configured shape (``shapes.py``): the credential, the
rate limit, the credits, the answers, and the fault rules (request-wide ones before anything
else, per-domain ones once the domain is known, malformed answers in place of a 200)."""

from __future__ import annotations

import random

from aiohttp import web

from sync.clock import SYSTEM_CLOCK, Clock
from sync.local.emulators.enrichment.asking import ask, ask_bulk
from sync.local.emulators.enrichment.faults import ENRICHMENT
from sync.local.emulators.enrichment.identity import issue_token
from sync.local.emulators.enrichment.state import (
    API_KEY_HEADER,
    ENRICHMENT_STATE,
    IDENTITY_PATH,
    Enrichment,
    EnrichmentConfig,
)
from sync.local.emulators.fault_admin import add_fault_routes
from sync.local.emulators.webapi.faults import FaultBook

__all__ = ["API_KEY_HEADER", "EnrichmentConfig", "create_app", "start_enrichment"]


def create_app(config: EnrichmentConfig, clock: Clock = SYSTEM_CLOCK) -> web.Application:
    """The aiohttp application serving the enrichment API in its shape; fault windows run on
    ``clock``."""
    rules = FaultBook(clock, random.Random(config.seed), ENRICHMENT)
    for rule in config.fault_rules:
        rules.add(rule)
    app = web.Application()
    state = Enrichment(config, rules)
    app[ENRICHMENT_STATE] = state
    shape = state.shape
    app.router.add_route(shape.method, shape.path, ask)
    if shape.bulk_path is not None:
        app.router.add_post(shape.bulk_path, ask_bulk)
    app.router.add_get(IDENTITY_PATH, issue_token)
    app.router.add_get("/_emulator/stats", _stats)
    add_fault_routes(app, lambda served: served[ENRICHMENT_STATE].rules)
    return app


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[ENRICHMENT_STATE].stats_json())


async def start_enrichment(config: EnrichmentConfig, host: str = "127.0.0.1", port: int = 0,
                           clock: Clock = SYSTEM_CLOCK) -> tuple[web.AppRunner, str]:
    """Serve on ``host:port`` (0 picks a free port); answer the runner and the base URL."""
    runner = web.AppRunner(create_app(config, clock), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0]
    return runner, f"http://{bound[0]}:{bound[1]}"
