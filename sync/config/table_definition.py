"""The sync definition: which table, which records, what to send the enrichment API, what to write.

Given as JSON in the ``SYNC_DEFINITION`` app setting, or as ``@path`` to a JSON file shipped with
the app; unset, it is ``DEFAULT_DEFINITION`` (accounts enriched from their website). Validated at
start-up: an error names the field at fault.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

from sync.config.canary_policy import CanaryPolicy, parse_canary
from sync.config.enrichment_paths import parse_path
from sync.config.enrichment_spec import EnrichmentSpec, default_enrichment, parse_enrichment
from sync.config.json_setting import read_json_setting
from sync.failures.errors import ConfigError

_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_ENRICHMENT_FIELDS: Final = frozenset({"employees", "country", "description", "domain"})
EDIT_POLICIES: Final = ("keep", "overwrite")
"""What a write does to a mapped column a person changed since the read: keep the person's
value, or overwrite it with the enriched one."""
BYPASS_LOGIC: Final = ("CustomSync", "CustomAsync")
"""The custom logic ``MSCRM.BypassBusinessLogicExecution`` can bypass (synchronous plug-ins and
workflows, asynchronous ones)."""

DEFAULT_DEFINITION: Final[dict[str, Any]] = {
    "entity_set": "accounts",
    "logical_name": "account",
    "key": "accountid",
    "input_column": "websiteurl",
    "filter": "",
    "mapping": {"numberofemployees": "employees", "address1_country": "country",
                "description": "description"},
    "change_tracking": True,
    "skip_own_changes": True,
    "dry_run": False,
    "canary": None,
    "edit_policy": "keep",
    "bypass_business_logic": [],
    "suppress_duplicate_detection": False,
    "bulk_etag_check": True,
    "bulk_etag_check_after_s": 30.0,
    "enrichment": None,
}
_FIELDS: Final = frozenset(DEFAULT_DEFINITION)


@dataclass(frozen=True, slots=True)
class SyncDefinition:
    """What one sync reads, enriches and writes."""

    entity_set: str = "accounts"
    logical_name: str = "account"
    key: str = "accountid"
    input_column: str = "websiteurl"
    filter: str = ""
    mapping: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_DEFINITION["mapping"]))
    change_tracking: bool = True
    skip_own_changes: bool = True
    dry_run: bool = False
    """Plan, read, enrich and compare, write nothing: a report per run (``sync.safety.dry_run``)."""
    canary: CanaryPolicy | None = None
    """Start each planned run with a few records (``sync.safety.canary``); None: no canary."""
    edit_policy: str = "keep"
    bypass_business_logic: tuple[str, ...] = ()
    """Sent as ``MSCRM.BypassBusinessLogicExecution`` on every write (needs the
    prvBypassCustomBusinessLogic privilege); empty: not sent."""
    suppress_duplicate_detection: bool = False
    """Send ``MSCRM.SuppressDuplicateDetection: true`` on every write."""
    bulk_etag_check: bool = True
    """Bulk writes (UpdateMultiple carries no ETag per target) first read the group's ETags and
    hand records that moved to the conflict path."""
    bulk_etag_check_after_s: float = 30.0
    """How old the planner's read of a bulk group may be before the group is read again: a
    younger read is its own check (its ETags are the check's), and an edit made since is
    overwritten, as one made between a check and its write is. 0: every group is read again."""
    enrichment: dict[str, Any] | None = None
    """The enrichment spec as given (``sync.config.enrichment_spec``); None: today's API."""

    @property
    def enrichment_spec(self) -> EnrichmentSpec:
        """The parsed enrichment spec (checked when the definition was loaded)."""
        return _spec(json.dumps(self.enrichment, sort_keys=True) if self.enrichment else "",
                     self.input_column)

    @property
    def extra_inputs(self) -> tuple[str, ...]:
        """Columns the enrichment reads besides the input column: read by the planner and
        carried with each record (in its ``current`` values)."""
        return tuple(c for c in self.enrichment_spec.columns
                     if c not in (self.key, self.input_column))

    @property
    def carried_columns(self) -> tuple[str, ...]:
        """The columns a record carries as read: the mapped ones, then the extra inputs."""
        return tuple(dict.fromkeys([*self.mapping, *self.extra_inputs]))

    @property
    def write_headers(self) -> dict[str, str]:
        """The bulk-job options every write carries."""
        headers: dict[str, str] = {}
        if self.bypass_business_logic:
            headers["MSCRM.BypassBusinessLogicExecution"] = ",".join(self.bypass_business_logic)
        if self.suppress_duplicate_detection:
            headers["MSCRM.SuppressDuplicateDetection"] = "true"
        return headers

    @property
    def read_columns(self) -> tuple[str, ...]:
        """The columns the planner selects: only what the workers need (the mapped columns too,
        so a worker can tell an unchanged record and keep the values it replaces)."""
        own = ("_modifiedby_value",) if self.skip_own_changes else ()
        mapped = tuple(c for c in self.carried_columns if c not in (self.key, self.input_column))
        return (self.key, self.input_column, *own, *mapped)


def parse_definition(value: str | None) -> SyncDefinition:
    """The definition from the setting's value: JSON, ``@path``, or empty for the default."""
    if not value:
        return definition_from(DEFAULT_DEFINITION)
    data = read_json_setting("SYNC_DEFINITION", value)
    if not isinstance(data, dict):
        raise ConfigError("SYNC_DEFINITION must be a JSON object")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise ConfigError(f"SYNC_DEFINITION has unknown fields: {', '.join(unknown)}")
    return definition_from({**DEFAULT_DEFINITION, **data})


def definition_from(data: dict[str, Any], where: str = "SYNC_DEFINITION") -> SyncDefinition:
    """A definition from all its fields; ConfigError naming ``where``.{field} at fault."""
    for name in ("entity_set", "logical_name", "key", "input_column"):
        if not isinstance(data[name], str) or not _IDENTIFIER.match(data[name]):
            raise ConfigError(f"{where}.{name} must be a Dataverse name")
    if not isinstance(data["filter"], str):
        raise ConfigError(f"{where}.filter must be a string (an OData $filter)")
    for name in ("change_tracking", "skip_own_changes", "dry_run",
                 "suppress_duplicate_detection", "bulk_etag_check"):
        if not isinstance(data[name], bool):
            raise ConfigError(f"{where}.{name} must be true or false")
    if data["change_tracking"] and data["filter"]:
        raise ConfigError(f"{where}: change tracking rejects $filter; set "
                          "change_tracking to false to use a filter (modifiedon watermark)")
    enrichment = data.get("enrichment")
    if enrichment is not None:
        parse_enrichment(enrichment, f"{where}.enrichment", data["input_column"])
    return SyncDefinition(entity_set=data["entity_set"], logical_name=data["logical_name"],
                          key=data["key"], input_column=data["input_column"],
                          filter=data["filter"],
                          mapping=_mapping(data["mapping"], where, paths=enrichment is not None),
                          change_tracking=data["change_tracking"],
                          skip_own_changes=data["skip_own_changes"],
                          dry_run=data["dry_run"],
                          canary=parse_canary(data["canary"]),

                          edit_policy=_edit_policy(data["edit_policy"], where),
                          bypass_business_logic=_bypass(data["bypass_business_logic"], where),
                          suppress_duplicate_detection=data["suppress_duplicate_detection"],
                          bulk_etag_check=data["bulk_etag_check"],
                          bulk_etag_check_after_s=_seconds(data["bulk_etag_check_after_s"],
                                                           f"{where}.bulk_etag_check_after_s"),
                          enrichment=enrichment)


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 3600:
        raise ConfigError(f"{where} must be a number of seconds from 0 to 3600")
    return float(value)


def _edit_policy(value: Any, where: str) -> str:
    if value not in EDIT_POLICIES:
        raise ConfigError(f"{where}.edit_policy must be one of: {', '.join(EDIT_POLICIES)}")
    return str(value)


def _bypass(value: Any, where: str) -> tuple[str, ...]:
    """A list of the custom logic to bypass; ``true`` is both kinds, ``false`` none."""
    if isinstance(value, bool):
        return BYPASS_LOGIC if value else ()
    if not isinstance(value, list) or any(item not in BYPASS_LOGIC for item in value):
        raise ConfigError(f"{where}.bypass_business_logic must be true, false or a list "
                          f"of {', '.join(BYPASS_LOGIC)}")
    return tuple(item for item in BYPASS_LOGIC if item in value)


def _mapping(value: Any, where: str, *, paths: bool = False) -> dict[str, str]:
    """Columns to the enrichment fields of today's API, or (``paths``: the definition has an
    enrichment spec) to paths into its answer."""
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where}.mapping must map Dataverse columns to enrichment "
                          "fields")
    for column, source in value.items():
        if not _IDENTIFIER.match(column):
            raise ConfigError(f"{where}.mapping: {column!r} is not a column name")
        if paths:
            parse_path(source, f"{where}.mapping.{column}")
        elif source not in _ENRICHMENT_FIELDS:
            raise ConfigError(f"{where}.mapping.{column}: {source!r} is not an "
                              f"enrichment field ({', '.join(sorted(_ENRICHMENT_FIELDS))})")
    return dict(value)


@functools.lru_cache(maxsize=64)
def _spec(text: str, input_column: str) -> EnrichmentSpec:
    """A spec parsed once per text (the definitions of a process are few and fixed)."""
    data = json.loads(text) if text else default_enrichment(input_column)
    return parse_enrichment(data, "enrichment", input_column)
