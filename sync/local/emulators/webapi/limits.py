"""Service protection limits per user and web server, over a sliding window.

The model (the service documents the facets and codes, not its algorithm):

- concurrency: requests in flight for the (user, server); at ``max_concurrent`` the next one
  is refused at once with 0x80072326;
- request count: requests admitted in the last ``window_s``; at ``max_requests`` refused with
  0x80072322 until the oldest leaves the window;
- execution time: server milliseconds spent by requests finished in the last ``window_s``; at
  ``max_exec_ms`` refused with 0x80072321 until enough of it leaves the window. Requests in flight
  do not count yet, so the facet bites a little late, as the documentation says it may;
- a client that sends while it is throttled is refused again, and the first such send of a
  throttling episode lengthens it by ``penalty_s`` (once: the service documents that pushing
  clients get longer Retry-After values, not by how much, so the model stays mild).

Pure arithmetic on a clock passed in: no I/O, no sleeping.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from sync.local.emulators.webapi.config import EmulatorConfig

CONCURRENCY: Final = ("0x80072326", "Number of concurrent requests exceeded the limit of {c}.")
REQUESTS: Final = ("0x80072322", "Number of requests exceeded the limit of {r} over time window "
                                 "of {w} seconds.")
EXEC_TIME: Final = ("0x80072321", "Combined execution time of incoming requests exceeded limit "
                                  "of {e} milliseconds over time window of {w} seconds. Decrease "
                                  "number of concurrent requests or reduce the duration of "
                                  "requests and try again later.")


@dataclass(frozen=True, slots=True)
class Denial:
    """A 429: the code, the message and the Retry-After in seconds."""

    code: str
    message: str
    retry_after_s: float


@dataclass(slots=True)
class Bucket:
    """One (user, server)'s sliding windows."""

    arrivals_s: deque[float] = field(default_factory=deque)
    spent: deque[tuple[float, float]] = field(default_factory=deque)
    spent_ms: float = 0.0
    in_flight: int = 0
    throttled_until_s: float = 0.0
    last_denial: Denial | None = None
    penalized: bool = False

    def trim(self, now_s: float, window_s: float) -> None:
        while self.arrivals_s and self.arrivals_s[0] <= now_s - window_s:
            self.arrivals_s.popleft()
        while self.spent and self.spent[0][0] <= now_s - window_s:
            self.spent_ms -= self.spent.popleft()[1]


def round_up(seconds: float, step_s: float) -> float:
    """Retry-After as the service would state it: rounded up to ``step_s``, at least one step."""
    return max(step_s, math.ceil(seconds / step_s - 1e-9) * step_s)


def _message(template: tuple[str, str], config: EmulatorConfig) -> tuple[str, str]:
    text = template[1].format(c=config.max_concurrent, r=config.max_requests,
                              e=f"{config.max_exec_ms:,.0f}", w=f"{config.window_s:g}")
    return template[0], text


def admit(bucket: Bucket, config: EmulatorConfig, now_s: float) -> Denial | None:
    """Admit a request (counting it) or answer why not."""
    bucket.trim(now_s, config.window_s)
    if now_s < bucket.throttled_until_s and bucket.last_denial is not None:
        if not bucket.penalized:
            bucket.throttled_until_s += config.penalty_s
            bucket.penalized = True
        return _deny(bucket, config, bucket.last_denial.code,
                     bucket.throttled_until_s - now_s, now_s)
    bucket.penalized = False
    if bucket.in_flight >= config.max_concurrent:
        code, message = _message(CONCURRENCY, config)
        return Denial(code, message, round_up(config.concurrency_retry_after_s,
                                              config.retry_after_resolution_s))
    if len(bucket.arrivals_s) >= config.max_requests:
        wait_s = bucket.arrivals_s[0] + config.window_s - now_s
        return _deny(bucket, config, REQUESTS[0], wait_s, now_s)
    if bucket.spent_ms >= config.max_exec_ms:
        return _deny(bucket, config, EXEC_TIME[0], _exec_wait_s(bucket, config, now_s),
                     now_s)
    bucket.arrivals_s.append(now_s)
    bucket.in_flight += 1
    return None


def _exec_wait_s(bucket: Bucket, config: EmulatorConfig, now_s: float) -> float:
    excess_ms = bucket.spent_ms - config.max_exec_ms
    for finished_s, cost_ms in bucket.spent:
        excess_ms -= cost_ms
        if excess_ms < 0:
            return finished_s + config.window_s - now_s
    return config.window_s


def _deny(bucket: Bucket, config: EmulatorConfig, code: str, wait_s: float,
          now_s: float) -> Denial:
    template = {REQUESTS[0]: REQUESTS, EXEC_TIME[0]: EXEC_TIME}.get(code, CONCURRENCY)
    _, message = _message(template, config)
    retry_after_s = round_up(max(wait_s, 0.0), config.retry_after_resolution_s)
    bucket.throttled_until_s = max(bucket.throttled_until_s, now_s + retry_after_s)
    bucket.last_denial = Denial(code, message, retry_after_s)
    return bucket.last_denial


def finish(bucket: Bucket, config: EmulatorConfig, now_s: float, cost_ms: float) -> None:
    """A request admitted earlier ended after spending ``cost_ms`` of server time."""
    bucket.in_flight -= 1
    bucket.spent.append((now_s, cost_ms))
    bucket.spent_ms += cost_ms
    bucket.trim(now_s, config.window_s)


def remaining(bucket: Bucket, config: EmulatorConfig, now_s: float) -> tuple[int, float]:
    """Requests and execution milliseconds left in the window (the x-ms-ratelimit headers)."""
    bucket.trim(now_s, config.window_s)
    return (max(0, config.max_requests - len(bucket.arrivals_s)),
            max(0.0, config.max_exec_ms - bucket.spent_ms))
