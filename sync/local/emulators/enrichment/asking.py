"""Asking the emulated API: one company (``ask``) or several in a bulk call (``ask_bulk``).

In order: request-wide fault rules, the credential (401), the rate limit (429 with the shape's
headers), the input (400), the credits (402 once ``out_of_credits_after`` companies were
asked), the latency, per-domain fault rules, no match, "later" (202 for the shape's first
asks of a domain), malformed answers, then the company in the shape's nesting.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from sync.config.enrichment_templates import domain_of
from sync.failures.errors import RecordFault
from sync.local.emulators.enrichment.faults import error_response, malformed_response
from sync.local.emulators.enrichment.identity import authorized
from sync.local.emulators.enrichment.shapes import answer_for, is_no_match
from sync.local.emulators.enrichment.state import ENRICHMENT_STATE, Enrichment
from sync.local.emulators.webapi.faults import MALFORMED, Rule, Target


def _domain(value: Any, field: str) -> str:
    """The domain a call asks about ("" when it names none): a website's, or as given."""
    if not isinstance(value, str):
        return ""
    if field != "website":
        return value.strip().lower()
    try:
        return domain_of(value).lower()
    except RecordFault:
        return ""


async def _inputs(request: web.Request, state: Enrichment) -> tuple[str, bool]:
    """The domain asked, and whether every input the shape needs is there."""
    shape = state.shape
    if shape.input_in == "query":
        return _domain(request.query.get(shape.input_field), shape.input_field), True
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return "", False
    if not isinstance(body, dict):
        return "", False
    extra_ok = shape.extra_field is None or bool(body.get(shape.extra_field))
    return _domain(body.get(shape.input_field), shape.input_field), extra_ok


async def ask(request: web.Request) -> web.StreamResponse:
    state = request.app[ENRICHMENT_STATE]
    state.counts["calls"] += 1
    domain, complete = await _inputs(request, state)
    rule = state.rules.pick(Target("reads", frozenset({domain})))
    if rule is not None and rule.kind in ("error", "reset"):
        return _refuse(request, state.injected(rule))
    refused = _admit(request, state)
    if refused is not None:
        return refused
    if not complete or not domain or "." not in domain:
        return _counted(state, 400, {"error": "the input must name a company's domain"})
    return await _answer(state, domain, rule)


def _admit(request: web.Request, state: Enrichment) -> web.Response | None:
    """401 without the credential, 429 over the rate limit; None when admitted."""
    if not authorized(request, state):
        return _counted(state, 401, {"error": "missing or wrong credential"})
    now_s = asyncio.get_running_loop().time()
    wait_s = state.limit(now_s)
    if wait_s > 0:
        return _counted(state, 429, {"error": "rate limit exceeded"},
                        state.rate_headers(now_s, wait_s))
    return None


def _counted(state: Enrichment, status: int, body: Any,
             headers: dict[str, str] | None = None) -> web.Response:
    state.counts[str(status)] += 1
    return web.json_response(body, status=status, headers=headers)


def _refuse(request: web.Request, rule: Rule) -> web.Response:
    if rule.kind == "error":
        return error_response(rule)
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)  # never sent: the connection is gone


async def _answer(state: Enrichment, domain: str, rule: Rule | None) -> web.Response:
    shape = state.shape
    if state.out_of_credits():
        return _counted(state, 402, {"error": "you are out of credits"})
    await asyncio.sleep(state.config.latency_ms / 1000)
    per_domain = state.rules.pick(Target("reads", frozenset({domain})), keyed=True)
    if per_domain is not None:
        return error_response(state.injected(per_domain))
    if is_no_match(domain, shape.no_match_share):
        return _counted(state, shape.no_match_status,
                        {"error": f"no company known for {domain}"})
    state.asks[domain] += 1
    if state.asks[domain] <= shape.later_asks:
        return _counted(state, 202, {"status": "queued", "domain": domain})
    if rule is not None and rule.kind in MALFORMED:
        return malformed_response(state.injected(rule), answer_for(shape, domain))
    now_s = asyncio.get_running_loop().time()
    return _counted(state, 200, answer_for(shape, domain), state.rate_headers(now_s))


async def ask_bulk(request: web.Request) -> web.StreamResponse:
    """``{"requests": [{"params": {"website": ...}, "metadata": {...}}]}``: a list of answers,
    each with its status and the request's metadata."""
    state = request.app[ENRICHMENT_STATE]
    state.counts["calls"] += 1
    refused = _admit(request, state)
    if refused is not None:
        return refused
    try:
        asked = (await request.json())["requests"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        asked = None
    if not isinstance(asked, list) or not 0 < len(asked) <= state.shape.bulk_max:
        return _counted(state, 400, {"error": f"requests must hold 1-{state.shape.bulk_max} "
                                              "items"})
    if state.out_of_credits(len(asked)):
        return _counted(state, 402, {"error": "you are out of credits"})
    await asyncio.sleep(state.config.latency_ms / 1000)
    answers = [_bulk_item(state, item) for item in asked]
    now_s = asyncio.get_running_loop().time()
    return _counted(state, 200, answers, state.rate_headers(now_s))


def _bulk_item(state: Enrichment, item: Any) -> dict[str, Any]:
    shape = state.shape
    params = item.get("params") if isinstance(item, dict) else None
    metadata = item.get("metadata") if isinstance(item, dict) else None
    domain = _domain((params or {}).get(shape.input_field), shape.input_field)
    state.counts["bulk-inputs"] += 1
    if not domain or "." not in domain:
        return {"status": 400, "error": {"message": "no website"}, "metadata": metadata}
    if is_no_match(domain, shape.no_match_share):
        state.counts[f"bulk-{shape.no_match_status}"] += 1
        return {"status": shape.no_match_status, "error": {"message": "no match"},
                "metadata": metadata}
    state.counts["bulk-200"] += 1
    return {**answer_for(shape, domain), "status": 200, "metadata": metadata}


def bulk_body(websites: list[str]) -> bytes:
    """A bulk call's body for ``websites`` (tests, probes)."""
    return json.dumps({"requests": [{"params": {"website": w}, "metadata": {"key": w}}
                                    for w in websites]}).encode()
