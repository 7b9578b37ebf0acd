"""HTTP plumbing shared by the Dataverse and enrichment clients: the session and one exchange.

``exchange`` is the only place either client touches aiohttp for a request: whatever the
transport raises leaves it as a ServiceFault (sync.failures.triage), and every answer comes back
as status, headers and body for the triage to judge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from sync.failures.triage import classify_answer, classify_exception


def new_session(connection_limit: int, *, keep_affinity: bool = False) -> aiohttp.ClientSession:
    """One session per process, with a pool as large as the fan-out.

    Cookies are dropped unless ``keep_affinity``: without the affinity cookie every request may
    go to any of the environment's web servers, and the limits are per server. aiohttp keeps
    connections alive, sets TCP_NODELAY and never sends ``Expect: 100-continue`` unless asked,
    which is what the Dataverse guidance asks of a parallel client.
    """
    connector = aiohttp.TCPConnector(limit=connection_limit, limit_per_host=connection_limit,
                                     keepalive_timeout=60, ttl_dns_cache=300)
    jar: aiohttp.abc.AbstractCookieJar = (aiohttp.CookieJar(unsafe=True) if keep_affinity
                                          else aiohttp.DummyCookieJar())
    return aiohttp.ClientSession(connector=connector, cookie_jar=jar, raise_for_status=False)


@dataclass(frozen=True, slots=True)
class Answer:
    """A service's answer, read whole."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Request:
    """One request: ``where`` names it in errors (``PATCH accounts``), never with its query."""

    method: str
    url: str | URL
    where: str
    headers: Mapping[str, str]
    json_body: Any = None
    data: bytes | None = None
    params: Mapping[str, str] | None = None


async def exchange(session: aiohttp.ClientSession, service: str, request: Request,
                   limits: aiohttp.ClientTimeout) -> Answer:
    """Send once and read the whole answer; a transport failure raises a ServiceFault."""
    try:
        async with session.request(request.method, request.url, headers=request.headers,
                                   json=request.json_body, data=request.data,
                                   params=request.params, timeout=limits) as response:
            return Answer(response.status, response.headers, await response.read())
    except Exception as error:
        raise classify_exception(service, error, where=request.where) from None


def judged(service: str, answer: Answer, where: str) -> Answer:
    """The answer when it is a success; otherwise raise the error the triage names."""
    fault = classify_answer(service, answer.status, answer.headers, answer.body, where=where)
    if fault is not None:
        raise fault
    return answer
