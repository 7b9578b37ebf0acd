"""A client of the Dataverse emulator over real HTTP, restartable with any configuration."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from sync.clock import SYSTEM_CLOCK, Clock
from sync.local.emulators.webapi import EmulatorConfig, RunningEmulator, start_emulator

API = "/api/data/v9.2/"
FAST: dict[str, Any] = {"write_ms_min": 0.0, "write_ms_max": 0.0, "read_page_ms": 0.0,
                        "request_overhead_ms": 0.0, "batch_op_ms": 0.0, "bulk_target_ms": 0.0}
"""Operations that cost no server time: protocol tests that do not measure time."""
GHOST = "00000000-0000-4000-8000-00000000dead"
"""An id no seeded record has."""


def token_for(user: str) -> str:
    """An unsigned JWT whose ``oid`` names the user, as the emulator reads it."""
    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'oid': user})}."


@dataclass
class Answer:
    status: int
    headers: CIMultiDict[str]
    body: Any
    raw: bytes

    @property
    def error(self) -> dict[str, str]:
        """The OData error body's ``error`` object (fails the test when there is none)."""
        assert isinstance(self.body, dict), self.raw
        found: dict[str, str] = self.body["error"]
        return found


class Client:
    """Starts the emulator on demand and talks to it as a Web API client would. Its session
    keeps no cookies: requests spread over the servers unless a test pins them."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.running: RunningEmulator | None = None
        self.token = token_for("test-user")

    async def configure(self, config: EmulatorConfig | None = None, *,
                        clock: Clock = SYSTEM_CLOCK, **fields: Any) -> None:
        """(Re)start the emulator with ``config``, or an EmulatorConfig of ``fields``; its
        fault windows run on ``clock``."""
        await self.close()
        self.running = await start_emulator(config or EmulatorConfig(**fields), clock=clock)

    @property
    def url(self) -> str:
        assert self.running is not None
        return self.running.url

    async def close(self) -> None:
        if self.running is not None:
            await self.running.close()
            self.running = None

    async def call(self, method: str, path: str, *, token: str | None = None,
                   headers: dict[str, str] | None = None, json_body: Any = None,
                   data: bytes | None = None, session: aiohttp.ClientSession | None = None,
                   ) -> Answer:
        """One Web API request; ``path`` is relative to ``/api/data/v9.2/``."""
        bearer = self.token if token is None else token
        all_headers = {**({"Authorization": f"Bearer {bearer}"} if bearer else {}),
                       **(headers or {})}
        async with (session or self.session).request(
                method, f"{self.url}{API}{path}", headers=all_headers, json=json_body,
                data=data) as response:
            raw = await response.read()
            body = json.loads(raw) if raw and response.content_type == "application/json" \
                else None
            return Answer(response.status, CIMultiDict(response.headers), body, raw)

    async def get(self, path: str, **kwargs: Any) -> Answer:
        return await self.call("GET", path, **kwargs)

    async def follow(self, link: str, **kwargs: Any) -> Answer:
        """GET an ``@odata.nextLink`` or ``@odata.deltaLink`` unchanged."""
        assert link.startswith(f"{self.url}{API}"), link
        return await self.get(link.removeprefix(f"{self.url}{API}"), **kwargs)

    async def patch(self, record_id: str, fields: dict[str, Any], **kwargs: Any) -> Answer:
        """PATCH a record that must exist (``If-Match: *``)."""
        return await self.call("PATCH", f"accounts({record_id})", headers={"If-Match": "*"},
                               json_body=fields, **kwargs)

    async def rows(self) -> list[dict[str, Any]]:
        """Every account as the emulator holds it (the admin view, not the Web API)."""
        found: list[dict[str, Any]] = (await self.admin("records"))["value"]
        return found

    async def ids(self, count: int) -> list[str]:
        return [str(row["accountid"]) for row in (await self.rows())[:count]]

    async def row(self, record_id: str) -> dict[str, Any] | None:
        return next((r for r in await self.rows() if r["accountid"] == record_id), None)

    async def admin(self, path: str, method: str = "GET", body: Any = None) -> Any:
        params = {"entityset": "accounts"} if path == "records" else None
        async with self.session.request(method, f"{self.url}/_emulator/{path}", json=body,
                                        params=params) as response:
            assert response.status == 200, await response.text()
            return await response.json()


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        found = Client(session)
        yield found
        await found.close()
