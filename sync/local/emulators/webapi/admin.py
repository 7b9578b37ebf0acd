"""The admin endpoints (no auth, never throttled, never counted): stats, the records, the
settings that can change at run time, a reset of the counters, and the fault rules."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from sync.local.emulators.fault_admin import add_fault_routes
from sync.local.emulators.webapi.ops import Counters
from sync.local.emulators.webapi.rows_view import PageError, page_query, stream_rows
from sync.local.emulators.webapi.servers import EMULATOR

CHANGEABLE: Final = frozenset({
    "dop_hint", "fault_500_rate", "fault_503_rate", "reset_rate", "slow_rate", "slow_ms",
    "write_ms_min", "write_ms_max", "read_page_ms", "batch_op_ms", "bulk_target_ms",
    "request_overhead_ms", "max_concurrent", "max_requests", "max_exec_ms", "penalty_s",
    "change_token_ttl_s", "bypass_privilege"})
PERSON: Final = "00000000-0000-4000-8000-0000000000ed"
"""The user an edit through ``POST /_emulator/records`` is made by (a person, not the sync)."""


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/_emulator/stats", _stats)
    app.router.add_get("/_emulator/records", _records)
    app.router.add_post("/_emulator/records", _edit_records)
    app.router.add_patch("/_emulator/config", _change_config)
    app.router.add_post("/_emulator/reset-stats", _reset_stats)
    add_fault_routes(app, lambda served: served[EMULATOR].rules)


async def _stats(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    return web.json_response(emulator.stats.as_json(emulator.config, emulator.world.counters))


async def _records(request: web.Request) -> web.StreamResponse:
    """The rows in key order, streamed: a page with ``top`` (and ``after``), else every row
    (``rows_view``)."""
    emulator = request.app[EMULATOR]
    table = emulator.world.tables.get(request.query.get("entityset", "accounts"))
    if table is None:
        return web.json_response({"error": "unknown entity set"}, status=404)
    try:
        paged = page_query(request.query)
    except PageError as error:
        return web.json_response({"error": str(error)}, status=400)
    return await stream_rows(request, table, *(paged or (None, None)))


async def _edit_records(request: web.Request) -> web.Response:
    """Change existing rows as a person would: ``{"rows": [{"accountid": ..., column: value}],
    "user": optional}``; each change gives the row a new version (and ETag)."""
    emulator = request.app[EMULATOR]
    table = emulator.world.tables.get(request.query.get("entityset", "accounts"))
    try:
        body = await request.json()
    except ValueError:
        body = None
    if table is None or not isinstance(body, dict) or not isinstance(body.get("rows"), list):
        return web.json_response({"error": "send {\"rows\": [...]} for a known entity set"},
                                 status=400)
    user = str(body.get("user") or PERSON)
    changed = 0
    for change in body["rows"]:
        row = table.get(str(change.get(table.key))) if isinstance(change, dict) else None
        unknown = set(change) - set(table.columns) if isinstance(change, dict) else set()
        if row is None or unknown:
            return web.json_response({"error": f"no such row or columns: {change!r}"},
                                     status=400)
        table.put({**row, **change}, user)
        changed += 1
    return web.json_response({"changed": changed})


async def _change_config(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    try:
        changes = await request.json()
    except ValueError:
        changes = None
    if not isinstance(changes, dict):
        return web.json_response({"error": "send a JSON object of settings"}, status=400)
    unknown = sorted(set(changes) - CHANGEABLE)
    if unknown:
        return web.json_response({"error": f"cannot change {', '.join(unknown)}"}, status=400)
    try:
        emulator.config = emulator.world.config = emulator.config.replace(**changes)
    except (ValueError, TypeError) as error:
        return web.json_response({"error": str(error)}, status=400)
    if emulator.stats.hints.hint:  # the hint measured from the first request: a change counts
        emulator.stats.hints.observe(emulator.config.dop_hint_header,
                                     emulator.clock.monotonic_s())
    return web.json_response({k: getattr(emulator.config, k) for k in sorted(CHANGEABLE)})


async def _reset_stats(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    emulator.stats = emulator.stats.reset()
    emulator.world.counters = Counters()
    return web.json_response({"reset": True})
