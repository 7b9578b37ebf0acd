"""Switch telemetry on: the Azure Monitor OpenTelemetry distro, authenticated with Entra ID.

``configure_telemetry`` runs once, when function_app.py is loaded. With
``APPLICATIONINSIGHTS_CONNECTION_STRING`` set it configures the distro: metrics, spans and the
records of the ``sync`` logger (``sync.events`` customEvents included) go to Application
Insights, sent with a token of the app's user-assigned managed identity (the one
``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` names, as the host uses it; the component refuses
instrumentation-key ingestion). Without it nothing is configured: the OpenTelemetry API stays
the no-op it is by default (the local stack, tests).

The Functions host keeps its own Application Insights mode (no ``"telemetryMode":
"OpenTelemetry"`` in host.json): the host's OpenTelemetry mode is a preview whose outputs cover
HTTP, Service Bus and Event Hubs triggers only, not this app's queue and timer triggers, and it
turns off the portal's log stream and invocation list. The distro's library instrumentations
are off: the Azure SDK's would trace every queue and table call of the hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from azure.core.credentials import TokenCredential
from azure.identity import ManagedIdentityCredential

from sync.config.forms import connection_string_problem
from sync.failures.errors import ConfigError

CONNECTION_SETTING: Final = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_SETTING: Final = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
LOGGER_NAME: Final = "sync"
"""The logger whose records are exported: every module's ``sync.*`` logger and the events."""

INSTRUMENTATIONS_OFF: Final = ("azure_sdk", "django", "fastapi", "flask", "psycopg2",
                               "requests", "urllib", "urllib3")

Configure = Callable[..., None]
_configured: list[bool] = []


def client_id_of(authentication: str) -> str | None:
    """The ``ClientId`` of an ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING``
    (``ClientId=<id>;Authorization=AAD``); None names the system-assigned identity."""
    for part in authentication.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "clientid" and value.strip():
            return value.strip()
    return None


def managed_identity(client_id: str | None) -> TokenCredential:
    """The credential the exporters send telemetry with."""
    return ManagedIdentityCredential(client_id=client_id)


def distro_options(connection_string: str, credential: TokenCredential) -> dict[str, Any]:
    """The keyword arguments of ``configure_azure_monitor``."""
    return {"connection_string": connection_string, "credential": credential,
            "logger_name": LOGGER_NAME,
            "instrumentation_options": {name: {"enabled": False}
                                        for name in INSTRUMENTATIONS_OFF}}


def configure_telemetry(environ: Mapping[str, str], *, configure: Configure | None = None,
                        credential: Callable[[str | None], TokenCredential] = managed_identity
                        ) -> bool:
    """Configure the distro once when a connection string is set; answers whether it did.
    A connection string the exporter cannot parse raises ConfigError naming the setting (the
    settings refuse it at load already), never the exporter's ValueError.

    ``configure`` is ``configure_azure_monitor`` unless a test passes another."""
    connection_string = environ.get(CONNECTION_SETTING, "").strip()
    if not connection_string or _configured:
        return False
    problem = connection_string_problem(CONNECTION_SETTING, connection_string)
    if problem:
        raise ConfigError(problem)
    if configure is None:
        # Imported only when used: the distro loads its exporters and instrumentations.
        from azure.monitor.opentelemetry import configure_azure_monitor  # noqa: PLC0415

        configure = configure_azure_monitor
    client_id = client_id_of(environ.get(AUTHENTICATION_SETTING, ""))
    configure(**distro_options(connection_string, credential(client_id)))
    logger = logging.getLogger(LOGGER_NAME)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)  # the structured records are the telemetry
    _configured.append(True)
    return True
