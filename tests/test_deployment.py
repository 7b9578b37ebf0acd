"""What the hosts publish of the deployment: a row per definition, replaced at each start, and
the rows of a definition no host runs any more deleted by the first host that starts without
it."""

from __future__ import annotations

import json

from sync.config.definitions import parse_definitions
from sync.config.lanes import parse_environments
from sync.config.settings import StorageSettings
from sync.config.storage_names import STATE_TABLE
from sync.state import deployment
from sync.state.storage import table_client

ENVIRONMENTS = parse_environments(json.dumps({
    "prod": {"url": "https://contoso.crm.dynamics.com", "identities": {"a": None, "b": None}},
    "test": {"url": "https://test.crm.dynamics.com", "identities": {"a": None}}}))


def published(definitions: dict[str, dict[str, object]], host: str,
              now_s: float) -> list[deployment.Published]:
    return deployment.published_of(parse_definitions(json.dumps(definitions), ENVIRONMENTS),
                                   ENVIRONMENTS, host=host, now_s=now_s)


async def test_a_host_publishes_its_definitions_and_drops_the_others(
        storage: StorageSettings) -> None:
    first = {"accounts": {"environment": "prod", "identities": ["b", "a"],
                          "schedule": "0 0 2 * * *"},
             "contacts": {"environment": "test"}}
    async with table_client(storage, STATE_TABLE, None) as state:
        await deployment.publish(state, published(first, "old:1", 10.0))
        found = await deployment.read_published(state)
        assert [(p.name, p.environment, p.environment_url, p.lanes, p.schedule, p.host)
                for p in found] == [
            ("accounts", "prod", "https://contoso.crm.dynamics.com", ("prod/b", "prod/a"),
             "0 0 2 * * *", "old:1"),
            ("contacts", "test", "https://test.crm.dynamics.com", ("test/a",), "", "old:1")]
        await deployment.publish(state, published({"accounts": {"environment": "prod"}},
                                                  "new:2", 20.0))
        (only,) = await deployment.read_published(state)
        assert (only.name, only.lanes, only.published_at_s, only.host) == (
            "accounts", ("prod/a", "prod/b"), 20.0, "new:2")
        rows = [row async for row in state.list_entities()]
        assert len(rows) == 1, "as many rows as definitions, whatever the starts"
