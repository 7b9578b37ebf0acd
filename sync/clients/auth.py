"""Bearer tokens for Dataverse: azure-identity in Azure, a static token for loopback emulators."""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

from sync.clock import SYSTEM_CLOCK, Clock
from sync.config.lanes import DEFAULT, Environment, Identity, identity_token
from sync.config.settings import Settings
from sync.failures.errors import ServiceFault

REFRESH_MARGIN_S: Final = 300.0
"""A cached token is renewed this long before it expires."""


class TokenSource(Protocol):
    """Anything that hands out a bearer token for Dataverse."""

    async def token(self) -> str: ...

    async def renew(self) -> None:
        """Forget the cached token: the service refused it (401)."""

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

    async def renew(self) -> None:
        return None

    async def close(self) -> None:
        return None


class CredentialToken:
    """Tokens from an azure-identity credential, cached until shortly before expiry.

    One request for a new token at a time (as azure-core's bearer token policy refreshes under
    a lock): at a cold start or an expiry, the requests in flight wait for the one that asks
    the identity endpoint instead of each asking it, and a burst of 401s renews once."""

    __slots__ = ("_cached", "_clock", "_credential", "_expires_on_s", "_generation", "_lock",
                 "_refused", "_scope", "_service")

    def __init__(self, credential: AsyncTokenCredential, dataverse_url: str, *,
                 clock: Clock = SYSTEM_CLOCK, scope: str | None = None,
                 service: str = "Dataverse") -> None:
        """Tokens for ``dataverse_url``'s ``.default`` scope, or for ``scope`` when given (an
        enrichment API's); ``service`` names whom they are for in errors."""
        self._credential = credential
        self._clock = clock
        self._scope = scope or f"{dataverse_url.rstrip('/')}/.default"
        self._service = service
        self._cached = ""
        self._expires_on_s = 0.0
        self._lock = asyncio.Lock()
        self._generation = 0
        """How many tokens were fetched: the cached one's number."""
        self._refused = -1
        """The number of the last token the service refused."""

    def __repr__(self) -> str:
        return f"CredentialToken(scope={self._scope!r}, expires_on_s={self._expires_on_s:.0f})"

    def _stale(self) -> bool:
        return (self._refused == self._generation
                or self._clock.wall_s() >= self._expires_on_s - REFRESH_MARGIN_S)

    async def token(self) -> str:
        if not self._stale():
            return self._cached
        async with self._lock:
            if self._stale():  # nobody renewed it while this one waited for the lock
                await self._fetch()
        return self._cached

    async def _fetch(self) -> None:
        try:
            access = await self._credential.get_token(self._scope)
        except Exception as error:
            raise ServiceFault("token", f"no token for {self._service}: "
                                        f"{type(error).__name__} (check the managed "
                                        "identity)") from None
        self._cached, self._expires_on_s = access.token, float(access.expires_on)
        self._generation += 1

    async def renew(self) -> None:
        """The cached token was refused: the next ``token`` fetches another (once, however many
        requests were refused with it)."""
        self._refused = self._generation

    async def close(self) -> None:
        await self._credential.close()


def token_source(settings: Settings) -> TokenSource:
    """The token source of the single-environment settings (DATAVERSE_URL's identity)."""
    environment = settings.lanes_environments[0]
    return lane_token_source(settings, environment, environment.identities[0])


def lane_token_source(settings: Settings, environment: Environment,
                      identity: Identity | None) -> TokenSource:
    """The tokens of one identity for one environment: its managed identity (by client id),
    DefaultAzureCredential when it has none, or on the local stack the static token (the
    ``default`` identity's as set, any other's suffixed with its name, so the emulator sees
    each identity as its own user)."""
    name = identity.name if identity is not None else DEFAULT
    static = settings.dataverse_static_token
    return url_token_source(environment.url, identity_token(static, name) if static else None,
                        identity.client_id if identity is not None else None)


def url_token_source(url: str, static_token: str | None, client_id: str | None) -> TokenSource:
    """Tokens for the Dataverse at ``url``: the static token when given (the local stack),
    else the managed identity ``client_id``, else DefaultAzureCredential."""
    if static_token:
        return StaticToken(static_token)
    credential: AsyncTokenCredential = (
        ManagedIdentityCredential(client_id=client_id) if client_id
        else DefaultAzureCredential())
    return CredentialToken(credential, url)
