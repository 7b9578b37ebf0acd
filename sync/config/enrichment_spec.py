"""The enrichment spec: how a definition asks its enrichment API, as data (the ``enrichment``
field of a sync definition). Validated at load; an error names the field at fault.

``{"method": "GET", "path": "/v5/company/enrich", "query": {"website": "{websiteurl|domain}"},
  "headers": {"Accept": "application/json"}, "auth": {"type": "header", "name": "X-Api-Key"},
  "no_match": [404], "later": {"statuses": [202], "delay_s": 300, "max_laters": 12},
  "out_of_credits": [402], "rate_limit_headers": ["Retry-After", "X-RateLimit"],
  "cache": {"ttl_s": 2592000}}``

- ``path``, ``query`` and ``body`` are templates over the record's columns
  (``sync.config.enrichment_templates``); ``path`` follows the definition's enrichment URL;
- ``auth``: ``header`` or ``query`` (the key of the definition's ``enrichment_key_setting``, a
  Key Vault reference in Azure, under ``name``), ``bearer`` (the same key as a bearer token),
  ``managed_identity`` (a token for ``scope`` from the app's managed identity, ``client_id``
  for a user-assigned one), or ``none``;
- the definition's ``mapping`` maps each column to a path into the answer
  (``sync.config.enrichment_paths``); with ``missing: "null"`` an absent path writes null,
  by default it makes the answer malformed (a service fault);
- ``no_match``: statuses that mean "no such company" (the record is dead-lettered as
  ``not_enrichable`` and never retried); ``later``: statuses that mean "asked, answer later"
  (the record waits ``delay_s``, or the answer's Retry-After, on the queue, up to
  ``max_laters`` times, then is dead-lettered as ``never_ready``); ``out_of_credits``: statuses
  that stop the line (a configuration fault: the circuit opens, nothing is dead-lettered);
- ``rate_limit_headers``: which of ``Retry-After``, ``RateLimit`` (``RateLimit-Reset``,
  ``RateLimit-Remaining`` or the combined ``RateLimit``) and ``X-RateLimit`` to honour;
- ``bulk`` (``sync.config.enrichment_bulk``): up to ``max_inputs`` records per call;
- ``cache``: answers kept in Table Storage for ``ttl_s`` (``sync.state.enrichment_cache``);
- ``hook``: ``module:function`` called instead of any HTTP request (``columns`` names what it
  is given); loaded here, so a hook that is missing fails the app at load.

Without the field a definition asks today's API: ``DEFAULT_ENRICHMENT``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import inspect
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sync.config.enrichment_bulk import Bulk, parse_bulk
from sync.config.enrichment_templates import json_references, references
from sync.failures.errors import ConfigError

METHODS: Final = ("GET", "POST")
AUTH_TYPES: Final = ("header", "query", "bearer", "managed_identity", "none")
RATE_LIMIT_HEADERS: Final = ("Retry-After", "RateLimit", "X-RateLimit")
MAX_DELAY_S: Final = 7 * 24 * 3600
"""A queue message's longest visibility delay (Azure Storage Queues: 7 days)."""
MAX_TTL_S: Final = 400 * 24 * 3600
_FIELDS: Final = frozenset({"method", "path", "query", "body", "headers", "auth", "no_match",
                            "later", "out_of_credits", "missing", "rate_limit_headers", "bulk",
                            "cache", "hook", "columns"})
_HEADER: Final = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")
_HOOK: Final = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_GUID: Final = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def default_enrichment(input_column: str) -> dict[str, Any]:
    """Today's API: ``GET {ENRICHMENT_URL}/v1/companies?domain=<domain of the input>`` with the
    key in ``x-api-key``; 404 and 422 mean no such company, 402 out of credits."""
    return {"method": "GET", "path": "/v1/companies",
            "query": {"domain": f"{{{input_column}|domain}}"},
            "auth": {"type": "header", "name": "x-api-key"}, "no_match": [404, 422],
            "out_of_credits": [402], "rate_limit_headers": ["Retry-After"]}


@dataclass(frozen=True, slots=True)
class Auth:
    """How a call proves who sends it."""

    type: str = "header"
    name: str = "x-api-key"
    """The header or query parameter that carries the key (``header``, ``query``)."""
    scope: str = ""
    """The token's scope (``managed_identity``), e.g. ``api://enrich/.default``."""
    client_id: str | None = None
    """A user-assigned managed identity's client id; None: the system-assigned one."""

    @property
    def uses_key(self) -> bool:
        return self.type in ("header", "query", "bearer")


@dataclass(frozen=True, slots=True)
class Later:
    """What "asked, answer later" looks like, and how long and how often a record waits."""

    statuses: frozenset[int] = frozenset()
    delay_s: float = 60.0
    max_laters: int = 10


