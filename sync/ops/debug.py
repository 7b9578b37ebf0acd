"""``--debug``: the Azure SDK's and the app's own logs on stderr, secrets redacted.

Without it the Azure SDK's logger stays at CRITICAL: every credential that
``DefaultAzureCredential`` tried would otherwise bury the one sentence a command prints for the
same failure. With it, the SDK logs its requests and answers (headers it does not know are
already redacted by its own policy), and every line goes through ``redact`` before it is
written: account keys, SAS signatures, bearer tokens, and the values of the settings that hold
secrets never reach the terminal.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Final, TextIO

from sync.config.settings import SETTINGS

MASK: Final = "***"
LOGGERS: Final = ("azure", "sync", "aiohttp")
PATTERNS: Final = (
    re.compile(r"(AccountKey=)[^;\s'\"]+", re.IGNORECASE),
    re.compile(r"(SharedAccessSignature=)[^;\s'\"]+", re.IGNORECASE),
    re.compile(r"(SharedAccessKey=)[^;\s'\"]+", re.IGNORECASE),
    re.compile(r"([?&]sig=)[^&\s'\"]+", re.IGNORECASE),
    re.compile(r"(Bearer\s+)[A-Za-z0-9\-._~+/]+=*", re.IGNORECASE),
    re.compile(r"(\"?(?:access_token|refresh_token|client_secret)\"?\s*[:=]\s*\"?)[^\"&\s,]+",
               re.IGNORECASE),
)
SECRET_NAME: Final = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CONNECTION)", re.IGNORECASE)
MIN_SECRET_CHARS: Final = 6
"""Shorter values are not masked word by word (they would mask ordinary text)."""


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret value and every secret-shaped part masked."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    for pattern in PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + MASK, text)
    return text


def secrets_in(environ: Mapping[str, str]) -> list[str]:
    """The values in ``environ`` that are secrets: the settings declared secret, and any whose
    name says key, token, secret, password or connection; longest first."""
    declared = {spec.name for spec in SETTINGS if spec.secret}
    values = {value.strip() for name, value in environ.items()
              if name in declared or SECRET_NAME.search(name)}
    return sorted((v for v in values if len(v) >= MIN_SECRET_CHARS), key=len, reverse=True)


class RedactingFormatter(logging.Formatter):
    """A formatter whose every line (traceback included) goes through ``redact``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self._secrets)


def enable_debug(environ: Mapping[str, str], stream: TextIO | None = None) -> logging.Handler:
    """Send the SDK's and the app's logs, down to DEBUG, to ``stream`` (stderr), redacted."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter(secrets_in(environ)))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
    return handler


def quiet_sdk() -> None:
    """The default: the Azure SDK says nothing below CRITICAL (commands explain errors)."""
    logging.getLogger("azure").setLevel(logging.CRITICAL)
