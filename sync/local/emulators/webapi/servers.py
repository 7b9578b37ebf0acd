"""The web servers behind the one endpoint: who the caller is, which server answers (the
``ARRAffinity`` cookie pins a client to one), each (user, server)'s limits, and the headers
every answer carries."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from sync.clock import SYSTEM_CLOCK, Clock
from sync.local.emulators.webapi import limits
from sync.local.emulators.webapi.config import EmulatorConfig
from sync.local.emulators.webapi.faults import DATAVERSE, FaultBook
from sync.local.emulators.webapi.ops import World
from sync.local.emulators.webapi.stats import Stats

COOKIE: Final = "ARRAffinity"


def user_of(authorization: str) -> str | None:
    """The caller: a JWT's ``oid`` (or ``sub``), else a stable id from the token itself."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
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


def time_left_header(exec_left_ms: float) -> str:
    """Execution time left as the service writes it: seconds, a thousands separator, two
    decimals (``1,199.46``), rounded down so it never promises more than is left."""
    return f"{math.floor(exec_left_ms / 10) / 100:,.2f}"


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
    rules: FaultBook = field(default_factory=lambda: FaultBook(SYSTEM_CLOCK, random.Random(),
                                                               DATAVERSE))
    clock: Clock = SYSTEM_CLOCK

    def server_for(self, request: web.Request) -> str:
        pinned = request.cookies.get(COOKIE)
        names = [f"server-{n}" for n in range(self.config.servers)]
        if pinned in names:
            return str(pinned)
        self.next_server = (self.next_server + 1) % self.config.servers
        return names[self.next_server]

    def headers(self, server: str, bucket: limits.Bucket, now_s: float) -> dict[str, str]:
        """What every answer carries: the DOP hint, what the window leaves, the affinity."""
        headers = {"x-ms-dop-hint": str(self.config.dop_hint_header), "OData-Version": "4.0",
                   "Set-Cookie": f"{COOKIE}={server}; Path=/; HttpOnly"}
        if self.config.ratelimit_headers:
            requests_left, exec_left_ms = limits.remaining(bucket, self.config, now_s)
            headers["x-ms-ratelimit-burst-remaining-xrm-requests"] = str(requests_left)
            headers["x-ms-ratelimit-time-remaining-xrm-requests"] = time_left_header(
                exec_left_ms)
        return headers

    def anonymous_headers(self) -> dict[str, str]:
        """What an answer to a caller without a token carries (no user, so no window)."""
        return {"x-ms-dop-hint": str(self.config.dop_hint_header), "OData-Version": "4.0"}


EMULATOR: Final = web.AppKey("emulator", Emulator)
