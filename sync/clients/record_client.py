"""Reading one record and writing it back under its ETag: what ``sync rollback`` needs of the
Web API, on the same plumbing as the worker's client (``sync.clients.http``, the triage, the token).

Answers a rollback acts on come back as values (``None`` for a record that is gone, ``False``
for a 412: the record changed since it was read); every other failure leaves as the domain
error the triage names (``Throttled``, ``ServiceFault``, ``RecordFault``...).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from yarl import URL

from sync.clients.auth import TokenSource
from sync.clients.dataverse import API_PATH, SERVICE, record_path
from sync.clients.http import Answer, Request, exchange, judged
from sync.failures.errors import ServiceFault

NOT_FOUND: Final = 404
PRECONDITION_FAILED: Final = 412


@dataclass(frozen=True, slots=True)
class Read:
    """A record's version and the values of the columns asked for."""

    etag: str
    values: dict[str, Any]


class RecordClient:
    """One record at a time; the caller owns the session and the token source."""

    __slots__ = ("_api_url", "_session", "_timeout", "_tokens")

    def __init__(self, session: aiohttp.ClientSession, dataverse_url: str, tokens: TokenSource,
                 timeout_s: float) -> None:
        self._session, self._tokens = session, tokens
        self._api_url = dataverse_url.rstrip("/") + API_PATH
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    def __repr__(self) -> str:
        return f"RecordClient(api_url={self._api_url!r})"

    async def read(self, entity_set: str, record_id: str, columns: tuple[str, ...]) -> Read | None:
        """The record's ETag and ``columns``; None when it no longer exists."""
        url = str(URL(self._api_url + record_path(entity_set, record_id))
                  .with_query({"$select": ",".join(columns)}))
        where = f"GET {entity_set}"
        answer = await self._send(Request("GET", url, where, {}))
        if answer.status == NOT_FOUND:
            return None
        body = _object(judged(SERVICE, answer, where), where)
        etag = body.get("@odata.etag")
        if not isinstance(etag, str) or not etag:
            raise ServiceFault(SERVICE, f"malformed answer to {where}: no @odata.etag")
        return Read(etag, {column: body.get(column) for column in columns})

    async def write(self, entity_set: str, record_id: str, values: Mapping[str, Any],
                    etag: str) -> bool:
        """PATCH ``values`` if the record still has version ``etag``; False on a 412 (it
        changed since it was read)."""
        url = self._api_url + record_path(entity_set, record_id)
        where = f"PATCH {entity_set}"
        answer = await self._send(Request("PATCH", url, where, {"If-Match": etag},
                                          json_body=dict(values)))
        if answer.status == PRECONDITION_FAILED:
            return False
        judged(SERVICE, answer, where)
        return True

    async def _send(self, request: Request) -> Answer:
        """Send once; a 401 renews the token and sends once more."""
        answer = await self._send_once(request)
        if answer.status == 401:
            await self._tokens.renew()
            answer = await self._send_once(request)
        return answer

    async def _send_once(self, request: Request) -> Answer:
        headers = {**request.headers, "Authorization": f"Bearer {await self._tokens.token()}",
                   "Accept": "application/json", "OData-MaxVersion": "4.0",
                   "OData-Version": "4.0"}
        return await exchange(self._session, SERVICE, Request(
            request.method, request.url, request.where, headers, json_body=request.json_body),
            self._timeout)


def _object(answer: Answer, where: str) -> dict[str, Any]:
    try:
        data = json.loads(answer.body)
    except ValueError:
        raise ServiceFault(SERVICE, f"malformed answer to {where}: not JSON") from None
    if not isinstance(data, dict):
        raise ServiceFault(SERVICE, f"malformed answer to {where}: not a JSON object")
    return data
