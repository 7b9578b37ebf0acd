"""Every outcome of every outbound call, classified once: the one table of the failure model.

``classify_answer`` takes what a service answered (status, headers, body) and ``where`` the
request went (``PATCH accounts``), and answers None for a success or the domain error to raise.
``classify_exception`` does the same for what the transport raised. Nothing else in the package
decides whether a failure is the record's or the service's by looking at a status code.

The decisions (status x code x dependency -> class) are listed in ``tests/test_triage.py``.
Record-scoped server errors and configuration codes below are assumptions drawn from the codes
the Web API documents; the service does not document which 5xx codes follow one record.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from typing import Any, Final

import aiohttp

from sync.failures.errors import (
    AmbiguousFault,
    ConfigFault,
    RecordFault,
    ServiceFault,
    SyncError,
    Throttled,
)

DEFAULT_RETRY_AFTER_S: Final = 5.0
"""Used when a 429 carries no readable Retry-After (the .NET ServiceClient's base delay)."""

RECORD_SCOPED_5XX_CODES: Final = frozenset({
    "0x80040265",  # ISV code aborted: a plug-in threw for this record
    "0x80040224",  # generic SQL error raised while saving one row
    "0x80044150",  # a plug-in's unexpected exception
})
"""5xx codes that can follow one record (assumption): ambiguous, scope decides."""

CONFIG_MESSAGES: Final = ("could not find a property named", "resource not found for the segment",
                          "is not a valid entity", "does not exist in the metadata")
"""Phrases of the service's answers that say a configured table or column does not exist."""

BYPASS_PRIVILEGES: Final = ("prvBypassCustomBusinessLogic", "prvBypassCustomPlugins")
"""The privileges the bulk-job option ``MSCRM.BypassBusinessLogicExecution`` needs."""
MISSING_PRIVILEGE: Final = re.compile(r"is missing (prv\w+) privilege")
"""How the service says the calling user's roles lack a privilege (``Principal user (Id=...)
is missing prvWriteAccount privilege (Id=...) on OTC=1``): configuration, since no record of
the table can succeed without it (the emulator's ``403-privilege``). A 403 about one record's
access (``SecLib::AccessCheckEx failed``: a record owned where the user may not write) and any
other 403 stay ambiguous: they can follow one record, and the scope decides."""

WRITE_METHODS: Final = frozenset({"PATCH", "POST", "PUT", "DELETE"})
CHANGE_TOKEN_REFUSED: Final = "0x80044352"  # noqa: S105 (an error code, not a secret)
"""A delta link's token expired or unknown: the planner starts a full scan (not a fault)."""


def parse_retry_after_s(value: str | None) -> float:
    """Retry-After in seconds; documented as an integer, parsed as a float to be safe."""
    if value is None:
        return DEFAULT_RETRY_AFTER_S
    try:
        seconds = float(value)
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
    return seconds if 0 <= seconds < float("inf") else DEFAULT_RETRY_AFTER_S


def error_code_and_message(body: bytes) -> tuple[str, str]:
    """The OData error's code and message, or a short excerpt of whatever the body was."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "", body[:200].decode("utf-8", "replace")
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("code", "")), str(error.get("message", ""))[:500]
    if isinstance(error, str):
        return "", error[:500]
    return "", json.dumps(data)[:200]


def classify_answer(service: str, status: int, headers: Mapping[str, str], body: bytes, *,
                    where: str) -> SyncError | None:
    """None for a success; otherwise the error that names whose fault it is."""
    if status < 400:
        return None
    code, message = error_code_and_message(body)
    if status == 429:
        return Throttled(service, parse_retry_after_s(headers.get("Retry-After")), code)
    detail = f"{status} {_reason(status)} on {where}" + (f" ({code})" if code else "")
    if _is_config(status, message):
        return ConfigFault(service, detail, status, code, message,
                           hint=f"{where}: a table or column of the sync definition does not "
                                "exist; check SYNC_DEFINITION")
    if status >= 500 or status == 408:
        kind = AmbiguousFault if code in RECORD_SCOPED_5XX_CODES else ServiceFault
        return kind(service, detail, status, code, message)
    return _client_error(service, status, code, message, where=where, detail=detail)


def _client_error(service: str, status: int, code: str, message: str, *, where: str,
                  detail: str) -> SyncError:
    if status == 401:
        return ServiceFault(service, f"{detail}: the credential was refused", status, code,
                            message)
    missing = MISSING_PRIVILEGE.search(message) if status == 403 else None
    if missing is not None:
        return _missing_privilege(service, missing.group(1), status, code, message,
                                  detail=detail)
    if status == 403:
        return AmbiguousFault(service, f"{detail}: check the {_who(service)}'s permissions",
                              status, code, message)
    if not _is_write(where):
        return _refused_read(service, status, code, message, detail, where=where)
    return RecordFault(service, status, code, message, reason=_record_reason(status))


def _missing_privilege(service: str, privilege: str, status: int, code: str, message: str,
                       *, detail: str) -> ConfigFault:
    """A 403 that names a privilege the calling user lacks: configuration."""
    if privilege in BYPASS_PRIVILEGES:
        return ConfigFault(service, f"{detail}: the {_who(service)} lacks the privilege to "
                           "bypass custom business logic", status, code, message,
                           hint="grant the application user a role with "
                                "prvBypassCustomBusinessLogic, or set bypass_business_logic to "
                                "false in SYNC_DEFINITION")
    return ConfigFault(service, f"{detail}: the {_who(service)} is missing {privilege}; check "
                       f"the {_who(service)}'s permissions", status, code, message,
                       hint=f"grant the application user a security role with {privilege}")


def _refused_read(service: str, status: int, code: str, message: str,
                  detail: str, *, where: str = "") -> SyncError:
    """A read refused with a 4xx: the enrichment input's fault (the API knows no such company,
    or refuses the input), a refused change token, a record read by id that is gone
    (``where`` ends with its key: ``GET accounts(<id>)``), or the planner's configuration."""
    if service != "dataverse":
        return RecordFault(service, status, code, message,
                           reason="not_enrichable" if status in (404, 422) else "input_refused")
    if code == CHANGE_TOKEN_REFUSED:
        return RecordFault(service, status, code, message, reason="change_token_refused")
    if status == 404 and where.endswith(")"):
        return RecordFault(service, status, code, message, reason="record_missing")
    return ConfigFault(service, detail, status, code, message,
                       hint="the planner's read was refused: check SYNC_DEFINITION (table, "
                            "filter, columns)")


