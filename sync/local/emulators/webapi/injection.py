"""Applying fault rules to Web API requests: which requests a rule sees, the answers it gives
instead of the truth, and the record-level faults raised inside an operation."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from sync.local.emulators.webapi.faults import MALFORMED, FaultBook, Rule, Target
from sync.local.emulators.webapi.odata import ODataError, parse_segment
from sync.local.emulators.webapi.ops import Answer

NOT_JSON_BODY = (b"<!DOCTYPE html><html><head><title>Service Unavailable</title></head>"
                 b"<body><h1>The service is temporarily unavailable.</h1></body></html>")
"""What a 200 that is not JSON carries: a gateway's HTML page."""
WWW_AUTHENTICATE = ("Bearer authorization_uri=https://login.microsoftonline.com/"
                    "00000000-0000-0000-0000-000000000000/oauth2/authorize")
"""What the service's 401 carries (the tenant is made up)."""
FAULT_HEADER = "x-emulator-fault"
"""Names the fault an answer carries (slow, or a rule's name), so tests count them."""
__all__ = ["FAULT_HEADER", "MALFORMED", "check_records", "error_response", "malformed", "target_of"]


def target_of(method: str, path: str) -> Target:
    """``writes``: every request but a GET ($batch and bulk messages included); ``reads``: a
    GET of a collection (a page read); ``other``: the rest (one record, WhoAmI)."""
    if method != "GET":
        return Target("writes")
    is_collection = not path.endswith(")") and "/" not in path and not path.startswith(
        ("WhoAmI", "$"))
    return Target("reads" if is_collection else "other")


def error_response(rule: Rule) -> web.Response:
    """The OData error a rule answers, with ``Retry-After`` when it gives one."""
    headers = {FAULT_HEADER: rule.name}
    if rule.retry_after_s is not None:
        headers["Retry-After"] = f"{rule.retry_after_s:g}"
    if rule.status == 401:
        headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return web.json_response(ODataError(rule.status, rule.code, rule.message).body(),
                             status=rule.status, headers=headers)


def malformed(rule: Rule, answer: Answer) -> Answer | None:
    """A 200 JSON answer made malformed as the rule says; None when the answer is not a 200
    with a JSON object (nothing to break)."""
    if answer.status != 200 or not isinstance(answer.body, dict):
        return None
    headers = {**answer.headers, "Content-Type": "application/json; odata.metadata=minimal",
               FAULT_HEADER: rule.name}
    if rule.kind == "not_json":
        return Answer(200, NOT_JSON_BODY, headers, answer.cost_ms)
    if rule.kind == "truncated_json":
        whole = json.dumps(answer.body).encode()
        return Answer(200, whole[: len(whole) // 2], headers, answer.cost_ms)
    if rule.field not in answer.body:
        return None
    body = {k: v for k, v in answer.body.items() if k != rule.field}
    return Answer(200, json.dumps(body).encode(), headers, answer.cost_ms)


def touched_ids(method: str, path: str, body: Mapping[str, Any],
                key_of: Mapping[str, str]) -> frozenset[str]:
    """The record ids a write names: in its URL, its body's primary key (``key_of`` maps an
    entity set to its key column), or its bulk message's targets."""
    entity_set, _, message = path.partition("/Microsoft.Dynamics.CRM.")
    key_name = key_of.get(entity_set.split("(", 1)[0], "")
    if message:
        targets = body.get("Targets")
        records = targets if isinstance(targets, list) else []
        return frozenset(_id_in(t, key_name) for t in records if isinstance(t, dict)) - {""}
    try:
        _, key = parse_segment(entity_set)
    except ODataError:
        return frozenset()
    if key is not None:
        return frozenset({key[1].lower()})
    return frozenset({_id_in(body, key_name)}) - {""} if method == "POST" else frozenset()


def _id_in(record: Mapping[str, Any], key_name: str) -> str:
    value = record.get(key_name)
    return value.lower() if isinstance(value, str) else ""


def check_records(book: FaultBook, faults: Counter[str], method: str, path: str, *,
                  body: Mapping[str, Any], key_of: Mapping[str, str]) -> None:
    """Raise the record-level fault of a write that touches a faulty record, counted in
    ``faults`` (the stats' counter)."""
    if method == "GET" or not book.entries:
        return
    rule = book.pick(Target("writes", touched_ids(method, path, body, key_of)), keyed=True)
    if rule is not None:
        faults[rule.name] += 1
        raise ODataError(rule.status, rule.code, rule.message)
