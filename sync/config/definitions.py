"""Named sync definitions: ``SYNC_DEFINITIONS``, or one ``default`` from ``SYNC_DEFINITION``.

``{"accounts": {"environment": "prod", "identities": ["sync1", "sync2"],
                "schedule": "0 0 2 * * *", "enrichment_url": "https://...",
                "enrichment_key_setting": "ENRICHMENT_API_KEY_ACCOUNTS",
                "entity_set": "accounts", ... the SYNC_DEFINITION fields ...}}``

Each definition is planned on its own schedule (or every tick of the planner's timer), with its
own checkpoint and runs, and written through the lanes of its identities in its environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from sync.config.json_setting import read_json_setting
from sync.config.lanes import (
    DEFAULT,
    Environment,
    LaneKey,
    check_name,
    default_environment,
    parse_environments,
)
from sync.config.schedule import Schedule, parse_schedule
from sync.config.table_definition import DEFAULT_DEFINITION as DEFAULT_FIELDS
from sync.config.table_definition import SyncDefinition, definition_from
from sync.failures.errors import ConfigError

KEY_SETTING: Final = "ENRICHMENT_API_KEY"
"""The app setting of the enrichment key, and the prefix of every other definition's key
setting (a Key Vault reference in Azure)."""
_KEY_SETTING: Final = re.compile(r"^ENRICHMENT_API_KEY[A-Z0-9_]{0,64}$")
_OWN_FIELDS: Final = frozenset({"environment", "identities", "schedule", "enrichment_url",
                                "enrichment_key_setting"})


@dataclass(frozen=True, slots=True)
class Definition:
    """One named sync: what it reads and writes (``table``), where, as whom, and when."""

    name: str
    table: SyncDefinition
    environment: str
    lanes: tuple[LaneKey, ...]
    """The lanes it may write through, in the order the planner deals messages to them."""
    schedule: Schedule | None = None
    """None: planned on every tick of the planner's timer."""
    enrichment_url: str | None = None
    """None: ENRICHMENT_URL."""
    enrichment_key_setting: str = KEY_SETTING


@dataclass(frozen=True, slots=True)
class Definitions:
    """Every definition of the deployment, by name."""

    items: tuple[Definition, ...]

    def __iter__(self) -> Iterator[Definition]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def first(self) -> Definition:
        return self.items[0]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.items)

    def get(self, name: str) -> Definition | None:
        return next((d for d in self.items if d.name == name), None)


def single(table: SyncDefinition, environment: Environment) -> Definitions:
    """The definitions of a single-definition deployment: ``default``, over every lane."""
    return Definitions((Definition(DEFAULT, table, environment.name, environment.lanes),))


def parse_definitions(value: str, environments: tuple[Environment, ...]) -> Definitions:
    """``SYNC_DEFINITIONS`` (JSON or ``@path``) against the environments it may name."""
    data = read_json_setting("SYNC_DEFINITIONS", value)
    if not isinstance(data, dict) or not data:
        raise ConfigError("SYNC_DEFINITIONS must be a JSON object of definitions by name")
    return Definitions(tuple(_definition(name, spec, environments)
                             for name, spec in data.items()))


def _definition(name: str, spec: Any, environments: tuple[Environment, ...]) -> Definition:
    where = f"SYNC_DEFINITIONS.{name}"
    check_name(name, where)
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be an object")
    unknown = sorted(set(spec) - set(DEFAULT_FIELDS) - _OWN_FIELDS)
    if unknown:
        raise ConfigError(f"{where} has unknown fields: {', '.join(unknown)}")
    table = definition_from({**DEFAULT_FIELDS, **{k: v for k, v in spec.items()
                                                  if k not in _OWN_FIELDS}}, where)
    environment = _environment(spec, environments, where)
    schedule = spec.get("schedule")
    if schedule is not None and not isinstance(schedule, str):
        raise ConfigError(f"{where}.schedule must be six NCRONTAB fields")
    return Definition(name, table, environment.name, _lanes(spec, environment, where),
                      parse_schedule(schedule, f"{where}.schedule") if schedule else None,
                      _enrichment_url(spec, where), _key_setting(spec, where))


def _environment(spec: dict[str, Any], environments: tuple[Environment, ...],
                 where: str) -> Environment:
    known = ", ".join(e.name for e in environments)
    if "environment" not in spec:
        if len(environments) == 1:
            return environments[0]
        raise ConfigError(f"{where}.environment is required: one of {known}")
    found = next((e for e in environments if e.name == spec["environment"]), None)
    if found is None:
        raise ConfigError(f"{where}.environment must name an environment of "
                          f"SYNC_ENVIRONMENTS ({known}), got {spec['environment']!r}")
    return found


def _lanes(spec: dict[str, Any], environment: Environment, where: str) -> tuple[LaneKey, ...]:
    names = spec.get("identities")
    if names is None:
        return environment.lanes
    if not isinstance(names, list) or not names or len(set(map(str, names))) != len(names):
        raise ConfigError(f"{where}.identities must be a non-empty list of identity names")
    for name in names:
        if not isinstance(name, str) or environment.identity(name) is None:
            known = ", ".join(i.name for i in environment.identities)
            raise ConfigError(f"{where}.identities: {name!r} is not an identity of "
                              f"environment {environment.name} ({known})")
    return tuple(LaneKey(environment.name, name) for name in names)


def _enrichment_url(spec: dict[str, Any], where: str) -> str | None:
    url = spec.get("enrichment_url")
    if url is None:
        return None
    if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
        raise ConfigError(f"{where}.enrichment_url must be an http(s) URL")
    return url.rstrip("/")


def _key_setting(spec: dict[str, Any], where: str) -> str:
    name = spec.get("enrichment_key_setting", KEY_SETTING)
    if not isinstance(name, str) or not _KEY_SETTING.match(name):
        raise ConfigError(f"{where}.enrichment_key_setting must be the name of an app setting "
                          f"that starts with {KEY_SETTING} (A-Z 0-9 _)")
    return name


def definitions_from(environ: Mapping[str, str]) -> Definitions:
    """The deployment's definitions as its settings name them, for tools that run beside it
    (a producer, `sync pause`): SYNC_ENVIRONMENTS and SYNC_DEFINITIONS, or the single
    ``default``. Only names are checked against each other; URLs and keys are not needed."""
    environments_value = (environ.get("SYNC_ENVIRONMENTS") or "").strip()
    environments = (parse_environments(environments_value) if environments_value
                    else (default_environment("http://127.0.0.1", None),))
    value = (environ.get("SYNC_DEFINITIONS") or "").strip()
    if value:
        return parse_definitions(value, environments)
    return single(SyncDefinition(), environments[0])


def lane_of(definition: Definition, text: str) -> LaneKey:
    """``ENV/IDENTITY`` as one of the definition's lanes; ConfigError naming them when not."""
    environment, _, identity = text.partition("/")
    lane = LaneKey(environment, identity)
    if lane not in definition.lanes:
        known = ", ".join(map(str, definition.lanes))
        raise ConfigError(f"lane {text!r} is not a lane of definition {definition.name} "
                          f"({known})")
    return lane
