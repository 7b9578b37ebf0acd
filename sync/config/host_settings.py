"""App settings that only the Azure Functions host reads, never the code in ``sync/``.

The Bicep template sets exactly ``AZURE_SETTING_NAMES`` (what the code reads,
sync/config/settings.py) plus these; tests/infra checks both directions, so a setting cannot be
forgotten or left over.
The identity-based ``AzureWebJobsStorage__queueServiceUri``, ``__tableServiceUri`` and
``__clientId`` are not here: the code reads them too, so they are declared in
sync/config/settings.py.
"""

from __future__ import annotations

from typing import Final

from sync.config.storage_names import STORAGE_CONNECTION

HOST_SETTING_NAMES: Final[tuple[str, ...]] = (
    # Blob endpoint of the host's storage connection: the host keeps its locks, the timer's
    # schedule status (use_monitor) and its keys in blobs.
    f"{STORAGE_CONNECTION}__blobServiceUri",
    # "managedidentity": the connection authenticates with the managed identity named by
    # __clientId instead of a connection string (the account allows no shared keys).
    f"{STORAGE_CONNECTION}__credential",
)
# APPLICATIONINSIGHTS_CONNECTION_STRING and APPLICATIONINSIGHTS_AUTHENTICATION_STRING are read
# by the host and by the code (sync.telemetry.setup): they are declared in sync/config/settings.py.
