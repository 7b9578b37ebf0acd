"""The app's settings: one frozen object, parsed once from the environment at start-up.

Every name the code reads is declared in ``SETTINGS`` below. The settings table in
docs/settings.md and the Bicep template are checked against that one list, so a setting cannot
drift out of either.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeVar
from urllib.parse import urlsplit

from sync.config.definitions import KEY_SETTING, Definitions, parse_definitions, single
from sync.config.forms import (
    authentication_string_problem,
    connection_string_problem,
    header_value_problem,
)
from sync.config.lanes import Environment, default_environment, parse_environments
from sync.config.schedule import parse_schedule
from sync.config.storage_names import STORAGE_CONNECTION
from sync.config.table_definition import SyncDefinition, parse_definition
from sync.failures.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One app setting: its name, its default (None when required or optional) and its meaning."""

    name: str
    default: str | None
    doc: str
    required: bool = False
    secret: bool = False
    local_only: bool = False
    """Read only on the local stack; never set in Azure (the Bicep test checks it is absent)."""


N = TypeVar("N", int, float)
T = TypeVar("T")

_IDENTITY_PREFIX: Final = f"{STORAGE_CONNECTION}__"

SETTINGS: Final[tuple[SettingSpec, ...]] = (
    SettingSpec(STORAGE_CONNECTION, None,
                "Storage connection string (local stack, Azurite). In Azure leave it unset and "
                "use the identity-based settings below.", secret=True, local_only=True),
    SettingSpec(f"{_IDENTITY_PREFIX}queueServiceUri", None,
                "Queue endpoint for identity-based storage access."),
    SettingSpec(f"{_IDENTITY_PREFIX}tableServiceUri", None,
                "Table endpoint for identity-based storage access."),
    SettingSpec(f"{_IDENTITY_PREFIX}clientId", None,
                "Client id of the user-assigned managed identity used for storage."),
    SettingSpec("SYNC_SCHEDULE", "0 0 2 * * *",
                "Six-field NCRONTAB schedule of the planner (read by the host binding)."),
    SettingSpec("DATAVERSE_URL", None,
                "Environment URL, e.g. https://contoso.crm.dynamics.com (required unless "
                "SYNC_ENVIRONMENTS is set)."),
    SettingSpec("DATAVERSE_CLIENT_ID", None,
                "Client id of the managed identity that is the Dataverse application user; "
                "unset uses DefaultAzureCredential."),
    SettingSpec("DATAVERSE_STATIC_TOKEN", None,
                "Bearer token for the local emulators only; refused unless DATAVERSE_URL is on "
                "loopback.", secret=True, local_only=True),
    SettingSpec("DATAVERSE_TIMEOUT_S", "30", "Timeout of one Dataverse request, in seconds."),
    SettingSpec("DATAVERSE_MAX_CONCURRENCY", "52",
                "Cap on one instance's concurrent Dataverse requests; the instance's share of "
                "the DOP hint decides below it."),
    SettingSpec("DATAVERSE_KEEP_AFFINITY", "false",
                "true keeps the ARRAffinity cookie (pins to one web server); false spreads "
                "requests over every server, as the throughput guidance says."),
    SettingSpec("ENRICHMENT_URL", None, "Base URL of the enrichment API.", required=True),
    SettingSpec("ENRICHMENT_API_KEY", None,
                "Key of the enrichment API (a Key Vault reference in Azure).",
                required=True, secret=True),
    SettingSpec("ENRICHMENT_TIMEOUT_S", "10", "Timeout of one enrichment call, in seconds."),
    SettingSpec("SYNC_DEFINITION", "",
                "What to sync, as JSON or @path to a JSON file in the app: table, key, input "
                "column, filter, mapping, change tracking. Empty: accounts from their website "
                "(see below)."),
    SettingSpec("SYNC_ENVIRONMENTS", "",
                "Several environments and identities (lanes), as JSON or @path: environments "
                "by name, each with url, identities (name: client id or null) and dop_scope. "
                "Empty: one environment from DATAVERSE_URL and DATAVERSE_CLIENT_ID (see Lanes "
                "below)."),
    SettingSpec("SYNC_DEFINITIONS", "",
                "Several named definitions, as JSON or @path: each the SYNC_DEFINITION fields "
                "plus environment, identities, schedule, enrichment_url and "
                "enrichment_key_setting. Empty: one definition named default from "
                "SYNC_DEFINITION (see Lanes below)."),
    SettingSpec("SYNC_PAGE_SIZE", "5000", "Records per page read (Prefer: odata.maxpagesize)."),
    SettingSpec("SYNC_BATCH_SIZE", "100", "Records per batch message."),
    SettingSpec("SYNC_PLAN_BUDGET_S", "120",
                "Time one planner invocation spends before handing the rest of the plan to a "
                "continuation message on the plan queue."),
    SettingSpec("SYNC_MAX_RETRIES", "3",
                "Retries inside one invocation after a service fault (5xx, timeout, reset, "
                "malformed answer); when they run out the records go back on the queue with a "
                "growing delay, never to dead letters."),
    SettingSpec("SYNC_CIRCUIT_THRESHOLD", "8",
                "Consecutive service faults of one dependency that open its circuit for the "
                "whole cluster (a configuration fault opens it at once)."),
    SettingSpec("SYNC_CIRCUIT_OPEN_S", "5",
                "How long a circuit first stays open; each further opening doubles it "
                "(jittered), and records left by a service fault wait as long."),
    SettingSpec("SYNC_CIRCUIT_MAX_OPEN_S", "300",
                "The longest a circuit stays open, and the longest records wait, before a "
                "probe is sent again."),
    SettingSpec("SYNC_RECORD_PROBES", "3",
                "Deliveries on which a record meets an ambiguous fault (a 403, a plug-in's "
                "500) while its siblings succeed before it is dead-lettered as a suspected "
                "record fault."),
    SettingSpec("SYNC_WRITE_MODE", "bulk",
                "bulk (UpdateMultiple, the fastest: see the benchmark), batch ($batch with "
                "continue-on-error) or single (one PATCH per record, in parallel; for tables "
                "without UpdateMultiple)."),
    SettingSpec("SYNC_BATCH_OPERATIONS", "10",
                "Operations per $batch request in batch mode (the guidance starts at 10)."),
    SettingSpec("SYNC_BULK_TARGETS", "100",
                "Targets per UpdateMultiple request in bulk mode (the guidance starts at 100)."),
    SettingSpec("SYNC_MAX_WAIT_S", "2",
                "Longest wait inside an invocation for the throttle gate; longer waits send "
                "the unfinished records back to the queue instead."),
    SettingSpec("SYNC_STATE_REFRESH_S", "1",
                "How often an instance reads the shared state (hint, gate, leases)."),
    SettingSpec("SYNC_PAUSE_DELAY_S", "60",
                "How long records of a paused definition or run (or waiting for a canary) stay "
                "invisible on the queue before a worker looks at the flag again."),
    SettingSpec("SYNC_LEASE_S", "15",
                "Lifetime of an instance's lease; a busy instance renews it every refresh."),
    SettingSpec("SYNC_QUEUE_METRICS_SCHEDULE", "0 * * * * *",
                "Six-field NCRONTAB schedule of the timer that records each queue's depth and "
                "oldest message's age (read by the host binding)."),
    SettingSpec("APPLICATIONINSIGHTS_CONNECTION_STRING", None,
                "Application Insights connection string: where the host and the app's "
                "OpenTelemetry metrics, spans and events go. Unset: no telemetry is exported "
                "(local stack, tests)."),
    SettingSpec("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", None,
                "ClientId=<managed identity client id>;Authorization=AAD: the identity the "
                "host and the app send telemetry with (Entra ID; the component refuses "
                "instrumentation keys)."),
    SettingSpec("SYNC_DEADLETTER_RETENTION_DAYS", "30",
                "Days a dead letter or poison message (they hold personal data) is kept: the "
                "time-to-live of the queue message and the expiry of its index row."),
    SettingSpec("SYNC_ROLLBACK_RETENTION_DAYS", "14",
                "Days the values a run replaced (its before-images, personal data) are kept "
                "for `sync rollback`; older images have expired and cannot be restored."),
    SettingSpec("SYNC_STATE_RETENTION_DAYS", "30",
                "Days a run's rows (its ledger, index, canary, report and flag rows) are kept "
                "after it started; the planner's timer deletes older ones (never before the "
                "run's before-images expire)."),
    SettingSpec("SYNC_MESSAGE_DEADLINE_S", "480",
                "How long one message may run, in seconds; then no new request starts, the "
                "requests in flight finish and the unfinished records go back on the queue "
                "(reason deadline). Keep it below host.json's functionTimeout (600 s) less "
                "DATAVERSE_TIMEOUT_S, so the invocation ends before the host stops it."),
    SettingSpec("SYNC_BUG_ATTEMPTS", "3",
                "Deliveries an unexpected error (a bug) may stop a message's records before "
                "they go to the poison queue with the error's type and a hash of its trace "
                "(counted in each record's history, not by the host's dequeue count)."),
    SettingSpec("SYNC_SYSTEMATIC_RECORDS", "25",
                "Records of one definition refused with the same 4xx code and message within "
                "SYNC_SYSTEMATIC_WINDOW_S (across the cluster) at most dead-lettered before "
                "the definition's circuit opens with that reason, when they are also at least "
                "SYNC_SYSTEMATIC_SHARE of its records tried."),
    SettingSpec("SYNC_SYSTEMATIC_SHARE", "0.2",
                "The share of a definition's records tried (by one instance, within the "
                "window) that the same refusal must reach to be the definition's fault (a "
                "mapping the table refuses), not each record's."),
    SettingSpec("SYNC_SYSTEMATIC_WINDOW_S", "600",
                "The window, in seconds, over which refusals of one definition are counted."),
    SettingSpec("SYNC_CLOCK_SKEW_S", "5",
                "How far instances' clocks may differ, in seconds: an expiry written by one "
                "instance (a slot, a lease, the throttle gate) is judged by another with this "
                "much to spare; a watermark plan's mark is Dataverse's own time (its Date) "
                "less this much."),
)

