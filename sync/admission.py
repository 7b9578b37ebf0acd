"""One call to a rate-limited service under its governor, with the throttling policy:

- a 429 closes the governor's gate for Retry-After (so nobody in the process sends) and is
  reported through ``on_429`` (counted, and for Dataverse published to the cluster);
- when that Retry-After is at most the governor's ``max_wait_s``, the same call is tried again
  once the gate opens (a short pause, not worth a trip through the queue), up to
  ``SHORT_WAIT_RETRIES`` times;
- a longer one, or a gate already closed for longer, raises Throttled: the caller stops sending
  for its message and re-enqueues the unfinished records with that delay.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from sync.errors import Throttled
from sync.governor import GATE_CODE, Governor

T = TypeVar("T")
SHORT_WAIT_RETRIES: Final = 3


async def admitted(governor: Governor, service: str, call: Callable[[], Awaitable[T]], *,
                   on_429: Callable[[Throttled], Awaitable[None]],
                   stopped: Callable[[], float | None]) -> T:
    """``call()`` under ``governor``; ``stopped()`` answers a delay once the message stopped
    sending to ``service``, None while it may."""
    for attempt in range(SHORT_WAIT_RETRIES + 1):
        async with governor:
            delay_s = stopped()
            if delay_s is not None:
                raise Throttled(service, delay_s, GATE_CODE)
            try:
                result = await call()
            except Throttled as error:
                governor.throttled(error)
                await on_429(error)
                if error.retry_after_s > governor.max_wait_s or attempt == SHORT_WAIT_RETRIES:
                    raise
                continue
        governor.succeeded()
        return result
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover
