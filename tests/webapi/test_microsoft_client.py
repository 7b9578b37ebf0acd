"""Microsoft's Python client (PowerPlatform-Dataverse-Client 1.1.0) runs unchanged against the
emulator served over https: it resolves the table through EntityDefinitions, lists, updates one
record, updates many (UpdateMultiple) and sends a $batch; the emulator's records change.

The one stand-in is the credential: Azure AD cannot run here, so a static token does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import requests
from azure.core.credentials import AccessToken
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.config import DataverseConfig

from sync.local.emulators.webapi import EmulatorConfig, RunningEmulator, start_emulator
from tests.webapi.conftest import FAST, token_for

TABLE = "account"


class StaticCredential:
    """An azure-core TokenCredential that always answers the same token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[str] = []

    def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.extend(scopes)
        return AccessToken(self.token, 4_102_444_800)


@dataclass
class Served:
    running: RunningEmulator
    session: aiohttp.ClientSession

    async def rows(self) -> dict[str, dict[str, Any]]:
        async with self.session.get(f"{self.running.url}/_emulator/records") as response:
            return {row["accountid"]: row for row in (await response.json())["value"]}

    async def stats(self) -> dict[str, Any]:
        async with self.session.get(f"{self.running.url}/_emulator/stats") as response:
            found: dict[str, Any] = await response.json()
            return found


@pytest.fixture
async def served(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    running = await start_emulator(EmulatorConfig(records=6, servers=2, **FAST), https=True)
    assert running.url.startswith("https://127.0.0.1:")
    assert running.ca_path is not None
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(running.ca_path))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    connector = aiohttp.TCPConnector(ssl=False)  # the admin view only; the client verifies
    async with aiohttp.ClientSession(connector=connector) as session:
        yield Served(running, session)
    await running.close()


def run_client(url: str, ids: list[str]) -> dict[str, Any]:
    """What a user of the client writes, run in a thread: its calls are blocking."""
    credential = StaticCredential(token_for("microsoft-client-user"))
    with DataverseClient(url, credential) as client:
        listed = client.records.list(TABLE, select=["name", "accountid"], page_size=4)
        client.records.update(TABLE, ids[0], {"description": "single"})
        client.records.update(TABLE, ids[1:3], {"description": "broadcast"})
        client.records.update(TABLE, ids[3:5], [{"description": "paired 3"},
                                                {"description": "paired 4"}])
        batch = client.batch.new()
        batch.records.update(TABLE, ids[5], {"description": "in a batch"})
        batch.records.update(TABLE, ids[0:2], {"name": "renamed in a batch"})
        result = batch.execute(continue_on_error=True)
    return {"listed": [record["accountid"] for record in listed],
            "batch_failed": len(result.failed), "batch_succeeded": len(result.succeeded),
            "scopes": credential.scopes}


async def test_microsoft_client_lists_updates_and_batches(served: Served) -> None:
    before = await served.rows()
    ids = sorted(before)
    found = await asyncio.wait_for(asyncio.to_thread(run_client, served.running.url, ids), 60)
    assert sorted(found["listed"]) == ids
    assert found["scopes"]
    assert all(s == f"{served.running.url}/.default" for s in found["scopes"])
    assert (found["batch_succeeded"], found["batch_failed"]) == (2, 0)
    after = await served.rows()
    assert [after[i]["description"] for i in ids] == [
        "single", "broadcast", "broadcast", "paired 3", "paired 4", "in a batch"]
    assert [after[i]["name"] for i in ids[:2]] == ["renamed in a batch"] * 2
    assert [after[i]["name"] for i in ids[2:]] == [before[i]["name"] for i in ids[2:]]
    stats = await served.stats()
    assert stats["records"]["updated"] == 8
    assert stats["throttled"] == 0


async def test_the_client_is_refused_without_the_certificate(
        served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """The https is real: a client that does not trust the throwaway CA cannot connect."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("CURL_CA_BUNDLE", "")

    def attempt() -> None:
        once = DataverseConfig(http_retries=1)  # no retries of the refused handshake
        with DataverseClient(served.running.url, StaticCredential("t"), once) as client:
            client.records.list(TABLE, top=1)

    with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
        await asyncio.wait_for(asyncio.to_thread(attempt), 60)
