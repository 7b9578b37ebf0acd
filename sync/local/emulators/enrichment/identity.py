"""Who may call the emulated API, and the managed identity endpoint the local stack uses.

``GET /msi/token?resource=...&api-version=2019-08-01`` with ``X-IDENTITY-HEADER`` answers as
the App Service managed identity endpoint does (``access_token``, ``expires_on``,
``resource``, ``token_type``): with ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` set, as
Azure sets them on a function app, azure-identity's ``ManagedIdentityCredential`` takes its
tokens here. The in-house shape accepts only a token issued for its audience. Azure AD itself
cannot run here; this stands in for it over real HTTP.
"""

from __future__ import annotations

import secrets
import time
from typing import Final

from aiohttp import web

from sync.local.emulators.enrichment.shapes import INHOUSE_AUDIENCE
from sync.local.emulators.enrichment.state import ENRICHMENT_STATE, Enrichment

TOKEN_LIFETIME_S: Final = 3600


async def issue_token(request: web.Request) -> web.Response:
    state = request.app[ENRICHMENT_STATE]
    if request.headers.get("X-IDENTITY-HEADER") != state.config.identity_header:
        return web.json_response({"error": "missing or wrong X-IDENTITY-HEADER"}, status=401)
    resource = request.query.get("resource", "").removesuffix("/.default")
    if not resource:
        return web.json_response({"error": "resource is required"}, status=400)
    token = f"emulated-{secrets.token_hex(16)}"
    state.tokens[token] = resource
    state.counts["tokens"] += 1
    return web.json_response({"access_token": token, "resource": resource,
                              "expires_on": str(int(time.time()) + TOKEN_LIFETIME_S),
                              "token_type": "Bearer"})


def authorized(request: web.Request, state: Enrichment) -> bool:
    """Whether the call carries the shape's credential."""
    shape, key = state.shape, state.config.api_key
    if shape.auth == "header":
        return request.headers.get(shape.auth_name) == key
    if shape.auth == "query":
        return request.query.get(shape.auth_name) == key
    bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
    if shape.auth == "bearer":
        return bearer == key
    return state.tokens.get(bearer) == INHOUSE_AUDIENCE
