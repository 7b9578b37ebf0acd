"""A client of the external enrichment API: a company's profile from its website's domain."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from sync.errors import PermanentError
from sync.http import TRANSIENT_EXCEPTIONS, raise_for_answer, transient_from

SERVICE: Final = "enrichment"


def domain_of(website: str) -> str:
    """The bare domain of a website value: ``https://www.Contoso.com/x`` -> ``contoso.com``."""
    text = website.strip()
    host = urlsplit(text if "//" in text else f"//{text}").hostname or ""
    host = host.removeprefix("www.")
    if "." not in host:
        raise PermanentError(SERVICE, 0, "InvalidInput", f"no domain in website {website[:100]!r}")
    return host


def columns_from(profile: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    """The Dataverse columns to write for a profile; ``mapping`` is column -> profile field."""
    return {column: profile.get(source) for column, source in mapping.items()}


class EnrichmentClient:
    """Calls the enrichment API; one per process, sharing the process's HTTP session."""

    __slots__ = ("_api_key", "_base_url", "_session", "_timeout")

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str,
                 timeout_s: float) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    def __repr__(self) -> str:
        return f"EnrichmentClient(base_url={self._base_url!r})"

    async def columns_for(self, website: str, mapping: Mapping[str, str]) -> dict[str, Any]:
        """The Dataverse columns enriched from ``website``."""
        return columns_from(await self.profile(domain_of(website)), mapping)

    async def profile(self, domain: str) -> dict[str, Any]:
        """The company profile for ``domain``; raises Throttled, TransientError, PermanentError."""
        url = f"{self._base_url}/v1/companies"
        try:
            async with self._session.get(url, params={"domain": domain},
                                         headers={"x-api-key": self._api_key},
                                         timeout=self._timeout) as response:
                body = await response.read()
                raise_for_answer(SERVICE, response.status, response.headers, body)
        except TRANSIENT_EXCEPTIONS as error:
            raise transient_from(SERVICE, error) from None
        data = json.loads(body)
        if not isinstance(data, dict):
            raise PermanentError(SERVICE, 200, "BadAnswer", "profile is not a JSON object")
        return data
