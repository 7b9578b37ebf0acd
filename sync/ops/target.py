"""Which storage account an operator command talks to, and errors an operator can act on.

Three ways, in this order: ``--account NAME`` (Azure, signed in with ``DefaultAzureCredential``:
``az login``, a managed identity, or environment credentials), ``--local`` (the stack that
``python -m sync local --keep`` left running), or the ``AzureWebJobsStorage`` settings (a
connection string or its identity-based form), as the app itself reads them.

Settings are read the way Azure Functions Core Tools reads them (``app_settings``): the
``Values`` of ``local.settings.json`` in the current directory, each unless the environment
already sets it to something not empty.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from sync.config.settings import StorageSettings
from sync.failures.errors import ConfigError
from sync.ops.outcome import CommandError

CHECKOUT: Final = Path(__file__).resolve().parents[2]


def _local_run_dir() -> Path:
    if os.environ.get("SYNC_LOCAL_RUN_DIR"):
        return Path(os.environ["SYNC_LOCAL_RUN_DIR"])
    root = CHECKOUT if (CHECKOUT / "pyproject.toml").is_file() else Path.cwd()
    return root / ".local-run"


LOCAL_RUN_DIR: Final = _local_run_dir()
"""Where ``python -m sync local`` keeps its logs and its storage file: ``.local-run/`` in the
checkout (in the current directory for an installed ``sync``), or ``SYNC_LOCAL_RUN_DIR`` (the
tests give each stack its own, to run side by side)."""
LOCAL_TARGET_FILE: Final = LOCAL_RUN_DIR / "storage.json"
"""Where a running local stack leaves its storage connection for operator commands."""
ACCOUNT_NAME: Final = re.compile(r"[a-z0-9]{3,24}")
QUEUE_ROLE: Final = "Storage Queue Data Contributor"
TABLE_ROLE: Final = "Storage Table Data Contributor"
LOCAL_SETTINGS: Final = "local.settings.json"


class TargetError(CommandError):
    """The command cannot reach or use the storage account; the message says what to do."""


def app_settings(environ: Mapping[str, str] | None = None,
                 directory: Path | None = None) -> dict[str, str]:
    """The settings a command reads: the environment over ``local.settings.json``'s ``Values``
    (a value the environment leaves empty is taken from the file, as Core Tools does)."""
    environ = dict(os.environ if environ is None else environ)
    found = local_settings((directory or Path.cwd()) / LOCAL_SETTINGS)
    return {**found, **{name: value for name, value in environ.items()
                        if value or name not in found}}


def local_settings(path: Path) -> dict[str, str]:
    """The ``Values`` of a ``local.settings.json`` (none when there is no file)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise TargetError(f"{path} is not readable JSON ({type(error).__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("Values", {}), dict):
        raise TargetError(f"{path} must be an object with a Values object")
    if data.get("IsEncrypted"):
        raise TargetError(f"{path} is encrypted: decrypt it with `func settings decrypt`, or "
                          "export the settings instead")
    return {str(k): str(v) for k, v in data.get("Values", {}).items() if v is not None}


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """``--account`` and ``--local``; without either, the environment's settings."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--account", metavar="NAME", default=None,
                       help="the storage account in Azure, signed in with DefaultAzureCredential")
    where.add_argument("--local", action="store_true",
                       help="the local stack left running by `python -m sync local --keep`")


def storage_for(args: argparse.Namespace, environ: Mapping[str, str] | None = None,
                local_file: Path = LOCAL_TARGET_FILE) -> StorageSettings:
    """The storage the command's arguments name; ``TargetError`` when there is none."""
    if args.account is not None:
        return account_storage(args.account)
    if args.local:
        return local_storage(local_file)
    try:
        return StorageSettings.from_env(app_settings() if environ is None else environ)
    except ConfigError as error:
        raise TargetError(f"{error}; or name the account with --account NAME, or use --local "
                          "with a local stack started by `python -m sync local --keep`") from None


def account_storage(name: str) -> StorageSettings:
    """An account in Azure's public cloud, reached with the signed-in identity."""
    if not ACCOUNT_NAME.fullmatch(name):
        raise TargetError(f"{name!r} is not a storage account name (3-24 lower-case letters "
                          "and digits)")
    return StorageSettings(queue_url=f"https://{name}.queue.core.windows.net",
                           table_url=f"https://{name}.table.core.windows.net")


def local_storage(local_file: Path = LOCAL_TARGET_FILE) -> StorageSettings:
    """The running local stack's storage, from the file it wrote when it started."""
    try:
        saved = json.loads(local_file.read_text(encoding="utf-8"))
        return StorageSettings(connection_string=str(saved["connection_string"]))
    except (OSError, ValueError, KeyError, TypeError):
        raise TargetError("no local stack is running: start one with "
                          "`python -m sync local --keep` (or `make run ARGS=--keep`)") from None


def save_local_target(connection_string: str, local_file: Path = LOCAL_TARGET_FILE, *,
                      dataverse: Mapping[str, str] | None = None,
                      environments: Mapping[str, str] | None = None) -> None:
    """Leave the local stack's storage connection where operator commands find it (owner-only:
    the connection string holds the run's made-up account key), the app settings that reach
    its Dataverse emulators (``DATAVERSE_URL``, ``DATAVERSE_STATIC_TOKEN``, and
    ``SYNC_ENVIRONMENTS`` / ``SYNC_DEFINITIONS`` with several lanes) once known, and every
    environment's URL by name (``environments``)."""
    local_file.parent.mkdir(parents=True, exist_ok=True)
    local_file.touch(mode=0o600, exist_ok=True)
    saved = {"connection_string": connection_string, "dataverse": dict(dataverse or {}),
             "environments": dict(environments or {})}
    local_file.write_text(json.dumps(saved), encoding="utf-8")


def local_dataverse(local_file: Path = LOCAL_TARGET_FILE) -> dict[str, str]:
    """The running local stack's Dataverse settings, as app settings."""
    try:
        saved = json.loads(local_file.read_text(encoding="utf-8"))
        settings = {str(k): str(v) for k, v in saved["dataverse"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        settings = {}
    if not settings:
        raise TargetError("no local stack is running: start one with "
                          "`python -m sync local --keep` (or `make run ARGS=--keep`)")
    return settings


def local_environments(local_file: Path = LOCAL_TARGET_FILE) -> dict[str, str]:
    """The running local stack's Dataverse environments: name -> its emulator's URL (empty
    when no stack is running or it saved none)."""
    try:
        saved = json.loads(local_file.read_text(encoding="utf-8"))
        return {str(k): str(v) for k, v in saved["environments"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def forget_local_target(local_file: Path = LOCAL_TARGET_FILE) -> None:
    """The local stack stopped: operator commands must no longer find it."""
    local_file.unlink(missing_ok=True)


def explain(error: Exception, resource: str, role: str) -> TargetError:
    """An Azure SDK error as a sentence an operator can act on; never the connection string."""
    if isinstance(error, ClientAuthenticationError):
        return TargetError(f"not signed in to reach {resource}: run `az login`, or give this "
                           f"identity a credential ({type(error).__name__})")
    if isinstance(error, ResourceNotFoundError):
        return TargetError(f"{resource} does not exist: create the queues and tables with "
                           "`python -m sync init-storage`")
    if isinstance(error, HttpResponseError) and error.status_code == 403:
        return TargetError(f"this identity may not use {resource}: it needs the role "
                           f"'{role}' on the storage account")
    if isinstance(error, ServiceRequestError):
        return TargetError(f"cannot reach {resource}: is the account name right, and is this "
                           "machine allowed through the account's network rules?")
    return TargetError(f"{resource} answered {type(error).__name__}: "
                       f"{getattr(error, 'reason', None) or 'see the service status'}")


def saved_secrets(local_file: Path = LOCAL_TARGET_FILE) -> dict[str, str]:
    """The secrets a running local stack left for operator commands (its connection string,
    its static token), by names that say so, for ``--debug`` to redact."""
    try:
        saved = json.loads(local_file.read_text(encoding="utf-8"))
        return {"LOCAL_STACK_CONNECTION": str(saved["connection_string"]),
                "LOCAL_STACK_TOKEN": str(saved.get("dataverse", {})
                                         .get("DATAVERSE_STATIC_TOKEN", ""))}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
