"""Bulk enrichment in the spec: several records per call, answers matched back by a key.

``{"path": "/v1/companies/bulk", "max_inputs": 50, "items_field": "requests",
  "item": {"domain": "{websiteurl|domain}"}, "key": "{websiteurl|domain}",
  "answers_path": "results", "key_path": "domain", "status_path": "status",
  "data_path": "company"}``

The body is ``{items_field: [item, ...]}`` (or the bare list when ``items_field`` is empty),
one ``item`` template filled per record. The answer holds a list at ``answers_path`` (empty:
the answer is the list); each element names its record at ``key_path`` (compared with the
record's ``key`` template), may carry its own status at ``status_path`` (no match, later, ...
as the spec says), and its fields at ``data_path`` (empty: the element itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from sync.config.enrichment_paths import Step, parse_path
from sync.config.enrichment_templates import json_references, references
from sync.failures.errors import ConfigError

MAX_BULK_INPUTS: Final = 1000
_FIELDS: Final = frozenset({"path", "method", "max_inputs", "items_field", "item", "key",
                            "answers_path", "key_path", "status_path", "data_path"})


@dataclass(frozen=True, slots=True)
class Bulk:
    """How a definition's API takes several records in one call."""

    path: str
    item: Any
    key: str
    key_path: tuple[Step, ...]
    method: str = "POST"
    max_inputs: int = 100
    items_field: str = "requests"
    answers_path: tuple[Step, ...] = ()
    status_path: tuple[Step, ...] | None = None
    data_path: tuple[Step, ...] = ()
    columns: tuple[str, ...] = ()
    """The columns the item and the key read."""


def parse_bulk(data: Any, where: str) -> Bulk:
    """The bulk part of a spec; ConfigError naming ``where``.{field} at fault."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be an object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ConfigError(f"{where} has unknown fields: {', '.join(unknown)}")
    for name in ("path", "item", "key", "key_path"):
        if name not in data:
            raise ConfigError(f"{where}.{name} is required")
    path, key = data["path"], data["key"]
    if not isinstance(path, str) or not path.startswith("/") or references(path, where):
        raise ConfigError(f"{where}.path must be a fixed path starting with /")
    if not isinstance(key, str):
        raise ConfigError(f"{where}.key must be a template, e.g. {{websiteurl|domain}}")
    most = data.get("max_inputs", 100)
    if not isinstance(most, int) or isinstance(most, bool) or not 1 <= most <= MAX_BULK_INPUTS:
        raise ConfigError(f"{where}.max_inputs must be an integer from 1 to {MAX_BULK_INPUTS}")
    method = data.get("method", "POST")
    if method != "POST":
        raise ConfigError(f"{where}.method must be POST (the inputs travel in the body)")
    items_field = data.get("items_field", "requests")
    if not isinstance(items_field, str):
        raise ConfigError(f"{where}.items_field must be a field name, or empty for a bare list")
    columns = [r.column for r in (*json_references(data["item"], f"{where}.item"),
                                  *references(key, f"{where}.key"))]
    return Bulk(path=path, item=data["item"], key=key,
                key_path=parse_path(data["key_path"], f"{where}.key_path"), method=method,
                max_inputs=most, items_field=items_field,
                answers_path=_optional_path(data.get("answers_path"), f"{where}.answers_path"),
                status_path=(parse_path(data["status_path"], f"{where}.status_path")
                             if data.get("status_path") else None),
                data_path=_optional_path(data.get("data_path"), f"{where}.data_path"),
                columns=tuple(dict.fromkeys(columns)))


def _optional_path(value: Any, where: str) -> tuple[Step, ...]:
    return parse_path(value, where) if value else ()