WRITE_MODES: Final = ("single", "batch", "bulk")

SETTING_NAMES: Final = tuple(spec.name for spec in SETTINGS)
AZURE_SETTING_NAMES: Final = tuple(spec.name for spec in SETTINGS if not spec.local_only)
_DEFAULTS: Final = {spec.name: spec.default for spec in SETTINGS}
_DOCS: Final = {spec.name: spec.doc for spec in SETTINGS}


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """How to reach the storage account: a connection string or identity-based endpoints."""

    connection_string: str | None = field(default=None, repr=False)
    queue_url: str | None = None
    table_url: str | None = None
    client_id: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> StorageSettings:
        """The storage part of the settings alone (what a queue producer needs)."""
        return _storage(_Reader(environ))


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the app reads from its environment, validated."""

    storage: StorageSettings
    dataverse_url: str
    enrichment_url: str
    enrichment_api_key: str = field(repr=False)
    dataverse_client_id: str | None = None
    dataverse_static_token: str | None = field(default=None, repr=False)
    dataverse_timeout_s: float = 30.0
    dataverse_max_concurrency: int = 52
    keep_affinity: bool = False
    enrichment_timeout_s: float = 10.0
    environments: tuple[Environment, ...] = ()
    """Every environment and its identities; empty: one from dataverse_url (``environment``)."""
    definitions: Definitions = field(default_factory=lambda: Definitions(()))
    """Every named definition; empty: ``default`` from the SyncDefinition defaults."""
    enrichment_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The enrichment keys of the definitions by app setting name (ENRICHMENT_API_KEY...)."""
    write_mode: str = "bulk"
    batch_operations: int = 10
    bulk_targets: int = 100
    page_size: int = 5000
    batch_size: int = 100
    plan_budget_s: float = 120.0
    max_retries: int = 3
    circuit_threshold: int = 8
    circuit_open_s: float = 5.0
    circuit_max_open_s: float = 300.0
    record_probes: int = 3
    max_wait_s: float = 2.0
    state_refresh_s: float = 1.0
    lease_s: float = 15.0
    pause_delay_s: float = 60.0
    deadletter_retention_days: int = 30
    rollback_retention_days: int = 14
    state_retention_days: int = 30
    clock_skew_s: float = 5.0
    message_deadline_s: float = 480.0
    bug_attempts: int = 3
    systematic_records: int = 25
    systematic_share: float = 0.2
    systematic_window_s: float = 600.0

    def __post_init__(self) -> None:
        if not self.definitions.items:  # built in code (tests, tools): the default definition
            object.__setattr__(self, "definitions",
                               single(SyncDefinition(), self.lanes_environments[0]))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Parse and validate; raise ConfigError naming the setting at fault."""
        reader = _Reader(environ)
        settings = cls(
            storage=reader.guarded(lambda: _storage(reader), StorageSettings()),
            dataverse_url=_dataverse_url(reader),
            enrichment_url=reader.url("ENRICHMENT_URL"),
            enrichment_api_key=reader.text("ENRICHMENT_API_KEY"),
            dataverse_client_id=reader.guid("DATAVERSE_CLIENT_ID"),
            dataverse_static_token=reader.optional("DATAVERSE_STATIC_TOKEN"),
            dataverse_timeout_s=reader.number("DATAVERSE_TIMEOUT_S", low=0.1, high=600),
            dataverse_max_concurrency=reader.integer("DATAVERSE_MAX_CONCURRENCY", 1, 1024),
            enrichment_timeout_s=reader.number("ENRICHMENT_TIMEOUT_S", low=0.1, high=600),
            environments=reader.guarded(lambda: _environments(reader), ()),
            write_mode=reader.choice("SYNC_WRITE_MODE", WRITE_MODES),
            batch_operations=reader.integer("SYNC_BATCH_OPERATIONS", 1, 1000),
            bulk_targets=reader.integer("SYNC_BULK_TARGETS", 1, 1000),
            page_size=reader.integer("SYNC_PAGE_SIZE", 1, 5000),
            batch_size=reader.integer("SYNC_BATCH_SIZE", 1, 1000),
            plan_budget_s=reader.number("SYNC_PLAN_BUDGET_S", low=0, high=540),
            max_retries=reader.integer("SYNC_MAX_RETRIES", 0, 10),
            circuit_threshold=reader.integer("SYNC_CIRCUIT_THRESHOLD", 1, 1000),
            circuit_open_s=reader.number("SYNC_CIRCUIT_OPEN_S", low=1, high=3600),
            circuit_max_open_s=reader.number("SYNC_CIRCUIT_MAX_OPEN_S", low=1, high=86400),
            record_probes=reader.integer("SYNC_RECORD_PROBES", 1, 100),
            keep_affinity=reader.flag("DATAVERSE_KEEP_AFFINITY"),
            max_wait_s=reader.number("SYNC_MAX_WAIT_S", low=0, high=60),
            state_refresh_s=reader.number("SYNC_STATE_REFRESH_S", low=0.1, high=60),
            lease_s=reader.number("SYNC_LEASE_S", low=1, high=600),
            pause_delay_s=reader.number("SYNC_PAUSE_DELAY_S", low=1, high=86400),
            deadletter_retention_days=reader.integer("SYNC_DEADLETTER_RETENTION_DAYS", 1, 3650),
            rollback_retention_days=reader.integer("SYNC_ROLLBACK_RETENTION_DAYS", 1, 365),
            state_retention_days=reader.integer("SYNC_STATE_RETENTION_DAYS", 1, 3650),
            clock_skew_s=reader.number("SYNC_CLOCK_SKEW_S", low=0, high=300),
            message_deadline_s=reader.number("SYNC_MESSAGE_DEADLINE_S", low=1, high=3600),
            bug_attempts=reader.integer("SYNC_BUG_ATTEMPTS", 1, 100),
            systematic_records=reader.integer("SYNC_SYSTEMATIC_RECORDS", 1, 100_000),
            systematic_share=reader.number("SYNC_SYSTEMATIC_SHARE", low=0.01, high=1),
            systematic_window_s=reader.number("SYNC_SYSTEMATIC_WINDOW_S", low=1, high=86_400),
        )
        settings = _with_definitions(settings, reader, environ)
        for schedule in ("SYNC_SCHEDULE", "SYNC_QUEUE_METRICS_SCHEDULE"):
            _check_schedule_setting(reader, schedule)
        if settings.lease_s <= 2 * settings.state_refresh_s:
            reader.problems.append("SYNC_LEASE_S must be more than twice SYNC_STATE_REFRESH_S, "
                                   "so a busy instance renews its lease before it lapses")
        if settings.circuit_max_open_s < settings.circuit_open_s:
            reader.problems.append("SYNC_CIRCUIT_MAX_OPEN_S must be at least "
                                   "SYNC_CIRCUIT_OPEN_S")
        reader.guarded(lambda: _refuse_static_token_off_loopback(settings), None)
        _check_forms(reader, settings)
        if reader.problems:
            raise ConfigError("; ".join(reader.problems), tuple(reader.problems))
        return settings


    def environment(self, name: str) -> Environment | None:
        """The environment of that name (the lanes' URLs and identities)."""
        return next((e for e in self.lanes_environments if e.name == name), None)

    @property
    def lanes_environments(self) -> tuple[Environment, ...]:
        """SYNC_ENVIRONMENTS, or the one environment of DATAVERSE_URL."""
        return self.environments or (default_environment(self.dataverse_url,
                                                         self.dataverse_client_id),)

    def enrichment_key(self, setting: str) -> str:
        """The enrichment key a definition names (its app setting's value at start-up)."""
        return self.enrichment_keys.get(setting, "")


def _dataverse_url(reader: _Reader) -> str:
    if reader.optional("SYNC_ENVIRONMENTS"):
        return reader.optional("DATAVERSE_URL") or ""
    return reader.url("DATAVERSE_URL")


def _environments(reader: _Reader) -> tuple[Environment, ...]:
    value = reader.optional("SYNC_ENVIRONMENTS")
    return parse_environments(value) if value else ()


def _with_definitions(settings: Settings, reader: _Reader,
                      environ: Mapping[str, str]) -> Settings:
    """The settings with their definitions and the enrichment keys those name."""
    definitions = reader.guarded(lambda: _definitions(settings, reader), None)
    if definitions is None:
        return settings
    keys = {KEY_SETTING: settings.enrichment_api_key}
    for definition in definitions:
        name = definition.enrichment_key_setting
        value = (environ.get(name) or "").strip()
        if name != KEY_SETTING and not value:
            reader.problems.append(f"{name} is required: the enrichment key of definition "
                                   f"{definition.name}")
        keys.setdefault(name, value)
    return dataclasses.replace(settings, definitions=definitions, enrichment_keys=keys)


def _definitions(settings: Settings, reader: _Reader) -> Definitions:
    value, table = reader.optional("SYNC_DEFINITIONS"), reader.optional("SYNC_DEFINITION")
    if value and table:
        raise ConfigError("set SYNC_DEFINITION (one definition) or SYNC_DEFINITIONS (several), "
                          "not both")
    environments = settings.lanes_environments
    if value:
        return parse_definitions(value, environments)
    if len(environments) != 1:
        raise ConfigError("SYNC_ENVIRONMENTS names several environments: set "
                          "SYNC_DEFINITIONS to say which definition syncs which")
    return single(parse_definition(table), environments[0])


_FORMS: Final = (("DATAVERSE_STATIC_TOKEN", header_value_problem),
                  ("APPLICATIONINSIGHTS_CONNECTION_STRING", connection_string_problem),
                  ("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", authentication_string_problem))
"""Settings whose values go on the wire as they are, and the check of each one's form."""


def _check_forms(reader: _Reader, settings: Settings) -> None:
    """Note every setting of the wrong form: those of ``_FORMS`` and every enrichment key
    (sent in a header), so nothing starts with a value only the wire would refuse."""
    for name, problem_of in _FORMS:
        reader.form(name, problem_of)
    for name, key in settings.enrichment_keys.items():
        if key:
            reader.note(header_value_problem(name, key))


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is localhost or a loopback address."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse_static_token_off_loopback(settings: Settings) -> None:
    urls = [e.url for e in settings.lanes_environments]
    if settings.dataverse_static_token and not all(map(is_loopback_url, urls)):
        raise ConfigError("DATAVERSE_STATIC_TOKEN is only accepted for a loopback DATAVERSE_URL "
                          "(the local emulators); in Azure use a managed identity")


def _check_schedule_setting(reader: _Reader, name: str) -> None:
    reader.guarded(lambda: _check_schedule(name, reader.text(name)), None)


def _check_schedule(name: str, schedule: str) -> None:
    """A timer's schedule, read as the host reads it (sync.config.schedule): a value the host
    would refuse, or a schedule that never occurs, fails the app at load."""
    parse_schedule(schedule, name)


def _storage(reader: _Reader) -> StorageSettings:
    connection_string = reader.optional(STORAGE_CONNECTION)
    if connection_string:
        return StorageSettings(connection_string=connection_string)
    queue_url = reader.optional(f"{_IDENTITY_PREFIX}queueServiceUri")
    table_url = reader.optional(f"{_IDENTITY_PREFIX}tableServiceUri")
    if not (queue_url and table_url):
        raise ConfigError(f"set {STORAGE_CONNECTION} (a connection string) or both "
                          f"{_IDENTITY_PREFIX}queueServiceUri and "
                          f"{_IDENTITY_PREFIX}tableServiceUri")
    return StorageSettings(queue_url=queue_url, table_url=table_url,
                           client_id=reader.guid(f"{_IDENTITY_PREFIX}clientId"))


class _Reader:
    """Reads declared settings only, falling back to their declared defaults."""

    __slots__ = ("_environ", "problems")

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self.problems: list[str] = []
        """Every bad or missing setting found so far: the caller reports them all at once."""

    def guarded(self, read: Callable[[], T], fallback: T) -> T:
        """``read()``, or ``fallback`` with the problem noted (reading goes on)."""
        try:
            return read()
        except ConfigError as error:
            self.problems.extend(error.problems)
            return fallback

    def _raw(self, name: str) -> str | None:
        if name not in _DEFAULTS:
            raise KeyError(f"{name} is not declared in SETTINGS")
        value = self._environ.get(name)
        return _DEFAULTS[name] if value is None else value.strip()

    def optional(self, name: str) -> str | None:
        return self._raw(name) or None

    def note(self, problem: str) -> None:
        """Keep a problem found by a check ("" is none)."""
        if problem:
            self.problems.append(problem)

    def form(self, name: str, problem_of: Callable[[str, str], str]) -> None:
        """Check an optional setting's form when it is set."""
        value = self.optional(name)
        if value is not None:
            self.note(problem_of(name, value))

    def guid(self, name: str) -> str | None:
        """An optional client id: a GUID when set."""
        return self.guarded(lambda: self._guid(name), None)

    def _guid(self, name: str) -> str | None:
        value = self.optional(name)
        if value is not None:
            try:
                uuid.UUID(value)
            except ValueError:
                raise ConfigError(f"{name} must be a client id (a GUID such as "
                                  f"00000000-0000-0000-0000-000000000000), got {value[:60]!r}"
                                  ) from None
        return value

    def text(self, name: str, *, allow_empty: bool = False) -> str:
        return self.guarded(lambda: self._text(name, allow_empty=allow_empty), "")

    def _text(self, name: str, *, allow_empty: bool = False) -> str:
        value = self._raw(name)
        if value is None or (not value and not allow_empty):
            raise ConfigError(f"{name} is required: {_DOCS[name]}")
        return value

    def url(self, name: str) -> str:
        return self.guarded(lambda: self._url(name), "http://invalid.invalid")

    def _url(self, name: str) -> str:
        value = self._text(name).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{name} must be an http(s) URL such as https://host/path, got "
                              f"{value[:100]!r}")
        return value

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        return self.guarded(lambda: self._choice(name, allowed), allowed[0])

    def _choice(self, name: str, allowed: tuple[str, ...]) -> str:
        raw = self._text(name).lower()
        if raw not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return raw

    def flag(self, name: str) -> bool:
        return self.guarded(lambda: self._flag(name), False)

    def _flag(self, name: str) -> bool:
        raw = self._text(name).lower()
        if raw not in ("true", "false", "1", "0"):
            raise ConfigError(f"{name} must be true or false, got {raw!r}")
        return raw in ("true", "1")

    def number(self, name: str, *, low: float, high: float) -> float:
        return self.guarded(lambda: self._bounded(name, float, "a number", low, high), low)

    def integer(self, name: str, low: int, high: int) -> int:
        return self.guarded(lambda: self._bounded(name, int, "an integer", low, high), low)

    def _bounded(self, name: str, parse: Callable[[str], N], kind: str, low: N, high: N) -> N:
        raw = self._text(name)
        try:
            value = parse(raw)
        except ValueError:
            raise ConfigError(f"{name} must be {kind}, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
        return value
