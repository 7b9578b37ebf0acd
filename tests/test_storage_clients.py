"""Whose storage clients honour a proxy set in the environment (Azurite): the app's never look
it up (a lookup per request costs a busy host CPU); operator commands, run from a workstation
that may sit behind one, use it."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ServiceRequestError

from sync.config.settings import StorageSettings
from sync.config.storage_names import LEDGER_TABLE
from sync.state.storage import open_stores, table_client

DEAD_PROXY = "http://127.0.0.1:9"
"""Nothing listens there: a request sent through it fails."""


async def test_the_apps_clients_ignore_a_proxy_in_the_environment(
        storage: StorageSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", DEAD_PROXY)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    stores = open_stores(storage)
    try:
        await stores.ledger.upsert_entity({"PartitionKey": "p", "RowKey": "r"})
        assert await stores.batches.get_queue_properties() is not None
    finally:
        await stores.close()


async def test_an_operators_client_goes_through_the_proxy_in_the_environment(
        storage: StorageSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", DEAD_PROXY)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with table_client(storage, LEDGER_TABLE, None) as table:
        with pytest.raises(ServiceRequestError):
            await table.upsert_entity({"PartitionKey": "p", "RowKey": "r"})
