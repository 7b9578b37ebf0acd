"""Two clients that probe the enrichment API's limit: a greedy one and an oracle.

- ``greedy``: ``workers`` calls in flight at all times, ignores 429 and Retry-After: a refused
  call is sent again after ``pause_s`` (20 ms, only so a refusal loop does not spin the CPU);
- ``oracle``: knows the limit (``rate_per_s``, ``burst``): spends the burst at once (at most
  ``max_in_flight`` calls at a time), then sends on a schedule at ``margin`` times the rate,
  counted from when the burst was answered, so the bucket always holds a token for it (it
  honours Retry-After if it ever gets one).

Both ask for distinct domains, stop at ``run_s`` on their clock or after ``max_sends``, and
answer what they saw (``Seen``: a served call is one record). The emulator's own counts
(``/_emulator/stats``: ``served``, ``run.bound_calls``) are the measure. Used by
``tests/test_enrichment_ceiling.py`` and the bench (``bench/enrichprobe.py``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from sync.clock import SYSTEM_CLOCK, Clock
from sync.local.emulators.enrichment.app import API_KEY_HEADER, EnrichmentConfig
from sync.local.emulators.webapi.probes import Seen, greedy_with


@dataclass(frozen=True, slots=True)
class EnrichmentProbe:
    """Whom to call, for how long."""

    url: str
    api_key: str = field(default=EnrichmentConfig().api_key, repr=False)
    run_s: float = 5.0
    max_sends: int = 20_000


class _Caller:
    """Sends one call at a time, each for a domain of its own."""

    def __init__(self, probe: EnrichmentProbe, session: aiohttp.ClientSession,
                 seen: Seen) -> None:
        self.probe, self.session, self.seen = probe, session, seen
        self._numbers: Iterator[int] = itertools.count()

    async def call(self) -> tuple[int, float]:
        """One call: its status and Retry-After (0 when none)."""
        self.seen.sent += 1
        url = f"{self.probe.url}/v1/companies?domain=probe{next(self._numbers)}.example"
        async with self.session.get(url, headers={API_KEY_HEADER: self.probe.api_key}) as answer:
            await answer.read()
            self.seen.note(answer.status, 1)
            return answer.status, float(answer.headers.get("Retry-After", "0"))


def _session(connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections))


async def greedy(probe: EnrichmentProbe, workers: int, *, pause_s: float = 0.02,
                 clock: Clock = SYSTEM_CLOCK) -> Seen:
    """``workers`` loops calling as fast as answers come, until ``run_s`` or ``max_sends``."""
    return await greedy_with(lambda session, seen: _Caller(probe, session, seen).call,
                             _session(workers), workers, run_s=probe.run_s,
                             max_sends=probe.max_sends, pause_s=pause_s, clock=clock)


def oracle_send_at_s(paced_from_s: float, n: int, rate_per_s: float, margin: float) -> float:
    """When the oracle sends its ``n``-th paced call (from 0): a schedule at ``margin`` times
    the rate, so a late loop catches up without ever outrunning the bucket's refill."""
    return paced_from_s + n / (rate_per_s * margin)


async def oracle(probe: EnrichmentProbe, rate_per_s: float, burst: int, *,
                 margin: float = 0.95, max_in_flight: int = 32,
                 clock: Clock = SYSTEM_CLOCK) -> Seen:
    """The burst at once, then calls on ``oracle_send_at_s``'s schedule."""
    if not 0 < margin <= 1:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    seen = Seen()
    deadline_s = clock.monotonic_s() + probe.run_s
    async with _session(max_in_flight) as session:
        caller = _Caller(probe, session, seen)
        slots = asyncio.Semaphore(max_in_flight)

        async def one() -> float:
            async with slots:
                status, retry_after_s = await caller.call()
            return retry_after_s if status == 429 else 0.0

        def more() -> bool:
            return clock.monotonic_s() < deadline_s and seen.sent < probe.max_sends

        await asyncio.gather(*(one() for _ in range(min(burst, probe.max_sends))))
        await _paced(one, more, clock, lambda n, start_s: oracle_send_at_s(
            start_s, n, rate_per_s, margin))
    return seen


async def _paced(one: Callable[[], Coroutine[Any, Any, float]], more: Callable[[], bool],
                 clock: Clock, send_at_s: Callable[[int, float], float]) -> None:
    """Send ``one`` call at each time of the schedule while ``more``; a Retry-After pushes
    the rest of the schedule back by its length."""
    tasks: set[asyncio.Task[float]] = set()
    failures: list[BaseException] = []
    start_s, pushed_s = clock.monotonic_s(), 0.0

    def done(task: asyncio.Task[float]) -> None:
        nonlocal pushed_s
        tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            failures.append(error)
        else:
            pushed_s += task.result()

    for n in itertools.count(1):
        await clock.sleep(send_at_s(n, start_s) + pushed_s - clock.monotonic_s())
        if failures or not more():
            break
        task = asyncio.create_task(one())
        tasks.add(task)
        task.add_done_callback(done)
    await asyncio.gather(*tasks, return_exceptions=True)
    if failures:
        raise failures[0]
