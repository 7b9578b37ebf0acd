"""Local-only knobs of ``python -m sync host``, read from its environment (never app settings:
the Functions host has no such thing, and a deployment never sets them).

- ``SYNC_LOCAL_CLOCK_OFFSET_S``: seconds this host's wall clock runs ahead of the machine's
  (behind when negative). The host hands its services a ``SkewedClock``, so every expiry it
  writes and judges, the planner's tick and the retention sweeps see that time: the soak
  (``make soak``) gives each instance its own offset of a few seconds and moves every host a
  day ahead per night. Unset: the machine's clock.
- ``SYNC_LOCAL_MESSAGE_LEASE_S``: the visibility lease the host takes on a message while it
  runs (``hostrunner.LEASE_S`` unset), so a killed host's messages come back sooner.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from sync.clock import SYSTEM_CLOCK, Clock, SkewedClock
from sync.local.hostrunner import LEASE_S

CLOCK_OFFSET_VAR: Final = "SYNC_LOCAL_CLOCK_OFFSET_S"
MESSAGE_LEASE_VAR: Final = "SYNC_LOCAL_MESSAGE_LEASE_S"
MIN_LEASE_S: Final = 2
"""The lease is renewed at half its length: below this a renewal may come too late."""


def clock_of(environ: Mapping[str, str]) -> Clock:
    """The host's clock: the machine's, ``CLOCK_OFFSET_VAR`` seconds ahead when set."""
    text = environ.get(CLOCK_OFFSET_VAR, "").strip()
    if not text:
        return SYSTEM_CLOCK
    offset_s = _number(CLOCK_OFFSET_VAR, text)
    return SkewedClock(SYSTEM_CLOCK, offset_s) if offset_s else SYSTEM_CLOCK


def message_lease_s(environ: Mapping[str, str]) -> int:
    """The message lease in whole seconds (the queue's visibility timeout is whole seconds)."""
    text = environ.get(MESSAGE_LEASE_VAR, "").strip()
    if not text:
        return LEASE_S
    lease_s = _number(MESSAGE_LEASE_VAR, text)
    if lease_s != int(lease_s) or lease_s < MIN_LEASE_S:
        raise ValueError(f"{MESSAGE_LEASE_VAR} must be a whole number of seconds, at least "
                         f"{MIN_LEASE_S}; it is {text!r}")
    return int(lease_s)


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds; it is {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds; it is {text!r}")
    return value
