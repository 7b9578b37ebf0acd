"""The forms of settings whose values go on the wire as they are: checked when the settings
load, so a bad one stops the app before anything starts instead of failing deep inside a
request or the telemetry exporter. Each check answers the problem in words, or "" when there
is none; none repeats a secret's value.
"""

from __future__ import annotations

import re
import uuid
from typing import Final

_HEADER_CHARS: Final = re.compile(r"[\x21-\x7e]+")
"""What a token or key in an HTTP header may hold: visible ASCII, no space, no line break."""
_LOWER_GUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
"""An instrumentation key as the exporter accepts it (lower-case only)."""


def header_value_problem(name: str, value: str) -> str:
    """A setting sent in an HTTP header (a bearer token, an API key): visible ASCII only."""
    if _HEADER_CHARS.fullmatch(value):
        return ""
    position, char = next((n, c) for n, c in enumerate(value, 1)
                          if not _HEADER_CHARS.fullmatch(c))
    what = ("a line break" if char in "\r\n" else "a space" if char.isspace() else
            "a control character" if ord(char) < 0x20 or ord(char) == 0x7f else
            "a character outside ASCII")
    return (f"{name} holds {what} at character {position}: it travels in an HTTP header, "
            "which carries only visible ASCII (no space, no line break)")


def connection_string_problem(name: str, value: str) -> str:
    """An Application Insights connection string as the exporter parses it:
    ``InstrumentationKey=<guid>;IngestionEndpoint=https://...`` (``key=value`` pairs)."""
    pairs = _pairs(value)
    if pairs is None:
        return (f"{name} must be key=value pairs separated by ';' (copy it from the "
                "Application Insights resource), e.g. InstrumentationKey=<guid>;"
                "IngestionEndpoint=https://<region>.in.applicationinsights.azure.com/")
    if not _LOWER_GUID.fullmatch(pairs.get("instrumentationkey", "")):
        return f"{name} needs InstrumentationKey=<a GUID in lower case>"
    if pairs.get("authorization", "ikey").lower() != "ikey":
        return f"{name}: Authorization must be ikey (Entra ID is set apart, in " \
               "APPLICATIONINSIGHTS_AUTHENTICATION_STRING)"
    bad_url = [key for key in ("ingestionendpoint", "liveendpoint")
               if key in pairs and not pairs[key].startswith("https://")]
    return f"{name}: {bad_url[0]} must be an https:// URL" if bad_url else ""


def authentication_string_problem(name: str, value: str) -> str:
    """``Authorization=AAD`` with an optional ``ClientId=<guid>`` (a user-assigned identity)."""
    pairs = _pairs(value)
    if pairs is None or pairs.get("authorization", "").lower() != "aad" or \
            set(pairs) - {"authorization", "clientid"}:
        return f"{name} must be Authorization=AAD or ClientId=<client id>;Authorization=AAD"
    client_id = pairs.get("clientid")
    if client_id is not None and not _is_guid(client_id):
        return f"{name}: ClientId must be a client id (a GUID)"
    return ""


def _pairs(value: str) -> dict[str, str] | None:
    """``key=value;key=value`` by lower-case key, exactly as the exporter splits it (each part
    one ``=``, no empty part); None when it does not split so."""
    parts = [part.split("=") for part in value.split(";")]
    if not all(len(part) == 2 and part[0].strip() for part in parts):
        return None
    return {key.strip().lower(): text.strip() for key, text in parts}


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
