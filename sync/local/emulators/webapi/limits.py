"""Service protection limits per user and web server, over a sliding window.

The model (the service documents the facets and codes, not its algorithm):

- concurrency: requests in flight for the (user, server); at ``max_concurrent`` the next one
  is refused at once with 0x80072326;
- request count: requests admitted in the last ``window_s``; at ``max_requests`` refused with
  0x80072322 until the oldest leaves the window;
- execution time: each admitted request runs from its start for its cost, and its time is
  charged to the window in which it is **spent** (a long request accrues while it runs, part of
  it in one window and the rest in the next). A request is admitted only while the time spent
  in the window plus the time the requests in flight are still to spend (``committed_ms``)
  leaves room for the largest request this user has run on this server (``largest_s``, the
  time an injected slowness adds left out), or while nothing is committed at all (a request
  larger than the whole budget runs alone); otherwise 0x80072321 until enough of it leaves
  the window. This is stricter than "the facet can be exceeded for a while" (an assumption,
  ``exec_in_flight_share`` = 1): the time the requests started in any window run is at most
  ``max_exec_ms``, save the first request of a new largest size (its cost is not known before
  it runs: it can cross the budget by what it adds to the largest, once), so
  ``stats.ceiling`` bounds every whole window and ``stats.run_bound`` every run (with a share
  under 1, the in-flight time counts in part and the facet bites late, as the service says it
  may; both bounds count what that lets in);
- a client that sends while it is throttled is refused again (Retry-After: what is left of the
  episode, rounded up to ``retry_after_resolution_s``; the rounding does not lengthen the
  episode), and the first such send of a throttling episode lengthens it by ``penalty_s``
  (once: the service documents that pushing clients get longer Retry-After values, not by how
  much, so the model stays mild).

Pure arithmetic on a clock passed in (``now_s``): no I/O, no sleeping.
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
_SEARCH_STEPS: Final = 40


@dataclass(frozen=True, slots=True)
class Denial:
    """A 429: the code, the message and the Retry-After in seconds."""

    code: str
    message: str
    retry_after_s: float


@dataclass(slots=True)
class Bucket:
    """One (user, server)'s sliding windows. ``spans`` are the (start_s, end_s) of execution,
    in the order the requests started; ``spans_s`` is their total length."""

    arrivals_s: deque[float] = field(default_factory=deque)
    spans: deque[tuple[float, float]] = field(default_factory=deque)
    spans_s: float = 0.0
    longest_s: float = 0.0
    largest_s: float = 0.0
    """The largest cost of a request admitted here, an injected slowness left out: what the
    execution-time facet keeps room for."""
    in_flight: int = 0
    throttled_until_s: float = 0.0
    last_denial: Denial | None = None
    penalized: bool = False

    def trim(self, now_s: float, window_s: float) -> None:
        """Forget arrivals and spans that ended before the window."""
        cutoff_s = now_s - window_s
        while self.arrivals_s and self.arrivals_s[0] <= cutoff_s:
            self.arrivals_s.popleft()
        while self.spans and self.spans[0][1] <= cutoff_s:
            start_s, end_s = self.spans.popleft()
            self.spans_s -= end_s - start_s
        if not self.spans:
            self.spans_s = 0.0

    def committed_s(self, now_s: float, window_s: float) -> float:
        """Execution seconds spent in the window ending now plus those the requests in flight
        are still to spend."""
        self.trim(now_s, window_s)
        cutoff_s, before_s = now_s - window_s, 0.0
        for start_s, end_s in self.spans:
            if start_s >= cutoff_s:
                break
            before_s += min(end_s, cutoff_s) - start_s
        return max(0.0, self.spans_s - before_s)

    def spent_s(self, now_s: float, window_s: float) -> float:
        """Execution seconds spent in the window ending now (in-flight requests so far)."""
        ahead_s = 0.0
        for start_s, end_s in reversed(self.spans):
            if start_s < now_s - self.longest_s:
                break
            ahead_s += max(0.0, end_s - max(start_s, now_s))
        return max(0.0, self.committed_s(now_s, window_s) - ahead_s)


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
    if not has_room(used_s(bucket, config, now_s), bucket.largest_s, config):
        return _deny(bucket, config, EXEC_TIME[0], exec_wait_s(bucket, config, now_s), now_s)
    bucket.arrivals_s.append(now_s)
    bucket.in_flight += 1
    return None


def used_s(bucket: Bucket, config: EmulatorConfig, now_s: float) -> float:
    """Execution seconds the admission compares with the budget: what the window has spent,
    plus ``exec_in_flight_share`` of what the requests in flight are still to spend."""
    if config.exec_in_flight_share >= 1.0:
        return bucket.committed_s(now_s, config.window_s)
    spent_s = bucket.spent_s(now_s, config.window_s)
    ahead_s = bucket.committed_s(now_s, config.window_s) - spent_s
    return spent_s + config.exec_in_flight_share * ahead_s


def has_room(used_s: float, largest_s: float, config: EmulatorConfig) -> bool:
    """Whether the execution-time budget admits a request: the time used leaves room for the
    largest request seen (at most the whole budget; counted by ``exec_in_flight_share``, as
    the time in flight is), or nothing is used at all."""
    budget_s = config.max_exec_ms / 1000
    reserve_s = config.exec_in_flight_share * min(largest_s, budget_s)
    return used_s <= 0.0 or (used_s < budget_s and used_s + reserve_s <= budget_s + 1e-9)


def exec_wait_s(bucket: Bucket, config: EmulatorConfig, now_s: float) -> float:
    """How long until what is committed leaves room again (``has_room``), if nothing else
    starts: the earliest such moment, found by bisection (committed time only falls as time
    passes)."""
    low_s, high_s = 0.0, config.window_s + bucket.longest_s
    for _ in range(_SEARCH_STEPS):
        middle_s = (low_s + high_s) / 2
        if has_room(_committed_at_s(bucket, now_s + middle_s, config.window_s),
                    bucket.largest_s, config):
            high_s = middle_s
        else:
            low_s = middle_s
    return high_s


def _committed_at_s(bucket: Bucket, at_s: float, window_s: float) -> float:
    cutoff_s = at_s - window_s
    return sum(max(0.0, end_s - max(start_s, cutoff_s)) for start_s, end_s in bucket.spans)


def _deny(bucket: Bucket, config: EmulatorConfig, code: str, wait_s: float,
          now_s: float) -> Denial:
    template = {REQUESTS[0]: REQUESTS, EXEC_TIME[0]: EXEC_TIME}.get(code, CONCURRENCY)
    _, message = _message(template, config)
    retry_after_s = round_up(max(wait_s, 0.0), config.retry_after_resolution_s)
    # The episode ends when the limit allows again: the announced value is rounded up, the
    # episode is not, or a client sending more often than the rounding step would push it
    # further with every refusal and never get in.
    bucket.throttled_until_s = max(bucket.throttled_until_s, now_s + max(wait_s, 0.0))
    bucket.last_denial = Denial(code, message, retry_after_s)
    return bucket.last_denial


def charge(bucket: Bucket, start_s: float, cost_ms: float, injected_ms: float = 0.0) -> None:
    """An admitted request runs from ``start_s`` for ``cost_ms`` of server time: its time is
    charged as it is spent, to whichever windows that span falls in. ``injected_ms`` of it is
    an injected slowness (a fault): charged, but not a size the facet keeps room for."""
    if cost_ms <= 0:
        return
    duration_s = cost_ms / 1000
    bucket.spans.append((start_s, start_s + duration_s))
    bucket.spans_s += duration_s
    bucket.longest_s = max(bucket.longest_s, duration_s)
    bucket.largest_s = max(bucket.largest_s, (cost_ms - injected_ms) / 1000)


def finish(bucket: Bucket, config: EmulatorConfig, now_s: float) -> None:
    """A request admitted earlier ended (its time was charged when it started)."""
    bucket.in_flight -= 1
    bucket.trim(now_s, config.window_s)


def remaining(bucket: Bucket, config: EmulatorConfig, now_s: float) -> tuple[int, float]:
    """Requests and execution milliseconds left in the window (the x-ms-ratelimit headers):
    what is committed counts as used."""
    bucket.trim(now_s, config.window_s)
    committed_ms = bucket.committed_s(now_s, config.window_s) * 1000
    return (max(0, config.max_requests - len(bucket.arrivals_s)),
            max(0.0, config.max_exec_ms - committed_ms))
