"""Bearer tokens: a static token only for loopback, azure-identity tokens cached until shortly
before they expire. Azure AD cannot run here, so the credential is the one stand-in."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
from azure.core.credentials import AccessToken

from sync.clients.auth import REFRESH_MARGIN_S, CredentialToken, StaticToken, token_source
from sync.clients.dataverse import DataverseClient
from sync.config.settings import Settings
from sync.failures.errors import ServiceFault


class CountingCredential:
    """An AsyncTokenCredential that issues numbered tokens valid for ``lifetime_s``."""

    def __init__(self, lifetime_s: float) -> None:
        self.lifetime_s = lifetime_s
        self.scopes: list[str] = []
        self.closed = False

    async def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        self.scopes.append(scopes[0])
        return AccessToken(f"token-{len(self.scopes)}", int(time.time() + self.lifetime_s))

    async def close(self) -> None:
        self.closed = True


async def test_token_is_reused_until_near_expiry() -> None:
    credential = CountingCredential(lifetime_s=3600)
    tokens = CredentialToken(credential, "https://contoso.crm.dynamics.com/")  # type: ignore[arg-type]
    assert [await tokens.token() for _ in range(5)] == ["token-1"] * 5
    assert credential.scopes == ["https://contoso.crm.dynamics.com/.default"]


async def test_a_token_close_to_expiry_is_renewed() -> None:
    credential = CountingCredential(lifetime_s=REFRESH_MARGIN_S - 1)
    tokens = CredentialToken(credential, "https://contoso.crm.dynamics.com")  # type: ignore[arg-type]
    assert await tokens.token() == "token-1"
    assert await tokens.token() == "token-2"
    await tokens.close()
    assert credential.closed


async def test_token_sources_never_show_the_token() -> None:
    assert "secret" not in repr(StaticToken("secret"))
    credential = CountingCredential(lifetime_s=3600)
    tokens = CredentialToken(credential, "https://x.crm.dynamics.com")  # type: ignore[arg-type]
    await tokens.token()
    assert "token-1" not in repr(tokens)


async def test_settings_choose_the_source() -> None:
    env = {"AzureWebJobsStorage": "x", "DATAVERSE_URL": "http://127.0.0.1:9",
           "ENRICHMENT_URL": "http://127.0.0.1:8", "ENRICHMENT_API_KEY": "k",
           "DATAVERSE_STATIC_TOKEN": "t"}
    assert isinstance(token_source(Settings.from_env(env)), StaticToken)
    cloud = {**env, "DATAVERSE_URL": "https://x.crm.dynamics.com", "DATAVERSE_STATIC_TOKEN": "",
             "DATAVERSE_CLIENT_ID": "00000000-0000-0000-0000-000000000001"}
    source = token_source(Settings.from_env(cloud))
    assert isinstance(source, CredentialToken)
    await source.close()


async def test_a_refused_token_is_renewed_once_asked() -> None:
    credential = CountingCredential(lifetime_s=3600)
    tokens = CredentialToken(credential, "https://contoso.crm.dynamics.com")  # type: ignore[arg-type]
    assert await tokens.token() == "token-1"
    await tokens.renew()
    assert await tokens.token() == "token-2"


class FailingCredential(CountingCredential):
    """An identity that cannot get a token (no managed identity, a wrong client id)."""

    async def get_token(self, *scopes: str, **_: Any) -> AccessToken:
        raise RuntimeError("ManagedIdentityCredential authentication unavailable: secret-ish")


async def test_no_token_is_a_service_fault_that_names_the_identity_not_the_detail() -> None:
    tokens = CredentialToken(FailingCredential(3600), "https://x.crm.dynamics.com")  # type: ignore[arg-type]
    with pytest.raises(ServiceFault, match="check the managed identity") as caught:
        await tokens.token()
    assert "secret-ish" not in str(caught.value)


async def test_dataverse_renews_the_token_once_on_a_401_then_it_is_the_services_fault(
        dataverse_url: str) -> None:
    """Over real HTTP: the emulator refuses every token (its 401 fault rule)."""
    credential = CountingCredential(lifetime_s=3600)
    tokens = CredentialToken(credential, dataverse_url)  # type: ignore[arg-type]
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{dataverse_url}/_emulator/faults",
                                json={"preset": "401"}) as added:
            assert added.status == 200
        client = DataverseClient(session, dataverse_url, tokens, 10.0)
        with pytest.raises(ServiceFault, match="401 Unauthorized on GET WhoAmI"):
            await client.who_am_i()
    assert len(credential.scopes) == 2  # the first token, and one renewal after the 401


class SlowCredential(CountingCredential):
    """A managed-identity endpoint that takes a while to answer (a few turns of the loop)."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        for _ in range(3):
            await asyncio.sleep(0)
        return await super().get_token(*scopes, **kwargs)


async def test_requests_in_flight_at_a_cold_start_ask_for_one_token() -> None:
    credential = SlowCredential(lifetime_s=3600)
    tokens = CredentialToken(credential, "https://x.crm.dynamics.com")  # type: ignore[arg-type]
    assert set(await asyncio.gather(*(tokens.token() for _ in range(20)))) == {"token-1"}
    assert len(credential.scopes) == 1


async def test_requests_in_flight_at_an_expiry_ask_for_one_token() -> None:
    credential = SlowCredential(lifetime_s=REFRESH_MARGIN_S - 1)  # stale as soon as fetched
    tokens = CredentialToken(credential, "https://x.crm.dynamics.com")  # type: ignore[arg-type]
    await tokens.token()
    credential.lifetime_s = 3600
    assert set(await asyncio.gather(*(tokens.token() for _ in range(20)))) == {"token-2"}
    assert len(credential.scopes) == 2


async def test_a_burst_of_401s_renews_the_token_once() -> None:
    credential = SlowCredential(lifetime_s=3600)
    tokens = CredentialToken(credential, "https://x.crm.dynamics.com")  # type: ignore[arg-type]
    await tokens.token()

    async def refused_then_asks() -> str:
        await tokens.renew()
        return await tokens.token()

    assert set(await asyncio.gather(*(refused_then_asks() for _ in range(10)))) == {"token-2"}
    assert len(credential.scopes) == 2
