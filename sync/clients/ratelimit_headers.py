"""The service protection headers of a Dataverse answer, as the service writes them.

- ``x-ms-ratelimit-burst-remaining-xrm-requests``: requests left in the window, an integer
  (``5993``; live environments have been seen starting at ``7999``);
- ``x-ms-ratelimit-time-remaining-xrm-requests``: combined execution time left, in **seconds**
  with a thousands separator and two decimals (``1,200.00``, ``1,199.46`` in captured answers).

The parsers accept the documented spelling and the same number without the separator
(``1199.46``), and answer None for anything else (``1.199,46``, ``1,19``, ``-3``, ``nan``)
rather than guess: a value read in the wrong unit or locale would pace the client 1000 times
too fast or too slow, silently. Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
from typing import Final

_GROUPED: Final = re.compile(r"\d{1,3}(?:,\d{3})+")
_PLAIN: Final = re.compile(r"\d+")
_FRACTION: Final = re.compile(r"\.\d+")


def _number(text: str) -> float | None:
    """A non-negative decimal with an optional thousands separator (``,`` every 3 digits)."""
    whole, dot, fraction = text.strip().partition(".")
    if not (_GROUPED.fullmatch(whole) or _PLAIN.fullmatch(whole)):
        return None
    if dot and not _FRACTION.fullmatch(dot + fraction):
        return None
    return float(whole.replace(",", "") + dot + fraction)


def time_left_s(value: str | None) -> float | None:
    """Execution seconds left in the window: ``1,199.46`` -> 1199.46; None if unreadable."""
    if value is None:
        return None
    found = _number(value)
    return found if found is not None and math.isfinite(found) else None


def requests_left(value: str | None) -> int | None:
    """Requests left in the window: ``5993`` (or ``5,993``) -> 5993; None if unreadable."""
    if value is None or "." in value:
        return None
    found = _number(value)
    return int(found) if found is not None else None


def headroom(requests: int | None, time_s: float | None, latency_ms: float) -> int | None:
    """How many more requests the window takes, as far as pacing should trust it: the
    requests left; and 0 once less execution time is left than one request's usual duration
    (at least 1 ms); None when neither says anything.

    The execution-time facet is a brake, not a count: a request's duration as the client sees
    it is not what the service charges, and time spent leaves the window continuously, so
    dividing the time left by it holds a client at the ceiling below it (measured: 75% of
    the ceiling against 95% without the headers). ``headroom(None, 1199.46, 150.0)`` is None;
    ``headroom(None, 0.10, 150.0)`` is 0."""
    found: list[int] = []
    if requests is not None:
        found.append(requests)
    if time_s is not None and time_s * 1000 < max(latency_ms, 1.0):
        found.append(0)
    return min(found) if found else None
