"""The HTTP face: web servers behind one endpoint, the limits per user and server, the headers,
faults on demand, and the admin endpoints."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from sync.local.emulators.webapi import limits
from sync.local.emulators.webapi.batch import (
    Request,
    count_operations,
    format_batch,
    parse_batch,
    run_batch,
)
from sync.local.emulators.webapi.bulk import MESSAGES, bulk
from sync.local.emulators.webapi.config import EmulatorConfig
from sync.local.emulators.webapi.odata import ODataError
from sync.local.emulators.webapi.ops import API, Answer, World, create, delete, get_one, patch
from sync.local.emulators.webapi.reads import Prefer, read_collection
from sync.local.emulators.webapi.stats import Stats
from sync.local.emulators.webapi.store import accounts

COOKIE: Final = "ARRAffinity"
_CHANGEABLE: Final = frozenset({"dop_hint", "fault_500_rate", "fault_503_rate", "reset_rate",
                                "slow_rate", "slow_ms", "write_ms_min", "write_ms_max",
                                "max_concurrent", "max_requests", "max_exec_ms"})


def user_of(authorization: str) -> str | None:
    """The caller: a JWT's ``oid`` (or ``sub``), else a stable id from the token itself."""
    if not authorization.startswith("Bearer ") or len(authorization) < 8:
        return None
    token = authorization[7:]
    parts = token.split(".")
    if len(parts) == 3:
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
            subject = claims.get("oid") or claims.get("sub")
            if subject:
                return _as_guid(str(subject))
        except (ValueError, UnicodeDecodeError, AttributeError):
            pass
    return _as_guid(hashlib.sha256(token.encode()).hexdigest())


def _as_guid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_OID, text))


@dataclass
class Emulator:
    """The emulator's state behind the aiohttp routes."""

    config: EmulatorConfig
    world: World
    stats: Stats = field(default_factory=Stats)
    buckets: dict[tuple[str, str], limits.Bucket] = field(
        default_factory=lambda: defaultdict(limits.Bucket))
    next_server: int = 0
    faults: random.Random = field(default_factory=random.Random)

    def server_for(self, request: web.Request) -> str:
        pinned = request.cookies.get(COOKIE)
        names = [f"server-{n}" for n in range(self.config.servers)]
        if pinned in names:
            return str(pinned)
        self.next_server = (self.next_server + 1) % self.config.servers
        return names[self.next_server]

    def headers(self, server: str, bucket: limits.Bucket, now_s: float) -> dict[str, str]:
        requests_left, exec_left_ms = limits.remaining(bucket, self.config, now_s)
        return {"x-ms-dop-hint": str(self.config.dop_hint_header), "OData-Version": "4.0",
                "x-ms-ratelimit-burst-remaining-xrm-requests": str(requests_left),
                "x-ms-ratelimit-time-remaining-xrm-requests": f"{exec_left_ms:.0f}",
                "Set-Cookie": f"{COOKIE}={server}; Path=/; HttpOnly"}


EMULATOR: Final = web.AppKey("emulator", Emulator)


def create_app(config: EmulatorConfig) -> web.Application:
    """The emulator as an aiohttp application (``emulator`` key holds its state)."""
    world = World(config, {"accounts": accounts(config.records, config.seed)},
                  rng=random.Random(config.seed))
    emulator = Emulator(config, world, faults=random.Random(config.seed + 1))
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[EMULATOR] = emulator
    app.router.add_route("*", API + "{path:.*}", _api)
    app.router.add_get("/_emulator/stats", _stats)
    app.router.add_get("/_emulator/records", _records)
    app.router.add_patch("/_emulator/config", _change_config)
    app.router.add_post("/_emulator/reset-stats", _reset_stats)
    return app


def _error(error: ODataError, headers: Mapping[str, str]) -> web.Response:
    return web.json_response(error.body(), status=error.status, headers=dict(headers))


async def _api(request: web.Request) -> web.StreamResponse:
    emulator = request.app[EMULATOR]
    config = emulator.config
    emulator.world.base_url = f"{request.scheme}://{request.host}"
    user = user_of(request.headers.get("Authorization", ""))
    if user is None:
        return _error(ODataError(401, "0x80040220", "Principal user is missing an access "
                                                    "token."), {"OData-Version": "4.0"})
    server = emulator.server_for(request)
    bucket = emulator.buckets[(user, server)]
    loop = asyncio.get_running_loop()
    late = emulator.stats.arrived(loop.time(), config.window_s)
    denial = limits.admit(bucket, config, loop.time())
    if denial is not None:
        emulator.stats.throttled(denial.code, denial.retry_after_s, late)
        headers = {**emulator.headers(server, bucket, loop.time()),
                   "Retry-After": f"{denial.retry_after_s:g}"}
        return _error(ODataError(429, denial.code, denial.message), headers)
    emulator.stats.admitted(user, server, bucket.in_flight, late)
    cost_ms = 0.0
    try:
        response, cost_ms = await _serve(emulator, request, user)
    finally:
        emulator.stats.in_flight_by_server[server] -= 1
        limits.finish(bucket, config, loop.time(), cost_ms)
    if response is not None:
        response.headers.update(emulator.headers(server, bucket, loop.time()))
    return response if response is not None else web.Response(status=500)


