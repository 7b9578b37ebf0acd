"""The HTTP face: each Web API request is admitted (or refused 429) by its user's limits on the
server that takes it, answered after the server time it costs (faults on demand), and given
the headers every answer carries."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from sync.clock import SYSTEM_CLOCK, Clock
from sync.local.emulators.webapi import injection, limits
from sync.local.emulators.webapi.admin import add_admin_routes
from sync.local.emulators.webapi.batch import (
    Request,
    count_operations,
    format_batch,
    parse_batch,
    run_batch,
)
from sync.local.emulators.webapi.bulk import MESSAGES, bulk, error_cost_ms
from sync.local.emulators.webapi.config import EmulatorConfig
from sync.local.emulators.webapi.faults import DATAVERSE, FaultBook, Rule
from sync.local.emulators.webapi.metadata import ROOT, entity_definitions
from sync.local.emulators.webapi.odata import ODataError
from sync.local.emulators.webapi.ops import (
    API,
    Answer,
    World,
    atomic,
    create,
    delete,
    get_one,
    patch,
)
from sync.local.emulators.webapi.reads import Prefer, read_collection
from sync.local.emulators.webapi.seeding import enrich_share
from sync.local.emulators.webapi.servers import EMULATOR, Emulator, user_of
from sync.local.emulators.webapi.store import accounts


def create_app(config: EmulatorConfig, clock: Clock = SYSTEM_CLOCK) -> web.Application:
    """The emulator as an aiohttp application (``emulator`` key holds its state); its limits,
    the server time it waits out and the fault rules' windows run on ``clock``."""
    table = accounts(config.records, config.seed)
    if config.enriched_share > 0:
        enrich_share(table, config.enriched_share, config.seed)
    world = World(config, {"accounts": table}, rng=random.Random(config.seed))
    rules = FaultBook(clock, random.Random(config.seed + 2), DATAVERSE)
    for rule in config.fault_rules:
        rules.add(rule)
    emulator = Emulator(config, world, faults=random.Random(config.seed + 1), rules=rules,
                        clock=clock)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[EMULATOR] = emulator
    app.router.add_route("*", API + "{path:.*}", _api)
    add_admin_routes(app)
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
                                                    "token."), emulator.anonymous_headers())
    server = emulator.server_for(request)
    bucket = emulator.buckets[(user, server)]
    raw = await request.read()
    clock = emulator.clock
    late = emulator.stats.arrived(clock.monotonic_s(), config.window_s)
    denial = limits.admit(bucket, config, clock.monotonic_s())
    if denial is not None:
        emulator.stats.throttled(user, denial.code, denial.retry_after_s, late)
        headers = {**emulator.headers(server, bucket, clock.monotonic_s()),
                   "Retry-After": f"{denial.retry_after_s:.3f}".rstrip("0").rstrip(".")}
        return _error(ODataError(429, denial.code, denial.message), headers)
    emulator.stats.admitted(user, server, late, hint=config.dop_hint_header,
                            now_s=clock.monotonic_s())
    try:
        updated = emulator.world.counters.updated
        served = _serve(emulator, request, raw, user)
        emulator.stats.wrote(user, emulator.world.counters.updated - updated,
                             clock.monotonic_s(), config.window_s)
        limits.charge(bucket, clock.monotonic_s(), served.cost_ms, served.injected_ms)
        emulator.stats.executed_ms += served.cost_ms
        await clock.sleep(served.cost_ms / 1000)
        response = served.response if served.drop is None else \
            _refuse(emulator, served.drop, request)
    finally:
        emulator.stats.finished(user, server)
        limits.finish(bucket, emulator.config, clock.monotonic_s())
    if response is not None:
        response.headers.update(emulator.headers(server, bucket, clock.monotonic_s()))
    return response if response is not None else web.Response(status=500)


