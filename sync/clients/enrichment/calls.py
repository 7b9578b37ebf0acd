"""The requests a spec describes, built from records' columns: one record's, or a bulk call's.

Every value reaches the URL percent-encoded, the URL handed to aiohttp already encoded (neither
aiohttp nor yarl parse or re-encode it). ``where`` names a request in errors by its method and
path template (``GET /v5/company/enrich``), never with a value or a key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from yarl import URL

from sync.clients.http import Request
from sync.config.enrichment_bulk import Bulk
from sync.config.enrichment_spec import EnrichmentSpec
from sync.config.enrichment_templates import json_references, references, render, render_json

Columns = Mapping[str, Any]


def where_of(spec: EnrichmentSpec) -> str:
    """``GET /v1/companies``: how errors name the spec's request."""
    return f"{spec.method} {spec.path}" if not spec.hook else f"hook {spec.hook}"


def bulk_where(bulk: Bulk) -> str:
    return f"{bulk.method} {bulk.path}"


def inputs_of(spec: EnrichmentSpec, columns: Columns) -> tuple[Any, ...]:
    """What the request asks, as values: every reference of the request filled (the hook's
    columns as they are). RecordFault (``unusable_input``) when the record cannot fill one."""
    if spec.hook:
        return tuple(_refs_value(f"{{{c}}}", columns) for c in spec.columns)
    refs = [*references(spec.path, "path"),
            *(ref for _, text in spec.query for ref in references(text, "query")),
            *json_references(spec.body, "body")]
    return tuple(ref.value(columns) for ref in refs)


def _refs_value(template: str, columns: Columns) -> Any:
    return references(template, "columns")[0].value(columns)


def url_of(base_url: str, path: str, query: Sequence[tuple[str, str]]) -> URL:
    """``base_url`` + ``path`` + the encoded query, as an already encoded URL."""
    text = base_url.rstrip("/") + path
    if query:
        text += "?" + "&".join(f"{quote(name, safe='')}={quote(value, safe='')}"
                               for name, value in query)
    return URL(text, encoded=True)


def single_request(spec: EnrichmentSpec, base_url: str, columns: Columns,
                   headers: Mapping[str, str], params: Sequence[tuple[str, str]]) -> Request:
    """One record's request, with the auth's ``headers`` and query ``params`` added."""
    path = render(spec.path, columns, "path", encode=True)
    query = [(name, render(text, columns, "query")) for name, text in spec.query]
    body = render_json(spec.body, columns) if spec.body is not None else None
    return Request(spec.method, url_of(base_url, path, [*query, *params]), where_of(spec),
                   headers={**dict(spec.headers), **headers}, json_body=body)


def bulk_key(bulk: Bulk, columns: Columns) -> str:
    """The value a record's answer carries at the bulk ``key_path``."""
    return render(bulk.key, columns, "bulk.key")


def bulk_request(spec: EnrichmentSpec, base_url: str, records: Sequence[Columns],
                 credentials: tuple[Mapping[str, str], Sequence[tuple[str, str]]]) -> Request:
    """One call for several records: their ``item`` templates filled, in order; the auth's
    ``credentials`` (headers, query parameters) added."""
    bulk = spec.bulk
    if bulk is None:
        raise ValueError("the spec has no bulk call")
    headers, params = credentials
    items = [render_json(bulk.item, columns) for columns in records]
    body: Any = {bulk.items_field: items} if bulk.items_field else items
    return Request(bulk.method, url_of(base_url, bulk.path, params), bulk_where(bulk),
                   headers={**dict(spec.headers), **headers}, json_body=body)
