"""Named events: a log record that Application Insights stores as a customEvent.

The Azure Monitor exporter turns a log record carrying ``microsoft.custom_event.name`` into a
customEvent of that name with the record's other attributes; without telemetry configured the
record is an ordinary structured log line.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final

EVENT_NAME_ATTRIBUTE: Final = "microsoft.custom_event.name"
LOGGER: Final = logging.getLogger("sync.events")

Attribute = str | bool | int | float


def emit(name: str, attributes: Mapping[str, Attribute]) -> None:
    """Emit the event ``name`` with ``attributes`` (names from ``sync.telemetry.names``)."""
    LOGGER.info(name, extra={EVENT_NAME_ATTRIBUTE: name, **attributes})