@dataclass(frozen=True, slots=True)
class EnrichmentSpec:
    """A definition's enrichment API, parsed (see the module's docstring)."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: Any = None
    headers: tuple[tuple[str, str], ...] = ()
    auth: Auth = Auth()
    no_match: frozenset[int] = frozenset()
    later: Later = Later()
    out_of_credits: frozenset[int] = frozenset()
    missing_is_null: bool = False
    rate_limit_headers: tuple[str, ...] = ("Retry-After",)
    bulk: Bulk | None = None
    cache_ttl_s: float | None = None
    hook: str | None = None
    columns: tuple[str, ...] = ()
    """Every column the request reads, the definition's input column first."""
    fingerprint: str = ""
    """A digest of what shapes the request (not the auth): part of the cache's key."""


def parse_enrichment(data: Any, where: str, input_column: str) -> EnrichmentSpec:
    """The spec from its JSON; ConfigError naming ``where``.{field} at fault."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be an object (see the enrichment spec)")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ConfigError(f"{where} has unknown fields: {', '.join(unknown)}")
    hook = _hook(data.get("hook"), f"{where}.hook")
    if hook is None and "path" not in data:
        raise ConfigError(f"{where}.path is required (or a hook)")
    method = data.get("method", "GET")
    if method not in METHODS:
        raise ConfigError(f"{where}.method must be one of {', '.join(METHODS)}")
    statuses = {name: _statuses(data.get(name, []), f"{where}.{name}")
                for name in ("no_match", "out_of_credits")}
    later = _later(data.get("later"), f"{where}.later")
    _disjoint(where, statuses["no_match"], later.statuses, statuses["out_of_credits"])
    spec = EnrichmentSpec(
        method=method, path=_template(data.get("path", ""), f"{where}.path"),
        query=_texts(data.get("query", {}), f"{where}.query", templates=True),
        body=_body(data.get("body"), method, f"{where}.body"),
        headers=_texts(data.get("headers", {}), f"{where}.headers", templates=False),
        auth=_auth(data.get("auth", {"type": "none"}), f"{where}.auth"),
        no_match=statuses["no_match"], later=later,
        out_of_credits=statuses["out_of_credits"],
        missing_is_null=_missing(data.get("missing", "fault"), f"{where}.missing"),
        rate_limit_headers=_rate_limit_headers(data.get("rate_limit_headers", ["Retry-After"]),
                                               f"{where}.rate_limit_headers"),
        bulk=parse_bulk(data["bulk"], f"{where}.bulk") if data.get("bulk") is not None else None,
        cache_ttl_s=_cache(data.get("cache"), f"{where}.cache"), hook=hook)
    columns = _columns(spec, data.get("columns"), where, input_column)
    return _finished(spec, columns, data)


def _finished(spec: EnrichmentSpec, columns: tuple[str, ...],
              data: Mapping[str, Any]) -> EnrichmentSpec:
    shaping = {key: data.get(key) for key in ("method", "path", "query", "body", "hook",
                                              "bulk", "columns")}
    digest = hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]
    return dataclasses.replace(spec, columns=columns, fingerprint=digest)


def _columns(spec: EnrichmentSpec, given: Any, where: str,
             input_column: str) -> tuple[str, ...]:
    """The input column, then every other column the templates (or ``columns``) name."""
    if given is not None:
        if not isinstance(given, list) or not all(isinstance(c, str) for c in given):
            raise ConfigError(f"{where}.columns must be a list of column names")
        named = [ref.column for c in given for ref in references(f"{{{c}}}", f"{where}.columns")]
    else:
        named = [ref.column for ref in (*references(spec.path, where),
                                        *(r for _, v in spec.query for r in references(v, where)),
                                        *json_references(spec.body, where))]
        if spec.bulk is not None:
            named += spec.bulk.columns
    return tuple(dict.fromkeys([input_column, *named]))


def _template(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string")
    references(value, where)
    if value and not value.startswith("/"):
        raise ConfigError(f"{where} must start with / (it follows the enrichment URL)")
    return value


def _texts(value: Any, where: str, *, templates: bool) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be an object of names to text")
    for name, text in value.items():
        if not isinstance(text, str) or (not templates and not _HEADER.match(name)):
            raise ConfigError(f"{where}.{name} must be text (a header name of A-Z a-z 0-9 -)"
                              if not templates else f"{where}.{name} must be text")
        if templates:
            references(text, f"{where}.{name}")
        elif "{" in text:
            raise ConfigError(f"{where}.{name}: headers are fixed text (secrets go in auth)")
    return tuple(value.items())


def _body(value: Any, method: str, where: str) -> Any:
    if value is None:
        return None
    if method == "GET":
        raise ConfigError(f"{where}: a GET sends no body; use query, or method POST")
    json_references(value, where)
    return value


def _auth(value: Any, where: str) -> Auth:
    if not isinstance(value, dict) or value.get("type") not in AUTH_TYPES:
        raise ConfigError(f"{where}.type must be one of {', '.join(AUTH_TYPES)}")
    unknown = sorted(set(value) - {"type", "name", "scope", "client_id"})
    if unknown:
        raise ConfigError(f"{where} has unknown fields: {', '.join(unknown)}")
    kind = value["type"]
    name = value.get("name", "x-api-key" if kind == "header" else "api_key")
    if kind in ("header", "query") and (not isinstance(name, str) or not _HEADER.match(name)):
        raise ConfigError(f"{where}.name must name the {kind} that carries the key")
    scope, client_id = value.get("scope", ""), value.get("client_id")
    if kind == "managed_identity" and (not isinstance(scope, str) or "://" not in scope):
        raise ConfigError(f"{where}.scope is required for managed_identity: the API's scope, "
                          "e.g. api://<app id>/.default")
    if client_id is not None and (not isinstance(client_id, str) or not _GUID.match(client_id)):
        raise ConfigError(f"{where}.client_id must be a GUID (a user-assigned identity)")
    return Auth(kind, name if kind in ("header", "query") else "", scope or "", client_id)


def _statuses(value: Any, where: str) -> frozenset[int]:
    if not isinstance(value, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and 200 <= s <= 599 for s in value):
        raise ConfigError(f"{where} must be a list of HTTP statuses (200-599)")
    if {429, 401, 403} & set(value) or any(s >= 500 for s in value):
        raise ConfigError(f"{where}: 429, 401, 403 and 5xx keep their meaning (throttled, "
                          "credential refused, service fault)")
    return frozenset(value)


def _later(value: Any, where: str) -> Later:
    if value is None:
        return Later()
    if not isinstance(value, dict) or set(value) - {"statuses", "delay_s", "max_laters"}:
        raise ConfigError(f"{where} must be an object of statuses, delay_s and max_laters")
    statuses = _statuses(value.get("statuses", [202]), f"{where}.statuses")
    if any(s >= 300 for s in statuses):
        raise ConfigError(f"{where}.statuses must be 2xx (an accepted request: 202, 201)")
    delay_s, most = value.get("delay_s", 60), value.get("max_laters", 10)
    if not _number(delay_s) or not 0 <= delay_s <= MAX_DELAY_S:
        raise ConfigError(f"{where}.delay_s must be seconds from 0 to {MAX_DELAY_S}")
    if not isinstance(most, int) or isinstance(most, bool) or not 1 <= most <= 1000:
        raise ConfigError(f"{where}.max_laters must be an integer from 1 to 1000")
    return Later(statuses, float(delay_s), most)


def _disjoint(where: str, *sets: frozenset[int]) -> None:
    seen: set[int] = set()
    for statuses in sets:
        if seen & statuses:
            raise ConfigError(f"{where}: status {min(seen & statuses)} has two meanings "
                              "(no_match, later, out_of_credits)")
        seen |= statuses


def _missing(value: Any, where: str) -> bool:
    if value not in ("fault", "null"):
        raise ConfigError(f"{where} must be fault (an answer without a mapped path is "
                          "malformed) or null (write null)")
    return bool(value == "null")


def _rate_limit_headers(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or any(v not in RATE_LIMIT_HEADERS for v in value):
        raise ConfigError(f"{where} must list some of {', '.join(RATE_LIMIT_HEADERS)}")
    return tuple(value)


def _cache(value: Any, where: str) -> float | None:
    if value is None:
        return None
    ttl_s: Any = value.get("ttl_s") if isinstance(value, dict) and set(value) == {"ttl_s"} \
        else None
    if not _number(ttl_s) or not 1 <= ttl_s <= MAX_TTL_S:
        raise ConfigError(f"{where} must be {{\"ttl_s\": seconds}} (1 to {MAX_TTL_S})")
    return float(ttl_s)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _hook(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _HOOK.match(value):
        raise ConfigError(f"{where} must be module:function (an async function)")
    load_hook(value, where)
    return value


@functools.cache
def load_hook(text: str, where: str = "hook") -> Callable[..., Any]:
    """The async function ``module:function`` names; ConfigError when it cannot be loaded."""
    module_name, _, name = text.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{where}: module {module_name} cannot be imported "
                          f"({type(error).__name__})") from None
    found = getattr(module, name, None)
    if found is None or not inspect.iscoroutinefunction(found):
        raise ConfigError(f"{where}: {text} is not an async function of {module_name}")
    hook: Callable[..., Any] = found
    return hook
