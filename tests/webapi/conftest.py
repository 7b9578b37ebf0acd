"""A client of the Dataverse emulator over real HTTP, restartable with any configuration."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from sync.local.emulators.webapi import EmulatorConfig, RunningEmulator, start_emulator

API = "/api/data/v9.2/"


def token_for(user: str) -> str:
    """An unsigned JWT whose ``oid`` names the user, as the emulator reads it."""
    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part({'oid': user})}."


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes


class Client:
    """Starts the emulator on demand and talks to it as a Web API client would."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.running: RunningEmulator | None = None
        self.token = token_for("test-user")

    async def configure(self, **config: Any) -> None:
        await self.close()
        self.running = await start_emulator(EmulatorConfig(**config))

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
        bearer = self.token if token is None else token
        all_headers = {**({"Authorization": f"Bearer {bearer}"} if bearer else {}),
                       **(headers or {})}
        async with (session or self.session).request(
                method, f"{self.url}{API}{path}", headers=all_headers, json=json_body,
                data=data) as response:
            raw = await response.read()
            body = json.loads(raw) if raw and response.content_type == "application/json" \
                else None
            return Answer(response.status, dict(response.headers), body, raw)

    async def get(self, path: str, **kwargs: Any) -> Answer:
        return await self.call("GET", path, **kwargs)

    async def first_id(self) -> str:
        return str((await self.admin("records"))["value"][0]["accountid"])

    async def patch_first(self, **kwargs: Any) -> Answer:
        record_id = await self.first_id()
        return await self.call("PATCH", f"accounts({record_id})", headers={"If-Match": "*"},
                               json_body={"description": "x"}, **kwargs)

    async def admin(self, path: str, method: str = "GET", body: Any = None) -> Any:
        params = {"entityset": "accounts"} if path == "records" else None
        async with self.session.request(method, f"{self.url}/_emulator/{path}", json=body,
                                        params=params) as response:
            return await response.json()


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        found = Client(session)
        yield found
        await found.close()
