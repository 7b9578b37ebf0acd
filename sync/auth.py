"""Bearer tokens for Dataverse: azure-identity in Azure, a static token for loopback emulators."""

from __future__ import annotations

import time
from typing import Final, Protocol

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

from sync.settings import Settings

REFRESH_MARGIN_S: Final = 300.0
"""A cached token is renewed this long before it expires."""


class TokenSource(Protocol):
    """Anything that hands out a bearer token for Dataverse."""

    async def token(self) -> str: ...

    async def close(self) -> None: ...


class StaticToken:
    """A fixed token; Settings refuses it unless Dataverse is on loopback."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticToken(<redacted>)"

    async def token(self) -> str:
        return self._token

    async def close(self) -> None:
        return None


class CredentialToken:
    """Tokens from an azure-identity credential, cached until shortly before expiry."""

    __slots__ = ("_cached", "_credential", "_expires_on_s", "_scope")

    def __init__(self, credential: AsyncTokenCredential, dataverse_url: str) -> None:
        self._credential = credential
        self._scope = f"{dataverse_url.rstrip('/')}/.default"
        self._cached = ""
        self._expires_on_s = 0.0

    def __repr__(self) -> str:
        return f"CredentialToken(scope={self._scope!r}, expires_on_s={self._expires_on_s:.0f})"

    async def token(self) -> str:
        if time.time() >= self._expires_on_s - REFRESH_MARGIN_S:
            access = await self._credential.get_token(self._scope)
            self._cached, self._expires_on_s = access.token, float(access.expires_on)
        return self._cached

    async def close(self) -> None:
        await self._credential.close()


def token_source(settings: Settings) -> TokenSource:
    """The token source the settings call for."""
    if settings.dataverse_static_token:
        return StaticToken(settings.dataverse_static_token)
    credential: AsyncTokenCredential
    if settings.dataverse_client_id:
        credential = ManagedIdentityCredential(client_id=settings.dataverse_client_id)
    else:
        credential = DefaultAzureCredential()
    return CredentialToken(credential, settings.dataverse_url)
