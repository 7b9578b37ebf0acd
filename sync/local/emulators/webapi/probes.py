"""Clients that probe the emulator's limits: a greedy one, two that honour Retry-After as
users' loops do, and an oracle.

- ``greedy``: as many requests in flight as the servers could ever take and more
  (``workers``), no cookies (so it reaches every server), ignores ``x-ms-dop-hint``,
  ``x-ms-ratelimit-*`` and ``Retry-After``: a refused request is sent again after ``pause_s``
  (20 ms, only so a refusal loop does not spin the CPU);
- ``gated``: ``workers`` loops (52: the ServiceClient's default) behind one shared gate: a 429
  closes it for every loop until its Retry-After has passed;
- ``patient``: ``workers`` loops (the DOP hint: Microsoft's recommended loop), each waiting
  out its own request's Retry-After, nobody else slowing down;
- ``oracle``: knows the configuration, pins one stream per server (the affinity cookie) and
  sends each at ``margin`` times the steady rate the binding facet allows
  (``oracle_interval_s``), never two closer than that interval, at most
  ``max_concurrent`` in flight per server; honours Retry-After if it ever gets one.

All write existing records (``single``: PATCH with ``If-Match: *``; ``bulk``: UpdateMultiple
of ``targets`` distinct records), stop at ``run_s`` on their clock or after ``max_sends``, and
answer what they saw. The emulator's own counts (``/_emulator/stats``) are the measure; these
counts are the clients' side. Used by ``tests/webapi/test_ceiling.py``; the benchmark can
import them.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

from sync.clock import SYSTEM_CLOCK, Clock
from sync.local.emulators.webapi.config import EmulatorConfig
from sync.local.emulators.webapi.ops import API
from sync.local.emulators.webapi.servers import COOKIE
from sync.local.emulators.webapi.stats import request_shape

ACCOUNT_TYPE: Final = "Microsoft.Dynamics.CRM.account"


@dataclass(frozen=True, slots=True)
class Probe:
    """What to send, to whom, for how long."""

    url: str
    token: str
    ids: Sequence[str]
    mode: str = "single"
    targets: int = 1
    run_s: float = 5.0
    max_sends: int = 20_000

    def __post_init__(self) -> None:
        if self.mode not in ("single", "bulk"):
            raise ValueError(f"Probe.mode must be single or bulk, got {self.mode!r}")
        if not 1 <= self.targets <= len(self.ids):
            raise ValueError("Probe.targets must be between 1 and the number of ids")


@dataclass(slots=True)
class Seen:
    """The client's side of a probe run."""

    sent: int = 0
    accepted: int = 0
    records: int = 0
    throttled: int = 0
    other: int = 0
    codes: dict[int, int] = field(default_factory=dict)

    def note(self, status: int, records: int) -> None:
        self.codes[status] = self.codes.get(status, 0) + 1
        if 200 <= status < 300:
            self.accepted += 1
            self.records += records
        elif status == 429:
            self.throttled += 1
        else:
            self.other += 1


class _Sender:
    """Builds and sends one probe request at a time, cycling over the ids."""

    def __init__(self, probe: Probe, session: aiohttp.ClientSession, seen: Seen) -> None:
        self.probe, self.session, self.seen = probe, session, seen
        self._ids: Iterator[str] = itertools.cycle(probe.ids)

    def _request(self) -> tuple[str, str, dict[str, Any], int]:
        api = f"{self.probe.url}{API}"
        if self.probe.mode == "single":
            return ("PATCH", f"{api}accounts({next(self._ids)})",
                    {"description": f"probe {self.seen.sent}"}, 1)
        targets = [{"@odata.type": ACCOUNT_TYPE, "accountid": next(self._ids),
                    "description": f"probe {self.seen.sent}"} for _ in range(self.probe.targets)]
        return ("POST", f"{api}accounts/Microsoft.Dynamics.CRM.UpdateMultiple",
                {"Targets": targets}, len(targets))

    async def send(self, server: str | None = None) -> tuple[int, float]:
        """One request: its status and Retry-After (0 when none)."""
        method, url, body, records = self._request()
        self.seen.sent += 1
        headers = {"Authorization": f"Bearer {self.probe.token}"}
        if method == "PATCH":
            headers["If-Match"] = "*"  # an update, never a create
        if server is not None:
            headers["Cookie"] = f"{COOKIE}={server}"
        async with self.session.request(method, url, json=body, headers=headers) as answer:
            await answer.read()
            self.seen.note(answer.status, records)
            return answer.status, float(answer.headers.get("Retry-After", "0"))


def _session(connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                 connector=aiohttp.TCPConnector(limit=connections))


async def greedy(probe: Probe, workers: int, *, pause_s: float = 0.02,
                 clock: Clock = SYSTEM_CLOCK) -> Seen:
    """``workers`` loops sending as fast as answers come, until ``run_s`` or ``max_sends``."""
    return await greedy_with(lambda session, seen: _Sender(probe, session, seen).send,
                             _session(workers), workers, run_s=probe.run_s,
                             max_sends=probe.max_sends, pause_s=pause_s, clock=clock)


async def gated(probe: Probe, workers: int, *, clock: Clock = SYSTEM_CLOCK) -> Seen:
    """``workers`` loops behind one gate that a 429 closes for its Retry-After."""
    return await _waiting(probe, workers, RetryAfter.SHARED, clock)


