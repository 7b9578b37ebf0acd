"""A Dataverse Web API client on aiohttp: read pages of a table, update records by id."""

from __future__ import annotations

import email.utils
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC
from typing import Any, Final, TypeVar

import aiohttp
from yarl import URL

from sync.clients import ratelimit_headers
from sync.clients.auth import TokenSource
from sync.clients.http import Answer, Request, exchange, judged
from sync.clients.odata_batch import Operation, OperationResult, batch_request, parse_batch_response
from sync.clock import SYSTEM_CLOCK, Clock
from sync.failures.errors import ServiceFault
from sync.failures.triage import MALFORMED_ERRORS, classify_exception

logger = logging.getLogger(__name__)

API_PATH: Final = "/api/data/v9.2/"
SERVICE: Final = "dataverse"
DOP_HINT_HEADER: Final = "x-ms-dop-hint"
REQUESTS_LEFT_HEADER: Final = "x-ms-ratelimit-burst-remaining-xrm-requests"
TIME_LEFT_HEADER: Final = "x-ms-ratelimit-time-remaining-xrm-requests"
LATENCY_WEIGHT: Final = 0.1
T = TypeVar("T")


def headroom_from(requests_left: str | None, time_left: str | None,
                  latency_ms: float) -> int | None:
    """How many more requests the window takes, from the two x-ms-ratelimit headers as the
    service writes them (see sync.clients.ratelimit_headers); None when neither is there or
    readable."""
    return ratelimit_headers.headroom(ratelimit_headers.requests_left(requests_left),
                                      ratelimit_headers.time_left_s(time_left), latency_ms)


