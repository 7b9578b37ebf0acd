"""HTTP plumbing shared by the Dataverse and enrichment clients: the session and error mapping."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Final

import aiohttp

from sync.errors import PermanentError, Throttled, TransientError

DEFAULT_RETRY_AFTER_S: Final = 5.0
"""Used when a 429 carries no readable Retry-After (the .NET ServiceClient's base delay)."""


def new_session(connection_limit: int, *, keep_affinity: bool = False) -> aiohttp.ClientSession:
    """One session per process, with a pool as large as the fan-out.

    Cookies are dropped unless ``keep_affinity``: without the affinity cookie every request may
    go to any of the environment's web servers, and the limits are per server. aiohttp keeps
    connections alive, sets TCP_NODELAY and never sends ``Expect: 100-continue`` unless asked,
    which is what the Dataverse guidance asks of a parallel client.
    """
    connector = aiohttp.TCPConnector(limit=connection_limit, limit_per_host=connection_limit,
                                     keepalive_timeout=60, ttl_dns_cache=300)
    jar: aiohttp.abc.AbstractCookieJar = (aiohttp.CookieJar(unsafe=True) if keep_affinity
                                          else aiohttp.DummyCookieJar())
    return aiohttp.ClientSession(connector=connector, cookie_jar=jar, raise_for_status=False)


def parse_retry_after_s(value: str | None) -> float:
    """Retry-After in seconds; documented as an integer, parsed as a float to be safe."""
    if value is None:
        return DEFAULT_RETRY_AFTER_S
    try:
        seconds = float(value)
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
    return seconds if seconds >= 0 else DEFAULT_RETRY_AFTER_S


def error_code_and_message(body: bytes) -> tuple[str, str]:
    """The OData error's code and message, or a short excerpt of whatever the body was."""
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "", body[:200].decode("utf-8", "replace")
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("code", "")), str(error.get("message", ""))
    if isinstance(error, str):
        return "", error
    return "", json.dumps(data)[:200]


def raise_for_answer(service: str, status: int, headers: Mapping[str, str], body: bytes) -> None:
    """Map a non-2xx answer to Throttled, TransientError or PermanentError."""
    if status < 400:
        return
    code, message = error_code_and_message(body)
    if status == 429:
        raise Throttled(service, parse_retry_after_s(headers.get("Retry-After")), code)
    if status >= 500 or status == 408:
        raise TransientError(service, f"HTTP {status} {code} {message}".strip(), status)
    raise PermanentError(service, status, code, message)


TRANSIENT_EXCEPTIONS: Final = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError,
                               asyncio.TimeoutError)
"""Exceptions of the transport that a retry can cure: resets, refused connections, timeouts."""


def transient_from(service: str, error: BaseException) -> TransientError:
    """A TransientError that names the transport failure without echoing request details."""
    return TransientError(service, f"{type(error).__name__}: connection failed or timed out")