async def patient(probe: Probe, workers: int, *, clock: Clock = SYSTEM_CLOCK) -> Seen:
    """``workers`` loops, each waiting out its own request's Retry-After."""
    return await _waiting(probe, workers, RetryAfter.OWN, clock)


async def _waiting(probe: Probe, workers: int, wait: RetryAfter, clock: Clock) -> Seen:
    seen = Seen()
    async with _session(workers) as session:
        sender = _Sender(probe, session, seen)
        await retry_loops(sender.send, workers, seen, Loops(probe.run_s, probe.max_sends, wait),
                          clock=clock)
    return seen


class RetryAfter(enum.Enum):
    """What a loop does with a 429: ignore Retry-After (a short pause only), wait its own, or
    close one gate for every loop of the client."""

    IGNORED = "ignored"
    OWN = "own"
    SHARED = "shared"


@dataclass(frozen=True, slots=True)
class Loops:
    """How long the loops run, how many requests they send at most, and how they wait."""

    run_s: float
    max_sends: int
    wait: RetryAfter = RetryAfter.IGNORED
    pause_s: float = 0.02
    """After a 429 whose Retry-After is ignored: only so a refusal loop does not spin."""


async def retry_loops(send: Callable[[], Awaitable[tuple[int, float]]], workers: int,
                      seen: Seen, loops: Loops, *, clock: Clock) -> None:
    """``workers`` loops each calling ``send`` as soon as its last answer came (and the gate,
    if shared, is open), until ``run_s`` passes or ``seen`` has ``max_sends``; a 429 waits as
    ``loops.wait`` says."""
    deadline_s = clock.monotonic_s() + loops.run_s
    gate_until_s = [0.0]

    def going() -> bool:
        return clock.monotonic_s() < deadline_s and seen.sent < loops.max_sends

    async def loop() -> None:
        while going():
            await clock.sleep(gate_until_s[0] - clock.monotonic_s())
            if not going():
                return
            status, retry_after_s = await send()
            if status != 429:
                continue
            if loops.wait is RetryAfter.SHARED:
                gate_until_s[0] = max(gate_until_s[0], clock.monotonic_s() + retry_after_s)
            else:
                await clock.sleep(retry_after_s if loops.wait is RetryAfter.OWN
                                  else loops.pause_s)

    await asyncio.gather(*(loop() for _ in range(workers)))


Send = Callable[[], Awaitable[tuple[int, float]]]
"""One request of a probe: its status and Retry-After (0 when none)."""


async def greedy_with(sender: Callable[[aiohttp.ClientSession, Seen], Send],
                      session: aiohttp.ClientSession, workers: int, *, run_s: float,
                      max_sends: int, pause_s: float, clock: Clock) -> Seen:
    """The greedy client of both emulators: ``retry_loops`` that ignore Retry-After, sending
    through ``session`` what ``sender`` builds for it."""
    seen = Seen()
    async with session:
        await retry_loops(sender(session, seen), workers, seen,
                          Loops(run_s, max_sends, pause_s=pause_s), clock=clock)
    return seen


def oracle_interval_s(config: EmulatorConfig, mode: str, margin: float) -> float:
    """Seconds between two requests to one server at ``margin`` of the most the limits admit
    in a steady state: the request facet's ``max_requests / window``, the concurrency facet's
    ``max_concurrent / cost``, and execution time as ``limits`` counts it (a request's whole
    cost is committed when it starts, so a window's budget holds the requests started in it
    plus what those before it still run: about ``max_exec / (cost * (window + cost))`` per
    second)."""
    _, cost_s = request_shape(config, mode)
    rates = [config.max_requests / config.window_s]
    if cost_s > 0:
        rates += [config.max_concurrent / cost_s,
                  config.max_exec_ms / 1000 / (cost_s * (config.window_s + cost_s))]
    return 1.0 / (min(rates) * margin)


async def oracle(probe: Probe, config: EmulatorConfig, *, margin: float = 0.95,
                 clock: Clock = SYSTEM_CLOCK) -> Seen:
    """One paced stream per server, pinned by the affinity cookie."""
    if not 0 < margin <= 1:
        raise ValueError(f"margin must be in (0, 1], got {margin}")
    seen = Seen()
    interval_s = oracle_interval_s(config, "bulk" if probe.mode == "bulk" else "single",
                                   margin)
    deadline_s = clock.monotonic_s() + probe.run_s
    async with _session(config.max_concurrent * config.servers) as session:
        sender = _Sender(probe, session, seen)

        async def stream(server: str) -> None:
            slots, tasks = asyncio.Semaphore(config.max_concurrent), set()
            pause_until_s = 0.0

            async def one() -> None:
                nonlocal pause_until_s
                async with slots:
                    status, retry_after_s = await sender.send(server)
                if status == 429:
                    pause_until_s = clock.monotonic_s() + retry_after_s

            while clock.monotonic_s() < deadline_s and seen.sent < probe.max_sends:
                await clock.sleep(max(0.0, pause_until_s - clock.monotonic_s()))
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await clock.sleep(interval_s)
            await asyncio.gather(*tasks)

        await asyncio.gather(*(stream(f"server-{n}") for n in range(config.servers)))
    return seen
