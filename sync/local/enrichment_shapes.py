"""``python -m sync local --enrichment-shape NAME``: the enrichment emulator in a shape and the
hosts' definition for it (``examples/enrichment/NAME.json``), and the enrichment cache carried
from one local run to the next (``--enrichment-cache FILE``: each run starts a fresh Azurite,
as Azure keeps one storage account from night to night).

A shape whose spec authenticates with a managed identity gets its tokens from the emulator's
managed identity endpoint: the hosts' ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER`` are set as
Azure sets them on a function app, so azure-identity's ``ManagedIdentityCredential`` asks it.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any, Final

from azure.data.tables import UpdateMode

from sync.config.json_setting import APP_ROOT
from sync.config.settings import StorageSettings
from sync.config.storage_names import ENRICHMENT_CACHE_TABLE
from sync.config.table_definition import parse_definition
from sync.local.emulators.enrichment import SHAPES
from sync.local.emulators.enrichment.state import IDENTITY_PATH
from sync.state.storage import table_client

EXAMPLES_DIR: Final = APP_ROOT / "examples" / "enrichment"
TODAY: Final = "today"
"""Today's API: the default definition, no example file."""
CACHE_FIELDS: Final = ("PartitionKey", "RowKey", "Columns", "NoMatch", "ExpiresAt")


def example_path(shape: str) -> Path:
    return EXAMPLES_DIR / f"{shape}.json"


def shape_definition(shape: str) -> str | None:
    """The definition (JSON) that asks the shape's API; None for today's."""
    if shape == TODAY:
        return None
    text = example_path(shape).read_text()
    parse_definition(text)  # the shipped example must load
    return text


def uses_identity(shape: str) -> bool:
    text = shape_definition(shape)
    return text is not None and parse_definition(text).enrichment_spec.auth.type == \
        "managed_identity"


def shape_setup(shape: str) -> tuple[list[str], dict[str, str]]:
    """The emulator's options for ``shape``, and what the hosts' environment gets (the
    definition, the managed identity endpoint's header; its URL once the emulator listens)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown enrichment shape {shape!r}; one of {', '.join(SHAPES)}")
    args, env = ["--shape", shape], {}
    definition = shape_definition(shape)
    if definition is not None:
        env["SYNC_DEFINITION"] = json.dumps(json.loads(definition))
    if uses_identity(shape):
        header = secrets.token_hex(16)
        args += ["--identity-header", header]
        env["IDENTITY_HEADER"] = header
    return args, env


def identity_endpoint(env: dict[str, str], enrichment_url: str) -> dict[str, str]:
    """``IDENTITY_ENDPOINT`` beside ``IDENTITY_HEADER`` when the shape needs one."""
    return {"IDENTITY_ENDPOINT": f"{enrichment_url}{IDENTITY_PATH}"} \
        if "IDENTITY_HEADER" in env else {}


def read_cache_file(path: Path) -> list[dict[str, Any]]:
    """The cache rows an earlier run saved (none before the first)."""
    if not path.exists():
        return []
    rows: list[dict[str, Any]] = json.loads(path.read_text())
    return rows


def write_cache_file(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows))


async def restore_cache(storage: StorageSettings, rows: list[dict[str, Any]]) -> int:
    """Put saved rows back in the cache table; how many."""
    async with table_client(storage, ENRICHMENT_CACHE_TABLE, None) as table:
        for row in rows:
            await table.upsert_entity({k: row[k] for k in CACHE_FIELDS if k in row},
                                      mode=UpdateMode.REPLACE)
    return len(rows)


async def cache_rows(storage: StorageSettings) -> list[dict[str, Any]]:
    """The cache table's rows, to save for the next run."""
    async with table_client(storage, ENRICHMENT_CACHE_TABLE, None) as table:
        return [{k: row.get(k) for k in CACHE_FIELDS} async for row in table.list_entities()]