def _record_reason(status: int) -> str:
    return {404: "record_missing", 412: "changed_since_read", 409: "conflict"}.get(
        status, "value_refused")


def _is_config(status: int, message: str) -> bool:
    lowered = message.lower()
    return status in (400, 404) and any(phrase in lowered for phrase in CONFIG_MESSAGES)


def _is_write(where: str) -> bool:
    return where.split(" ", 1)[0].upper() in WRITE_METHODS


def _who(service: str) -> str:
    return "application user" if service == "dataverse" else f"{service} API key"


def _reason(status: int) -> str:
    return {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            408: "Request Timeout", 409: "Conflict", 412: "Precondition Failed",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
            504: "Gateway Timeout"}.get(status, "Error")


TRANSPORT_ERRORS: Final = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
"""What the transport raises: resets, refused connections, timeouts, broken payloads."""

MALFORMED_ERRORS: Final = (ValueError, KeyError, TypeError, UnicodeDecodeError, IndexError)
"""What parsing a broken answer raises: not JSON, truncated JSON, missing or mistyped fields."""


def classify_exception(service: str, error: BaseException, *, where: str) -> ServiceFault:
    """A ServiceFault for a transport failure or an answer that could not be read; the text
    names the failure's type, never the request's headers or body."""
    if isinstance(error, TRANSPORT_ERRORS):
        return ServiceFault(service, f"{type(error).__name__} on {where}: connection failed or "
                                     "timed out")
    return ServiceFault(service, f"malformed answer to {where}: {type(error).__name__}")