@dataclass(frozen=True, slots=True)
class Served:
    """An answer (None: the connection was dropped), the server time it costs, and a rule that
    drops the connection once that time is spent (commit then drop)."""

    response: web.StreamResponse | None
    cost_ms: float
    drop: Rule | None = None
    injected_ms: float = 0.0
    """The part of ``cost_ms`` an injected slowness added."""


def _serve(emulator: Emulator, request: web.Request, body: bytes, user: str) -> Served:
    """The answer and the server time it costs (the caller charges it and waits it out)."""
    config = emulator.config
    draw = emulator.faults.random()
    fault = _fault(config, draw)
    if fault == "reset":
        emulator.stats.faults["reset"] += 1
        if request.transport is not None:
            request.transport.abort()
        return Served(None, config.request_overhead_ms)
    if fault in ("500", "503"):
        emulator.stats.faults[fault] += 1
        error = ODataError(int(fault), "0x80040216", "An unexpected error occurred.")
        return Served(_error(error, {}), config.request_overhead_ms)
    rule = emulator.rules.pick(injection.target_of(request.method, request.match_info["path"]))
    if rule is not None and rule.kind in ("error", "reset"):
        return Served(_refuse(emulator, rule, request), config.request_overhead_ms)
    try:
        answer = _dispatch(emulator, request.method, request.match_info["path"],
                           query=dict(request.query), headers=request.headers, raw=body,
                           user=user)
    except ODataError as error:
        answer = Answer(error.status, error.body(), cost_ms=error_cost_ms(error))
    slow_ms = config.slow_ms if fault == "slow" else 0.0
    if fault == "slow":
        emulator.stats.faults["slow"] += 1
        answer.headers[injection.FAULT_HEADER] = "slow"
    cost_ms = answer.cost_ms + config.request_overhead_ms + slow_ms
    if rule is not None and rule.kind in injection.MALFORMED:
        answer = _malformed(emulator, rule, answer)
    drop = rule if rule is not None and rule.kind == "commit_then_drop" \
        and answer.status < 400 else None
    return Served(_response(answer), cost_ms, drop=drop, injected_ms=slow_ms)


def _refuse(emulator: Emulator, rule: Rule, request: web.Request) -> web.Response | None:
    """A rule's answer instead of the truth: its error, or a dropped connection (None)."""
    emulator.stats.faults[rule.name] += 1
    if rule.kind == "error":
        return injection.error_response(rule)
    if request.transport is not None:
        request.transport.abort()
    return None


def _malformed(emulator: Emulator, rule: Rule, answer: Answer) -> Answer:
    broken = injection.malformed(rule, answer)
    if broken is None:
        return answer
    emulator.stats.faults[rule.name] += 1
    return broken


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
    if path in ("WhoAmI", "WhoAmI()") and method == "GET":
        return Answer(200, {"UserId": user, "BusinessUnitId": str(uuid.UUID(int=1)),
                            "OrganizationId": str(uuid.UUID(int=2))}, cost_ms=1.0)
    if path == "$batch" and method == "POST":
        return _batch(emulator, headers, raw, user)
    if path.startswith(ROOT) and method == "GET":
        return entity_definitions(world, path, query)
    body = _json(raw)
    injection.check_records(emulator.rules, emulator.stats.faults, method, path, body=body,
                            key_of={name: t.key for name, t in world.tables.items()})
    if method in ("PATCH", "POST", "DELETE"):
        _write_options(emulator, headers, user)
    entity_set, _, message = path.partition("/Microsoft.Dynamics.CRM.")
    if message:
        if message not in MESSAGES or method != "POST":
            raise ODataError(404, "0x80060888", f"Resource not found for the segment "
                                                f"'Microsoft.Dynamics.CRM.{message}'.")
        return bulk(world, user, entity_set, message, body)
    return _entity(world, method, path, query=query, headers=headers, body=body, user=user)


