"""Settings that hold JSON (``SYNC_DEFINITION``, ``SYNC_DEFINITIONS``, ``SYNC_ENVIRONMENTS``): the
JSON itself, or ``@path`` to a file shipped with the app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from sync.failures.errors import ConfigError

APP_ROOT: Final = Path(__file__).resolve().parents[2]
"""The app's root: where ``@path`` values are read from."""


def read_json_setting(setting: str, value: str) -> Any:
    """A JSON setting's value; ConfigError naming the setting when it is not JSON or its file
    cannot be read."""
    text = _read_file(setting, value[1:]) if value.startswith("@") else value
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{setting} is not JSON: {error.msg} at char {error.pos}") from None


def _read_file(setting: str, relative: str) -> str:
    try:
        return (APP_ROOT / relative).resolve().read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{setting} file {relative!r}: {error.strerror}") from None
