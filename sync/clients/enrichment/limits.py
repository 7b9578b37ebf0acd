"""The rate-limit headers of an enrichment API, as a spec honours them.

- ``Retry-After``: seconds (``30``) or an HTTP date;
- ``RateLimit``: ``RateLimit-Remaining`` and ``RateLimit-Reset`` (seconds until the window
  resets), or one ``RateLimit`` header (``limit=100, remaining=0, reset=30``, or the structured
  ``"default";r=0;t=30``);
- ``X-RateLimit``: ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds, or a Unix time
  when it is larger than ``EPOCH_FLOOR_S``).

``retry_after_s`` answers how long a 429 asks to wait (the first honoured header that says);
``spent_for_s`` how long the window stays spent after a success whose headers say nothing is
left (None while something is). Pure functions on a passed-in ``now_s``; a value that cannot be
read is ignored, never guessed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Final

EPOCH_FLOOR_S: Final = 1_000_000_000.0
"""A reset above this is a Unix time, not a delay (2001-09-09: no window lasts 31 years)."""
MAX_WAIT_S: Final = 24 * 3600.0
"""A longer announced wait is read as this (a wrong clock must not park work for months)."""
_PAIR: Final = re.compile(r"\b(limit|remaining|reset|r|t)\s*=\s*(-?[\d.]+)")


def _seconds(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _delay(value: float | None, now_s: float) -> float | None:
    """A reset (a delay, or a Unix time) as seconds from ``now_s``, within bounds."""
    if value is None:
        return None
    delay_s = value - now_s if value > EPOCH_FLOOR_S else value
    return min(max(0.0, delay_s), MAX_WAIT_S)


def _retry_after(headers: Mapping[str, str], now_s: float) -> float | None:
    text = headers.get("Retry-After")
    found = _seconds(text)
    if found is not None or text is None:
        return _delay(found, 0.0)
    try:
        return _delay(parsedate_to_datetime(text).timestamp() - now_s, 0.0)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _combined(headers: Mapping[str, str]) -> dict[str, float]:
    """``RateLimit: limit=100, remaining=0, reset=30`` or ``"default";r=0;t=30``."""
    text = headers.get("RateLimit") or ""
    pairs = {name: float(value) for name, value in _PAIR.findall(text)
             if _seconds(value) is not None}
    return {"remaining": pairs.get("remaining", pairs.get("r", math.nan)),
            "reset": pairs.get("reset", pairs.get("t", math.nan))}


def _family(headers: Mapping[str, str], family: str) -> tuple[float | None, float | None]:
    """(remaining, reset) of ``RateLimit`` or ``X-RateLimit``."""
    remaining = _seconds(headers.get(f"{family}-Remaining"))
    reset = _seconds(headers.get(f"{family}-Reset"))
    if family == "RateLimit" and remaining is None and reset is None:
        combined = _combined(headers)
        remaining = None if math.isnan(combined["remaining"]) else combined["remaining"]
        reset = None if math.isnan(combined["reset"]) else combined["reset"]
    return remaining, reset


def retry_after_s(headers: Mapping[str, str], honoured: tuple[str, ...],
                  now_s: float) -> float | None:
    """The wait a 429 asks for, from the first honoured header that says; None if none."""
    for name in honoured:
        found = (_retry_after(headers, now_s) if name == "Retry-After"
                 else _delay(_family(headers, name)[1], now_s))
        if found is not None:
            return found
    return None


def spent_for_s(headers: Mapping[str, str], honoured: tuple[str, ...],
                now_s: float) -> float | None:
    """How long nothing more should be sent when an answer says the window is spent
    (remaining 0 and a reset); None while something is left or the headers do not say."""
    for name in honoured:
        if name == "Retry-After":
            continue
        remaining, reset = _family(headers, name)
        if remaining is not None and remaining < 1 and reset is not None:
            return _delay(reset, now_s)
    return None