@dataclass(frozen=True, slots=True)
class HintSeen:
    """An ``x-ms-dop-hint`` as an answer carried it, and when (wall clock: instances compare
    it through the shared hint row)."""

    hint: int
    seen_at_s: float


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a table read."""

    rows: list[dict[str, Any]]
    next_link: str | None
    delta_link: str | None
    served_at_s: float | None = None
    """When Dataverse answered, by its own clock (the ``Date`` header), in seconds since the
    epoch; None when it sent no readable one."""


@dataclass(frozen=True, slots=True)
class Version:
    """A record as it is now: its ETag and the columns read."""

    etag: str
    values: dict[str, Any]


def version_of(row: Mapping[str, Any], select: Sequence[str]) -> Version:
    etag = row["@odata.etag"]
    if not isinstance(etag, str):
        raise TypeError("@odata.etag is not a string")
    return Version(etag, {column: row.get(column) for column in select})


def is_deleted(row: Mapping[str, Any]) -> bool:
    """A change-tracking entry for a deleted row (``$deletedEntity``)."""
    context = str(row.get("@odata.context", ""))
    return row.get("reason") == "deleted" or context.endswith("$deletedEntity")


def record_path(entity_set: str, record_id: str) -> str:
    """Relative URL of one record by primary key."""
    return f"{entity_set}({record_id})"


class DataverseClient:
    """Talks to one Dataverse environment; shared by every invocation of a worker process."""

    __slots__ = ("_api_url", "_clock", "_latency_ms", "_session", "_timeout", "_tokens",
                 "hint_seen", "on_headroom", "on_hint")

    def __init__(self, session: aiohttp.ClientSession, dataverse_url: str,
                 tokens: TokenSource, timeout_s: float, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._session = session
        self._clock = clock
        self._api_url = dataverse_url.rstrip("/") + API_PATH
        self._tokens = tokens
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.hint_seen: HintSeen | None = None
        """The last ``x-ms-dop-hint`` seen, and when: the environment's recommended
        parallelism (every answer of every kind carries it, page reads included)."""
        self.on_hint: Callable[[int], None] = lambda _: None
        """Told each time the hint seen differs from the one before (the first one too)."""
        self._latency_ms = 100.0
        self.on_headroom: Callable[[int | None], None] = lambda _: None
        """Told what each answer's x-ms-ratelimit-* headers leave of the window."""

    def __repr__(self) -> str:
        return f"DataverseClient(api_url={self._api_url!r}, dop_hint={self.dop_hint})"

    @property
    def dop_hint(self) -> int | None:
        """The last hint seen (None before the first answer)."""
        return None if self.hint_seen is None else self.hint_seen.hint

    def collection_url(self, entity_set: str, select: tuple[str, ...], filter_: str) -> str:
        """The first page's URL of a table read."""
        query = {"$select": ",".join(select)}
        if filter_:
            query["$filter"] = filter_
        return str(URL(self._api_url + entity_set).with_query(query))

    async def read_page(self, url: str, page_size: int, *, track_changes: bool) -> Page:
        """One page; follow ``next_link`` unchanged with the same preferences."""
        prefer = f"odata.maxpagesize={page_size}"
        if track_changes:
            prefer = f"odata.track-changes,{prefer}"
        where = f"GET {_segment(url)}"
        answer = await self._send(Request("GET", url, where, {"Prefer": prefer}))
        body = _body(where, answer)
        page = _parsed(where, lambda: _page(body))
        return replace(page, served_at_s=served_at_s(answer.headers.get("Date")))

    async def who_am_i(self) -> str:
        """The calling user's id (the application user of the managed identity)."""
        body = await self._request("GET", self._api_url + "WhoAmI", "GET WhoAmI", headers={})
        return _parsed("GET WhoAmI", lambda: str(body["UserId"]))

    async def update(self, entity_set: str, record_id: str, fields: Mapping[str, Any], *,
                     if_match: str = "*", headers: Mapping[str, str] | None = None) -> None:
        """PATCH one record. ``If-Match: *`` makes a missing record a 404, never a create; an
        ETag makes a record changed since it was read a 412."""
        url = self._api_url + record_path(entity_set, record_id)
        await self._request("PATCH", url, f"PATCH {entity_set}",
                            headers={**(headers or {}), "If-Match": if_match},
                            json_body=dict(fields))

    async def update_multiple(self, entity_set: str, logical_name: str, key_column: str,
                              targets: Sequence[tuple[str, Mapping[str, Any]]], *,
                              headers: Mapping[str, str] | None = None) -> None:
        """One ``UpdateMultiple`` request: all targets are written, or none (it rolls back).
        Its targets carry no ETag (see ``read_versions`` for the check that stands in)."""
        odata_type = f"Microsoft.Dynamics.CRM.{logical_name}"
        body = {"Targets": [{"@odata.type": odata_type, key_column: record_id, **fields}
                            for record_id, fields in targets]}
        url = f"{self._api_url}{entity_set}/Microsoft.Dynamics.CRM.UpdateMultiple"
        await self._request("POST", url, f"POST {entity_set}/UpdateMultiple",
                            headers=dict(headers or {}), json_body=body)

    async def read_record(self, entity_set: str, record_id: str,
                          select: Sequence[str]) -> Version:
        """One record's ETag and ``select``ed columns as they are now."""
        url = str(URL(self._api_url + record_path(entity_set, record_id)).with_query(
            {"$select": ",".join(select)}))
        where = f"GET {record_path(entity_set, record_id)}"
        body = await self._request("GET", url, where, headers={})
        return _parsed(where, lambda: version_of(body, select))

    async def read_versions(self, entity_set: str, key_column: str, record_ids: Sequence[str],
                            select: Sequence[str]) -> dict[str, Version]:
        """The ETags and ``select``ed columns of up to a page of records, by id, in one read
        (``$filter`` on the key; records gone are missing from the answer)."""
        filter_ = " or ".join(f"{key_column} eq {record_id}" for record_id in record_ids)
        url = self.collection_url(entity_set, (key_column, *select), filter_)
        where = f"GET {entity_set}"
        body = await self._request("GET", url, where,
                                   headers={"Prefer": f"odata.maxpagesize={len(record_ids)}"})
        return _parsed(where, lambda: {str(row[key_column]): version_of(row, select)
                                       for row in _page(body).rows})

    async def execute_batch(self, operations: Sequence[Operation], *,
                            headers: Mapping[str, str] | None = None) -> list[OperationResult]:
        """One ``$batch`` with continue-on-error: a result per operation, in order."""
        content_type, body = batch_request(operations, API_PATH)
        headers = {**(headers or {}), "Content-Type": content_type,
                   "Prefer": "odata.continue-on-error"}
        answer = await self._send(Request("POST", self._api_url + "$batch", "POST $batch",
                                          headers, data=body))
        answer_type = answer.headers.get("Content-Type", "")
        results = _parsed("POST $batch", lambda: parse_batch_response(answer_type, answer.body))
        if len(results) != len(operations):
            raise ServiceFault(SERVICE, f"malformed answer to POST $batch: {len(results)} parts "
                                        f"for {len(operations)} operations")
        return results

    async def _request(self, method: str, url: str, where: str, *, headers: Mapping[str, str],
                       json_body: dict[str, Any] | None = None) -> dict[str, Any]:
        return _body(where, await self._send(Request(method, url, where, headers,
                                                     json_body=json_body)))

    async def _send(self, request: Request) -> Answer:
        """Send once; a 401 renews the token and sends once more. Answers a success or raises
        the domain error the triage names."""
        answer = await self._send_once(request)
        if answer.status == 401:
            await self._tokens.renew()
            answer = await self._send_once(request)
        return judged(SERVICE, answer, request.where)

    async def _send_once(self, request: Request) -> Answer:
        headers = {**request.headers, **await self._auth_headers()}
        started_s = self._clock.monotonic_s()
        answer = await exchange(self._session, SERVICE, replace(request, headers=headers),
                                self._timeout)
        self._note_headers(answer.headers, (self._clock.monotonic_s() - started_s) * 1000)
        return answer

    async def _auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self._tokens.token()}",
                "Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0"}

    def _note_headers(self, headers: Mapping[str, str], latency_ms: float) -> None:
        hint = headers.get(DOP_HINT_HEADER)
        if hint and hint.isdigit():
            self._note_hint(int(hint))
        self._latency_ms += LATENCY_WEIGHT * (latency_ms - self._latency_ms)
        self.on_headroom(headroom_from(headers.get(REQUESTS_LEFT_HEADER),
                                       headers.get(TIME_LEFT_HEADER), self._latency_ms))

    def _note_hint(self, hint: int) -> None:
        changed = hint != self.dop_hint
        self.hint_seen = HintSeen(hint, self._clock.wall_s())
        if changed:
            self.on_hint(hint)