def _entity(world: World, method: str, path: str, *, query: Mapping[str, str],
            headers: Mapping[str, str], body: dict[str, Any], user: str) -> Answer:
    is_record = path.endswith(")")
    if method == "GET":
        return get_one(world, path, query) if is_record else read_collection(
            world, path, query, Prefer.parse(headers.get("Prefer", "")))
    if method == "PATCH":
        return patch(world, user, path, headers, body)
    if method == "POST" and not is_record:
        return create(world, user, path, body)
    if method == "DELETE":
        return delete(world, path, headers)
    raise ODataError(405, "0x8006088a", f"{method} is not supported on {path}.")


BYPASS_HEADER = "MSCRM.BypassBusinessLogicExecution"
SUPPRESS_HEADER = "MSCRM.SuppressDuplicateDetection"
BYPASS_VALUES = frozenset({"CustomSync", "CustomAsync"})


def _write_options(emulator: Emulator, headers: Mapping[str, str], user: str) -> None:
    """The bulk-job headers of a write (a $batch's parts each carry their own): a bypass
    needs prvBypassCustomBusinessLogic, else 403 as the service answers it."""
    bypass = headers.get(BYPASS_HEADER)
    if bypass is not None:
        values = {value.strip() for value in bypass.split(",")}
        if not values or not values <= BYPASS_VALUES:
            raise ODataError(400, "0x80040203", f"Invalid value '{bypass}' for "
                                                f"{BYPASS_HEADER}: use CustomSync, CustomAsync "
                                                "or CustomSync,CustomAsync.")
        if not emulator.config.bypass_privilege:
            raise ODataError(403, "0x80040220", f"Principal user (Id={user}, type=8, "
                                                "roleCount=1), is missing "
                                                "prvBypassCustomBusinessLogic privilege "
                                                "(Id=0ea552b0-a491-4470-9a1b-82068deccf66) on "
                                                "OTC=1 for entity 'account'.")
        emulator.stats.write_options[f"{BYPASS_HEADER}: {bypass}"] += 1
    suppress = headers.get(SUPPRESS_HEADER)
    if suppress is not None:
        emulator.stats.write_options[f"{SUPPRESS_HEADER}: {suppress}"] += 1


def _json(raw: bytes) -> dict[str, Any]:
    """The request body: a JSON object, or none (an empty object)."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ODataError(400, "0x80060888", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ODataError(400, "0x80060888", "The request body must be a JSON object.")
    return body


def _batch(emulator: Emulator, headers: Mapping[str, str], raw: bytes, user: str) -> Answer:
    """One $batch: counted once against the request facet, its operations' server time
    added up; without continue-on-error it answers with the status of its first failure."""
    config = emulator.config
    items = parse_batch(headers.get("Content-Type", ""), raw)
    limit = config.operations_limit(config.batch_op_ms)
    if count_operations(items) > limit:
        raise ODataError(400, "0x8004800d", "The number of operations in the batch exceeded "
                                            f"the limit. A maximum number of '{limit}' "
                                            "operations are allowed in a change set.")
    prefer = Prefer.parse(headers.get("Prefer", ""))

    def execute(request: Request) -> Answer:
        if request.path == "$batch":
            raise ODataError(400, "0x80060888", "A $batch cannot contain another $batch.")
        raw = json.dumps(request.body).encode() if request.body is not None else b""
        answer = _dispatch(emulator, request.method, request.path, query=request.query,
                           headers=request.headers, raw=raw, user=user)
        if request.method != "GET":
            answer.cost_ms = config.batch_op_ms
        return answer

    answered = run_batch(items, execute, prefer.continue_on_error,
                         lambda: atomic(emulator.world))
    content_type, body = format_batch(answered)
    cost_ms = sum(answer.cost_ms for item in answered for _, answer in item.answers)
    failed = answered[-1].failed if answered and not prefer.continue_on_error else None
    return Answer(200 if failed is None else failed.status, body,
                  {"Content-Type": content_type}, cost_ms=cost_ms)
