"""The deployment as its hosts run it: each definition, its environment and lanes, published to
the state table so that operator commands check names against what the workers read, not
against the settings of the operator's own shell.

Rows: partition ``deployment``, one per definition (RowKey ``definition:<name>``) with its
environment, the environment's URL, its lanes (``env/identity``), its schedule, when it was
published and by which host.

Owner and lifetime: the hosts. Every host publishes its definitions when its clients start (an
app setting change restarts every host, so a change is published by the first host that starts
with it), replacing the rows, and deletes the rows of definitions it does not run: a definition
removed from the settings loses its row at the next start. The rows are as many as the
definitions, whatever the number of hosts or nights.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from sync.config.definitions import Definitions
from sync.config.lanes import Environment

logger = logging.getLogger(__name__)

DEPLOYMENT_PARTITION: Final = "deployment"
DEFINITION_PREFIX: Final = "definition:"


def host_name() -> str:
    """This host process as operators see it in acknowledgements: ``<machine>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Published:
    """One definition as a host published it."""

    name: str
    environment: str
    environment_url: str
    lanes: tuple[str, ...]
    schedule: str = ""
    published_at_s: float = 0.0
    host: str = ""


def published_of(definitions: Definitions, environments: tuple[Environment, ...], *,
                 host: str, now_s: float) -> list[Published]:
    """What a host running these definitions publishes."""
    urls = {e.name: e.url for e in environments}
    return [Published(d.name, d.environment, urls.get(d.environment, ""),
                      tuple(map(str, d.lanes)), d.schedule.text if d.schedule else "",
                      now_s, host) for d in definitions]


def entity_of(item: Published) -> dict[str, Any]:
    return {"PartitionKey": DEPLOYMENT_PARTITION, "RowKey": DEFINITION_PREFIX + item.name,
            "Environment": item.environment, "EnvironmentUrl": item.environment_url,
            "Lanes": json.dumps(list(item.lanes)), "Schedule": item.schedule,
            "PublishedAt": item.published_at_s, "Host": item.host}


def from_entity(row: Mapping[str, Any]) -> Published:
    return Published(name=str(row["RowKey"]).removeprefix(DEFINITION_PREFIX),
                     environment=str(row.get("Environment", "")),
                     environment_url=str(row.get("EnvironmentUrl", "")),
                     lanes=tuple(str(lane) for lane in json.loads(row.get("Lanes") or "[]")),
                     schedule=str(row.get("Schedule", "")),
                     published_at_s=float(row.get("PublishedAt", 0.0)),
                     host=str(row.get("Host", "")))


async def publish(state: TableClient, items: list[Published]) -> None:
    """Replace the rows of these definitions and delete those of any other."""
    for item in items:
        await state.upsert_entity(entity_of(item), mode=UpdateMode.REPLACE)
    kept = {item.name for item in items}
    for found in await read_published(state):
        if found.name not in kept:
            try:
                await state.delete_entity(DEPLOYMENT_PARTITION, DEFINITION_PREFIX + found.name)
            except ResourceNotFoundError:  # another host deleted it first
                continue


async def publish_quietly(state: TableClient, items: list[Published]) -> bool:
    """``publish``, logged instead of raised: a host that cannot publish still works."""
    try:
        await publish(state, items)
    except AzureError as error:
        logger.warning("the deployment's definitions could not be published: %s",
                       type(error).__name__, extra={"event": "deployment_publish_failed"})
        return False
    return True


async def read_published(state: TableClient) -> list[Published]:
    """Every published definition, by name."""
    rows = state.query_entities("PartitionKey eq @partition",
                                parameters={"partition": DEPLOYMENT_PARTITION})
    found = [from_entity(row) async for row in rows
             if str(row["RowKey"]).startswith(DEFINITION_PREFIX)]
    return sorted(found, key=lambda item: item.name)
