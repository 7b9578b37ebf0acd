"""A client of the external enrichment API: a company's profile from its website's domain."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import quote, urlsplit

import aiohttp
from yarl import URL

from sync.clients.http import Answer, Request, exchange, judged
from sync.failures.errors import RecordFault, ServiceFault
from sync.failures.triage import MALFORMED_ERRORS, classify_exception

SERVICE: Final = "enrichment"
WHERE: Final = "GET /v1/companies"
DOMAIN_CACHE_SIZE: Final = 4096
"""Websites whose domain is kept: more than the records one host has in flight (host.json
batchSize 16 messages of at most 100 records)."""
_SPACE: Final = re.compile(r"\s")
"""Whitespace as ``str.isspace`` sees it (``re`` tests the same Unicode property)."""


@functools.lru_cache(maxsize=DOMAIN_CACHE_SIZE)
def domain_of(website: str) -> str:
    """The bare domain of a website value: ``https://www.Contoso.com/x`` -> ``contoso.com``.

    Raises RecordFault (``unusable_input``) for anything that names no domain. Cached: the
    worker checks each record's website before it asks the governor, and the call asks again
    (a RecordFault is raised anew each time, never cached)."""
    text = website.strip()
    try:
        host = urlsplit(text if "//" in text else f"//{text}").hostname or ""
    except ValueError:
        host = ""
    host = host.removeprefix("www.")
    if "." not in host or _SPACE.search(host):
        raise RecordFault(SERVICE, 0, "InvalidInput", f"no domain in website {website[:100]!r}",
                          reason="unusable_input")
    return host


def columns_from(profile: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    """The Dataverse columns to write for a profile; ``mapping`` is column -> profile field."""
    return {column: profile.get(source) for column, source in mapping.items()}


class EnrichmentClient:
    """Calls the enrichment API; one per process, sharing the process's HTTP session.

    The key comes from ``read_key`` (the app setting, a Key Vault reference in Azure): a 401
    reads it again (a rotated key) and tries once more before it is a service fault."""

    __slots__ = ("_api_key", "_base_url", "_read_key", "_session", "_timeout")

    def __init__(self, session: aiohttp.ClientSession, base_url: str,
                 read_key: Callable[[], str], timeout_s: float) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._read_key = read_key
        self._api_key = read_key()
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    def __repr__(self) -> str:
        return f"EnrichmentClient(base_url={self._base_url!r})"

    async def columns_for(self, website: str, mapping: Mapping[str, str]) -> dict[str, Any]:
        """The Dataverse columns enriched from ``website``; an answer that lacks a mapped field
        is malformed (a ServiceFault), never written as null."""
        profile = await self.profile(domain_of(website))
        missing = sorted(set(mapping.values()) - profile.keys())
        if missing:
            raise ServiceFault(SERVICE, f"malformed answer to {WHERE}: no {', '.join(missing)}")
        return columns_from(profile, mapping)

    async def profile(self, domain: str) -> dict[str, Any]:
        """The company profile for ``domain``; raises the domain errors of sync.failures.errors."""
        answer = await self._get(domain)
        if answer.status == 401:
            self._api_key = self._read_key()
            answer = await self._get(domain)
        body = judged(SERVICE, answer, WHERE).body
        try:
            data = json.loads(body)
        except MALFORMED_ERRORS as error:
            raise classify_exception(SERVICE, error, where=WHERE) from None
        if not isinstance(data, dict):
            raise ServiceFault(SERVICE, f"malformed answer to {WHERE}: not a JSON object")
        return data

    async def _get(self, domain: str) -> Answer:
        # the URL built encoded: aiohttp and yarl then neither parse it nor encode a query
        url = URL(f"{self._base_url}/v1/companies?domain={quote(domain, safe='')}",
                  encoded=True)
        request = Request("GET", url, WHERE, headers={"x-api-key": self._api_key})
        return await exchange(self._session, SERVICE, request, self._timeout)
