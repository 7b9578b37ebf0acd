"""Environments and identities: ``SYNC_ENVIRONMENTS``, or one ``default`` lane from the
single-environment settings.

``{"prod": {"url": "https://contoso.crm.dynamics.com",
            "identities": {"sync1": "<client id>", "sync2": null},
            "dop_scope": "environment"}}``

An identity's value is the client id of one of the app's user-assigned managed identities, or
null for DefaultAzureCredential (the local stack: its static token). ``dop_scope`` says whose
budget ``x-ms-dop-hint`` is: the docs do not say whether it is per environment or per identity;
``environment`` (the default) is the assumption that cannot overload the service.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from sync.config.json_setting import read_json_setting
from sync.failures.errors import ConfigError

NAME: Final = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
"""An environment's or identity's name: it keys rows in Table Storage and travels in messages."""
DEFAULT: Final = "default"
DOP_SCOPES: Final = ("environment", "identity")


@dataclass(frozen=True, slots=True, order=True)
class LaneKey:
    """Which lane: an identity of an environment."""

    environment: str
    identity: str

    def __str__(self) -> str:
        return f"{self.environment}/{self.identity}"

    @property
    def wire(self) -> tuple[str, str]:
        """As a message names it: (environment, identity)."""
        return (self.environment, self.identity)

    @property
    def is_default(self) -> bool:
        """The single-environment deployment's lane: its cluster rows keep their old keys."""
        return self.environment == DEFAULT and self.identity == DEFAULT


DEFAULT_LANE: Final = LaneKey(DEFAULT, DEFAULT)


def identity_token(token: str, identity: str) -> str:
    """The static token an identity sends on the local stack: ``default`` the token as set,
    any other ``<token>-<identity>``, so the emulator sees each identity as its own user."""
    return token if identity == DEFAULT else f"{token}-{identity}"


@dataclass(frozen=True, slots=True)
class Identity:
    """One application user of an environment: the managed identity it signs in as."""

    name: str
    client_id: str | None


@dataclass(frozen=True, slots=True)
class Environment:
    """One Dataverse environment and the identities that may write to it."""

    name: str
    url: str
    identities: tuple[Identity, ...]
    dop_scope: str = "environment"

    @property
    def lanes(self) -> tuple[LaneKey, ...]:
        return tuple(LaneKey(self.name, identity.name) for identity in self.identities)

    def identity(self, name: str) -> Identity | None:
        return next((found for found in self.identities if found.name == name), None)


def default_environment(url: str, client_id: str | None) -> Environment:
    """The environment of the single-environment settings (DATAVERSE_URL, DATAVERSE_CLIENT_ID)."""
    return Environment(DEFAULT, url, (Identity(DEFAULT, client_id),))


def parse_environments(value: str) -> tuple[Environment, ...]:
    """``SYNC_ENVIRONMENTS``: JSON or ``@path``; ConfigError naming the part at fault."""
    data = read_json_setting("SYNC_ENVIRONMENTS", value)
    if not isinstance(data, dict) or not data:
        raise ConfigError("SYNC_ENVIRONMENTS must be a JSON object of environments by name")
    return tuple(_environment(name, spec) for name, spec in data.items())


def _environment(name: str, spec: Any) -> Environment:
    where = f"SYNC_ENVIRONMENTS.{name}"
    check_name(name, where)
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be an object with url and identities")
    unknown = sorted(set(spec) - {"url", "identities", "dop_scope"})
    if unknown:
        raise ConfigError(f"{where} has unknown fields: {', '.join(unknown)}")
    url = spec.get("url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}.url must be an http(s) URL such as "
                          "https://contoso.crm.dynamics.com")
    scope = spec.get("dop_scope", "environment")
    if scope not in DOP_SCOPES:
        raise ConfigError(f"{where}.dop_scope must be one of {', '.join(DOP_SCOPES)}")
    return Environment(name, str(url).rstrip("/"), _identities(spec.get("identities"), where),
                       str(scope))


def _identities(value: Any, where: str) -> tuple[Identity, ...]:
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"{where}.identities must map identity names to client ids "
                          "(GUIDs) or null")
    found = []
    for name, client_id in value.items():
        check_name(name, f"{where}.identities.{name}")
        if client_id is not None:
            try:
                uuid.UUID(str(client_id))
            except ValueError:
                raise ConfigError(f"{where}.identities.{name} must be a client id (a GUID) or "
                                  "null") from None
        found.append(Identity(name, None if client_id is None else str(client_id)))
    return tuple(found)


def check_name(name: Any, where: str) -> None:
    """ConfigError unless ``name`` is a lane or definition name."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"{where}: names are 1-32 characters of a-z 0-9 -, starting with a "
                          "letter")
