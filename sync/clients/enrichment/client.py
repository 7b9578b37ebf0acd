"""The enrichment client: one definition's API asked as its spec says, one per process and
definition, sharing the process's HTTP session.

Credentials: a key (``header``, ``query``, ``bearer``) comes from ``read_key`` (the app setting,
a Key Vault reference in Azure): a 401 reads it again (a rotated key) and tries once more before
it is a service fault; a managed identity's token (``managed_identity``) is renewed the same
way. An answer whose rate-limit headers say the window is spent tells ``on_spent`` how long
(the governor closes its gate for that long). Everything leaves as a domain error
(``sync.failures.errors``), ``Later``, or the record's columns.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp

from sync.clients.auth import TokenSource
from sync.clients.enrichment.answers import (
    ItemOutcome,
    Judge,
    Later,
    Outcome,
    columns_of,
    json_of,
)
from sync.clients.enrichment.calls import (
    Columns,
    bulk_key,
    bulk_request,
    bulk_where,
    inputs_of,
    single_request,
    where_of,
)
from sync.clients.enrichment.limits import spent_for_s
from sync.clients.http import Answer, Request, exchange, judged
from sync.clock import SYSTEM_CLOCK, Clock
from sync.config.enrichment_spec import (
    EnrichmentSpec,
    default_enrichment,
    load_hook,
    parse_enrichment,
)
from sync.config.enrichment_templates import SERVICE
from sync.config.table_definition import DEFAULT_DEFINITION
from sync.failures.errors import ServiceFault, SyncError
from sync.failures.triage import TRANSPORT_ERRORS, classify_exception

Build = Callable[[Mapping[str, str], Sequence[tuple[str, str]]], Request]
OnSpent = Callable[[float], None]


@functools.cache
def default_spec() -> EnrichmentSpec:
    """Today's API, asked with the default definition's input column."""
    column = str(DEFAULT_DEFINITION["input_column"])
    return parse_enrichment(default_enrichment(column), "enrichment", column)


class EnrichmentClient:
    """Asks one definition's enrichment API (see the module's docstring)."""

    __slots__ = ("_api_key", "_base_url", "_clock", "_mapping", "_on_spent", "_read_key",
                 "_session", "_timeout", "_tokens", "spec")

    def __init__(self, session: aiohttp.ClientSession, base_url: str,
                 read_key: Callable[[], str], timeout_s: float, *,
                 spec: EnrichmentSpec | None = None, mapping: Mapping[str, str] | None = None,
                 tokens: TokenSource | None = None, clock: Clock = SYSTEM_CLOCK,
                 on_spent: OnSpent | None = None) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self.spec = spec or default_spec()
        self._mapping = dict(mapping or DEFAULT_DEFINITION["mapping"])
        self._read_key = read_key
        self._api_key = read_key() if self.spec.auth.uses_key else ""
        self._tokens = tokens
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._on_spent = on_spent

    def __repr__(self) -> str:
        return f"EnrichmentClient(base_url={self._base_url!r}, where={where_of(self.spec)!r})"

    @property
    def bulk_size(self) -> int:
        """Records per call: the spec's bulk ``max_inputs``, 1 without bulk."""
        return self.spec.bulk.max_inputs if self.spec.bulk is not None else 1

    def inputs(self, columns: Columns) -> tuple[Any, ...]:
        """What a record's request asks (RecordFault ``unusable_input`` when it cannot be
        built): checked before the governor is asked, and the enrichment cache's key."""
        if self.spec.bulk is not None and not self.spec.hook:
            bulk_key(self.spec.bulk, columns)
        return inputs_of(self.spec, columns)

    async def ask(self, columns: Columns) -> Outcome:
        """One record's columns, or Later; raises the domain errors."""
        if self.spec.hook:
            return await self._hook(columns)
        where = where_of(self.spec)
        answer = await self._send(lambda headers, params: single_request(
            self.spec, self._base_url, columns, headers, params))
        return Judge(self.spec, self._mapping, where, self._clock.wall_s()).single(answer)

    async def ask_many(self, records: Sequence[Columns]) -> list[ItemOutcome]:
        """Several records in one bulk call: each one's outcome, in order."""
        bulk = self.spec.bulk
        if bulk is None or self.spec.hook:
            raise ValueError("ask_many needs a spec with bulk")
        answer = await self._send(lambda headers, params: bulk_request(
            self.spec, self._base_url, records, (headers, params)))
        keys = [bulk_key(bulk, columns) for columns in records]
        judge = Judge(self.spec, self._mapping, bulk_where(bulk), self._clock.wall_s())
        return judge.bulk(bulk, answer, keys)

    async def profile(self, domain: str) -> dict[str, Any]:
        """Today's API's whole answer for ``domain`` (the bench's call)."""
        spec = default_spec()
        columns = {DEFAULT_DEFINITION["input_column"]: domain}
        answer = await self._send(lambda headers, params: single_request(
            spec, self._base_url, columns, headers, params))
        where = where_of(spec)
        data = json_of(judged(SERVICE, answer, where).body, where)
        if not isinstance(data, dict):
            raise ServiceFault(SERVICE, f"malformed answer to {where}: not a JSON object")
        return data

    async def close(self) -> None:
        """Close the token source (the session is the process's, closed by its owner)."""
        if self._tokens is not None:
            await self._tokens.close()

    async def _hook(self, columns: Columns) -> Outcome:
        hook: Callable[..., Awaitable[Any]] = load_hook(str(self.spec.hook))
        try:
            found = await hook(dict(columns), self._session)
        except SyncError:
            raise
        except TRANSPORT_ERRORS as error:  # the hook's own calls failed: the service's fault
            raise classify_exception(SERVICE, error, where=f"hook {self.spec.hook}") from None
        # anything else the hook raises is a bug in it: it surfaces (sync.work.bugs)
        if isinstance(found, Later):
            return found
        if not isinstance(found, Mapping):
            raise ServiceFault(SERVICE, f"hook {self.spec.hook} answered no mapping of columns")
        return columns_of(found, self._mapping, missing_is_null=self.spec.missing_is_null,
                          where=where_of(self.spec))

    async def _send(self, build: Build) -> Answer:
        """Send with the current credentials; a 401 renews them and tries once more."""
        answer = await exchange(self._session, SERVICE, build(*await self._credentials()),
                                self._timeout)
        if answer.status == 401:
            await self._renew()
            answer = await exchange(self._session, SERVICE, build(*await self._credentials()),
                                    self._timeout)
        if self._on_spent is not None:
            spent_s = spent_for_s(answer.headers, self.spec.rate_limit_headers,
                                  self._clock.wall_s())
            if spent_s:
                self._on_spent(spent_s)
        return answer

    async def _credentials(self) -> tuple[dict[str, str], list[tuple[str, str]]]:
        """The auth's headers and query parameters."""
        auth = self.spec.auth
        if auth.type == "header":
            return {auth.name: self._api_key}, []
        if auth.type == "query":
            return {}, [(auth.name, self._api_key)]
        if auth.type == "bearer":
            return {"Authorization": f"Bearer {self._api_key}"}, []
        if auth.type == "managed_identity":
            if self._tokens is None:
                raise ServiceFault(SERVICE, "no token source for the managed identity")
            return {"Authorization": f"Bearer {await self._tokens.token()}"}, []
        return {}, []

    async def _renew(self) -> None:
        if self.spec.auth.uses_key:
            self._api_key = self._read_key()
        elif self._tokens is not None:
            await self._tokens.renew()