def _body(where: str, answer: Answer) -> dict[str, Any]:
    """An answer's JSON object (empty when it has no body)."""
    return _parsed(where, lambda: _json_object(answer.body)) if answer.body else {}


def _json_object(body: bytes) -> dict[str, Any]:
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("Dataverse answered JSON that is not an object")
    return data


def _page(body: dict[str, Any]) -> Page:
    rows = body["value"]
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise TypeError("value is not a list of objects")
    next_link, delta_link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
    for link in (next_link, delta_link):
        if link is not None and not isinstance(link, str):
            raise TypeError("a paging link is not a string")
    return Page(rows=rows, next_link=next_link, delta_link=delta_link)


def served_at_s(date: str | None) -> float | None:
    """An HTTP ``Date`` header (``Sat, 05 Dec 2026 04:20:00 GMT``) as seconds since the epoch;
    None when absent or unreadable."""
    if not date:
        return None
    try:
        at = email.utils.parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _segment(url: str) -> str:
    """The entity set (or function) a URL names, without its query: ``accounts``."""
    path = URL(url).path
    return path.split(API_PATH, 1)[-1] or path


def _parsed(where: str, parse: Callable[[], T]) -> T:
    """``parse()``; an answer it cannot read is the service's fault (malformed), never ours."""
    try:
        return parse()
    except MALFORMED_ERRORS as error:
        raise classify_exception(SERVICE, error, where=where) from None