async def _serve(emulator: Emulator, request: web.Request,
                 user: str) -> tuple[web.StreamResponse | None, float]:
    config = emulator.config
    draw = emulator.faults.random()
    fault = _fault(config, draw)
    if fault == "reset":
        emulator.stats.faults["reset"] += 1
        if request.transport is not None:
            request.transport.abort()
        return None, config.request_overhead_ms
    if fault in ("500", "503"):
        emulator.stats.faults[fault] += 1
        await asyncio.sleep(config.request_overhead_ms / 1000)
        error = ODataError(int(fault), "0x80040216", "An unexpected error occurred.")
        return _error(error, {}), config.request_overhead_ms
    body = await request.read()
    try:
        answer = _dispatch(emulator, request.method, request.match_info["path"],
                           query=dict(request.query), headers=request.headers, raw=body,
                           user=user)
    except ODataError as error:
        answer = Answer(error.status, error.body())
    cost_ms = answer.cost_ms + config.request_overhead_ms
    if fault == "slow":
        emulator.stats.faults["slow"] += 1
        cost_ms += config.slow_ms
    await asyncio.sleep(cost_ms / 1000)
    return _response(answer), cost_ms


def _fault(config: EmulatorConfig, draw: float) -> str | None:
    for name, rate in (("500", config.fault_500_rate), ("503", config.fault_503_rate),
                       ("reset", config.reset_rate), ("slow", config.slow_rate)):
        if draw < rate:
            return name
        draw -= rate
    return None


def _response(answer: Answer) -> web.Response:
    if isinstance(answer.body, bytes):
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
    if answer.body is None:
        return web.Response(status=answer.status, headers=answer.headers)
    return web.json_response(answer.body, status=answer.status, headers=answer.headers)


def _dispatch(emulator: Emulator, method: str, path: str, *, query: Mapping[str, str],
              headers: Mapping[str, str], raw: bytes, user: str) -> Answer:
    world = emulator.world
    if path == "WhoAmI" and method == "GET":
        return Answer(200, {"UserId": user, "BusinessUnitId": str(uuid.UUID(int=1)),
                            "OrganizationId": str(uuid.UUID(int=2))}, cost_ms=1.0)
    if path == "$batch" and method == "POST":
        return _batch(emulator, headers, raw, user)
    body = _json(raw)
    entity_set, _, message = path.partition("/Microsoft.Dynamics.CRM.")
    if message:
        if message not in MESSAGES or method != "POST":
            raise ODataError(404, "0x80060888", f"Resource not found for the segment "
                                                f"'Microsoft.Dynamics.CRM.{message}'.")
        return bulk(world, user, entity_set, message, body or {})
    return _entity(world, method, path, query=query, headers=headers, body=body, user=user)


def _entity(world: World, method: str, path: str, *, query: Mapping[str, str],
            headers: Mapping[str, str], body: Any, user: str) -> Answer:
    is_record = path.endswith(")")
    if method == "GET":
        return get_one(world, path, query) if is_record else read_collection(
            world, path, query, Prefer.parse(headers.get("Prefer", "")))
    if method == "PATCH":
        return patch(world, user, path, headers, body or {})
    if method == "POST" and not is_record:
        return create(world, user, path, body or {})
    if method == "DELETE":
        return delete(world, path)
    raise ODataError(405, "0x8006088a", f"{method} is not supported on {path}.")


def _json(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise ODataError(400, "0x80060888", "The request body is not valid JSON.") from None


def _batch(emulator: Emulator, headers: Mapping[str, str], raw: bytes, user: str) -> Answer:
    config = emulator.config
    items = parse_batch(headers.get("Content-Type", ""), raw)
    if count_operations(items) > config.max_batch_operations:
        raise ODataError(400, "0x8004800d", "The number of operations in the batch exceeded "
                                            f"the limit. A maximum number of "
                                            f"'{config.max_batch_operations}' operations are "
                                            "allowed in a change set.")
    prefer = Prefer.parse(headers.get("Prefer", ""))

    def execute(request: Request) -> Answer:
        raw = json.dumps(request.body).encode() if request.body is not None else b""
        answer = _dispatch(emulator, request.method, request.path, query=request.query,
                           headers=request.headers, raw=raw, user=user)
        if request.method != "GET":
            answer.cost_ms = config.batch_op_ms
        return answer

    answered = run_batch(items, execute, prefer.continue_on_error, _atomic(emulator))
    content_type, body = format_batch(answered)
    cost_ms = sum(answer.cost_ms for group in answered for _, answer in group)
    return Answer(200, body, {"Content-Type": content_type}, cost_ms=cost_ms)


def _atomic(emulator: Emulator) -> Any:
    def atomic(run: Any) -> list[tuple[Request, Answer]]:
        saved = {name: table.saved() for name, table in emulator.world.tables.items()}
        counters = dict(vars(emulator.world.counters))
        try:
            result: list[tuple[Request, Answer]] = run()
        except ODataError as error:
            for name, state in saved.items():
                emulator.world.tables[name].put_back(state)
            vars(emulator.world.counters).update(counters)
            failed = Request("POST", "", {}, {}, None, "1")
            return [(failed, Answer(error.status, error.body()))]
        return result

    return atomic


async def _stats(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    return web.json_response(emulator.stats.as_json(emulator.config, emulator.world.counters))


async def _records(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    table = emulator.world.tables.get(request.query.get("entityset", "accounts"))
    if table is None:
        return web.json_response({"error": "unknown entity set"}, status=404)
    return web.json_response({"value": [table.rows[i] for i in table.sorted_ids]})


async def _change_config(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    changes = await request.json()
    unknown = sorted(set(changes) - _CHANGEABLE)
    if unknown:
        return web.json_response({"error": f"cannot change {', '.join(unknown)}"}, status=400)
    try:
        emulator.config = emulator.world.config = emulator.config.replace(**changes)
    except (ValueError, TypeError) as error:
        return web.json_response({"error": str(error)}, status=400)
    return web.json_response({k: getattr(emulator.config, k) for k in sorted(_CHANGEABLE)})


async def _reset_stats(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    emulator.stats = Stats()
    return web.json_response({"reset": True})
