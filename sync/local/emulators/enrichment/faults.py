"""The enrichment API's fault rules (the model is the Web API emulator's ``faults.py``): its
presets, ``domains`` as the keys of per-domain rules, and the answers a rule gives."""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from sync.local.emulators.webapi.faults import Dialect, Preset, Rule

FAULT_HEADER: Final = "x-emulator-fault"
ENRICHMENT: Final = Dialect(
    keys_field="domains", default_field="employees", default_code="internal_error",
    default_message="an unexpected error occurred",
    kinds=("error", "reset", "not_json", "truncated_json", "missing_field"),
    hits=("all", "reads"),
    presets={
        "down": Preset(503, "service_unavailable", "the service is temporarily unavailable"),
        "401": Preset(401, "invalid_api_key", "missing or wrong API key"),
        "500": Preset(500, "internal_error", "an unexpected error occurred"),
        "422-unknown-company": Preset(422, "unknown_company", "no company is known for this "
                                                              "domain"),
        "429": Preset(429, "rate_limited", "rate limit exceeded", 5.0),
    })
"""Every answer of the enrichment API is a read: ``hits`` is ``all`` or ``reads``."""

NOT_JSON_BODY: Final = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


def error_response(rule: Rule) -> web.Response:
    headers = {FAULT_HEADER: rule.name}
    if rule.retry_after_s is not None:
        headers["Retry-After"] = f"{rule.retry_after_s:g}"
    return web.json_response({"error": rule.message, "code": rule.code}, status=rule.status,
                             headers=headers)


def malformed_response(rule: Rule, profile: dict[str, Any]) -> web.Response:
    """A 200 that claims JSON but is not, is cut off, or lacks ``rule.field``."""
    whole = json.dumps(profile).encode()
    if rule.kind == "not_json":
        body = NOT_JSON_BODY
    elif rule.kind == "truncated_json":
        body = whole[: len(whole) // 2]
    else:
        body = json.dumps({k: v for k, v in profile.items() if k != rule.field}).encode()
    return web.Response(status=200, body=body, content_type="application/json",
                        headers={FAULT_HEADER: rule.name})
