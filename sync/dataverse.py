"""A Dataverse Web API client on aiohttp: read pages of a table, update records by id."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Final

import aiohttp
from yarl import URL

from sync.auth import TokenSource
from sync.batchwire import Operation, OperationResult, batch_request, parse_batch_response
from sync.http import TRANSIENT_EXCEPTIONS, raise_for_answer, transient_from

logger = logging.getLogger(__name__)

API_PATH: Final = "/api/data/v9.2/"
SERVICE: Final = "dataverse"
DOP_HINT_HEADER: Final = "x-ms-dop-hint"


def record_path(entity_set: str, record_id: str) -> str:
    """Relative URL of one record by primary key."""
    return f"{entity_set}({record_id})"


class DataverseClient:
    """Talks to one Dataverse environment; shared by every invocation of a worker process."""

    __slots__ = ("_api_url", "_session", "_timeout", "_tokens", "dop_hint")

    def __init__(self, session: aiohttp.ClientSession, dataverse_url: str,
                 tokens: TokenSource, timeout_s: float) -> None:
        self._session = session
        self._api_url = dataverse_url.rstrip("/") + API_PATH
        self._tokens = tokens
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.dop_hint: int | None = None
        """The last ``x-ms-dop-hint`` seen: the environment's recommended parallelism."""

    def __repr__(self) -> str:
        return f"DataverseClient(api_url={self._api_url!r}, dop_hint={self.dop_hint})"

    async def pages(self, entity_set: str, select: tuple[str, ...], filter_: str,
                    page_size: int) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield the table's rows a page at a time, following ``@odata.nextLink`` unchanged."""
        query = {"$select": ",".join(select)}
        if filter_:
            query["$filter"] = filter_
        url = URL(self._api_url + entity_set).with_query(query)
        headers = {"Prefer": f"odata.maxpagesize={page_size}"}
        next_url: str | None = str(url)
        while next_url:
            body = await self._request("GET", next_url, headers=headers)
            yield list(body.get("value", []))
            next_url = body.get("@odata.nextLink")

    async def update(self, entity_set: str, record_id: str, fields: Mapping[str, Any]) -> None:
        """PATCH one record; ``If-Match: *`` makes a missing record a 404, never a create."""
        url = self._api_url + record_path(entity_set, record_id)
        await self._request("PATCH", url, headers={"If-Match": "*"}, json_body=dict(fields))

    async def update_multiple(self, entity_set: str, logical_name: str, key_column: str,
                              targets: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """One ``UpdateMultiple`` request: all targets are written, or none (it rolls back)."""
        odata_type = f"Microsoft.Dynamics.CRM.{logical_name}"
        body = {"Targets": [{"@odata.type": odata_type, key_column: record_id, **fields}
                            for record_id, fields in targets]}
        url = f"{self._api_url}{entity_set}/Microsoft.Dynamics.CRM.UpdateMultiple"
        await self._request("POST", url, headers={}, json_body=body)

    async def execute_batch(self, operations: Sequence[Operation]) -> list[OperationResult]:
        """One ``$batch`` with continue-on-error: a result per operation, in order."""
        content_type, body = batch_request(operations, API_PATH)
        headers = {"Content-Type": content_type, "Prefer": "odata.continue-on-error"}
        answer_type, answer = await self._send("POST", self._api_url + "$batch", headers,
                                               data=body)
        return parse_batch_response(answer_type, answer)

    async def _request(self, method: str, url: str, *, headers: Mapping[str, str],
                       json_body: dict[str, Any] | None = None) -> dict[str, Any]:
        _, body = await self._send(method, url, headers, json_body=json_body)
        return _json_object(body) if body else {}

    async def _send(self, method: str, url: str, headers: Mapping[str, str], *,
                    json_body: dict[str, Any] | None = None,
                    data: bytes | None = None) -> tuple[str, bytes]:
        """Send once; answer the Content-Type and body of a 2xx, raise a SyncError otherwise."""
        all_headers = {**headers, **await self._auth_headers()}
        try:
            async with self._session.request(method, url, headers=all_headers, json=json_body,
                                             data=data, timeout=self._timeout) as response:
                body = await response.read()
                self._note_headers(response.headers)
                raise_for_answer(SERVICE, response.status, response.headers, body)
                return response.headers.get("Content-Type", ""), body
        except TRANSIENT_EXCEPTIONS as error:
            raise transient_from(SERVICE, error) from None

    async def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self._tokens.token()}",
                "Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}

    def _note_headers(self, headers: Mapping[str, str]) -> None:
        hint = headers.get(DOP_HINT_HEADER)
        if hint and hint.isdigit():
            self.dop_hint = int(hint)


def _json_object(body: bytes) -> dict[str, Any]:
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("Dataverse answered JSON that is not an object")
    return data
