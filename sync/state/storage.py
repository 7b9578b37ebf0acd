"""Queue and table clients from the storage settings: a connection string or a managed identity."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Final

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.data.tables.aio import TableClient, TableServiceClient
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from sync.config.settings import StorageSettings
from sync.config.storage_names import QUEUES, TABLES


def storage_credential(storage: StorageSettings) -> AsyncTokenCredential | None:
    """The identity credential, or None when a connection string carries the access."""
    if storage.connection_string:
        return None
    if storage.client_id:
        return ManagedIdentityCredential(client_id=storage.client_id)
    return DefaultAzureCredential()


APP_CLIENT_OPTIONS: Final[dict[str, Any]] = {"use_env_settings": False}
"""The app's own storage clients (``sync.state.stores``, the local host's listeners) take no proxy
or
credentials from the environment (HTTP(S)_PROXY, ~/.netrc), as its HTTP sessions do not:
azure-core's default looks both up in a thread for every request, a tenth of a busy host's CPU.
Operator commands, run from a workstation that may sit behind a proxy, keep the default."""


def queue_client(storage: StorageSettings, queue_name: str,
                 credential: AsyncTokenCredential | None, *,
                 options: Mapping[str, Any] | None = None) -> QueueClient:
    """A queue client that writes and reads base64 text, as the Functions host expects
    (``options``: the SDK's client options, e.g. ``APP_CLIENT_OPTIONS``)."""
    encode, decode = TextBase64EncodePolicy(), TextBase64DecodePolicy()
    extra = dict(options or {})
    if storage.connection_string:
        return QueueClient.from_connection_string(
            storage.connection_string, queue_name,
            message_encode_policy=encode, message_decode_policy=decode, **extra)
    return QueueClient(str(storage.queue_url), queue_name, credential=credential,
                       message_encode_policy=encode, message_decode_policy=decode, **extra)


def table_client(storage: StorageSettings, table_name: str,
                 credential: AsyncTokenCredential | None, *,
                 options: Mapping[str, Any] | None = None) -> TableClient:
    """A table client for ``table_name`` (``options`` as for ``queue_client``)."""
    extra = dict(options or {})
    if storage.connection_string:
        return TableClient.from_connection_string(storage.connection_string, table_name,
                                                  **extra)
    return TableClient(str(storage.table_url), table_name, credential=credential, **extra)


async def ensure_resources(storage: StorageSettings) -> None:
    """Create the app's queues and tables where missing (the Bicep creates them in Azure)."""
    credential = storage_credential(storage)
    try:
        await _ensure_queues(storage, credential)
        await _ensure_tables(storage, credential)
    finally:
        if credential is not None:
            await credential.close()


async def _ensure_queues(storage: StorageSettings,
                         credential: AsyncTokenCredential | None) -> None:
    if storage.connection_string:
        service = QueueServiceClient.from_connection_string(storage.connection_string)
    else:
        service = QueueServiceClient(str(storage.queue_url), credential=credential)
    async with service:
        for name in QUEUES:
            with contextlib.suppress(ResourceExistsError):
                await service.create_queue(name)


async def _ensure_tables(storage: StorageSettings,
                         credential: AsyncTokenCredential | None) -> None:
    if storage.connection_string:
        service = TableServiceClient.from_connection_string(storage.connection_string)
    else:
        service = TableServiceClient(str(storage.table_url), credential=credential)
    async with service:
        for name in TABLES:
            await service.create_table_if_not_exists(name)
