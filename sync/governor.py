"""The per-process governor of Dataverse requests: a share of the DOP hint, AIMD, a gate.

One governor serves every invocation a worker process runs at once:

- at most ``limit`` requests in flight; ``limit`` never exceeds ``share``, this instance's part
  of the environment's DOP hint (set from the cluster state, see sync.cluster);
- the concurrency error (0x80072326) halves ``limit`` (once per cool-down), and every ``limit``
  successes add one back, up to ``share``: additive increase, multiplicative decrease;
- any 429 closes the gate until now + Retry-After; entering while the gate is closed waits for
  it when it opens within ``max_wait_s``, and otherwise raises Throttled at once so the caller
  puts its work back on the queue instead of sleeping inside an invocation.

Waiters are futures woken by releases and by ``loop.call_at`` when the gate opens; nothing polls.
"""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType
from typing import Final

from sync.errors import Throttled

CONCURRENCY_CODE: Final = "0x80072326"
GATE_CODE: Final = "gate"
"""Code of the Throttled raised by a closed gate: no request was sent, nothing was answered."""
DECREASE_COOLDOWN_S: Final = 1.0
"""After a decrease, further concurrency errors within this time are answers to the same burst."""


def decreased(limit: int) -> int:
    """Multiplicative decrease: half, at least 1."""
    return max(1, limit // 2)


def paced(limit: int, headroom: int | None, instances: int, in_flight: int = 0) -> int:
    """The limit after pacing: the requests already in flight when the server answered (its
    window has counted them) plus this instance's part of what it says is left
    (``x-ms-ratelimit-*``), never above ``limit`` and at least 1 (a probe).

    Self-clocking: at the window's edge the answers report budget as old spend leaves the
    window, and the requests in flight keep going, so a client at the ceiling stays there
    instead of falling to one request whenever little is left."""
    if headroom is None:
        return limit
    return max(1, min(limit, in_flight + headroom // max(1, instances)))


def increased(limit: int, successes: int, share: int) -> tuple[int, int]:
    """Additive increase: one more slot after ``limit`` successes, never above ``share``."""
    if successes + 1 >= limit:
        return min(share, limit + 1), 0
    return min(share, limit), successes + 1


class Governor:
    """An async context manager admitting requests under the limit and the gate."""

    __slots__ = ("_gate_handle", "_gate_until_s", "_headroom", "_headroom_base", "_in_flight",
                 "_instances",
                 "_last_decrease_s", "_limit", "_loop", "_max_wait_s", "_share", "_successes",
                 "_waiters", "service")

    def __init__(self, share: int, *, service: str = "dataverse", max_wait_s: float = 2.0,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        if share < 1:
            raise ValueError(f"share must be at least 1, got {share}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must not be negative, got {max_wait_s}")
        self.service = service
        """The service whose requests this governor admits (named by its gate's Throttled)."""
        self._loop = loop or asyncio.get_running_loop()
        self._share = self._limit = share
        self._max_wait_s = max_wait_s
        self._in_flight = self._successes = 0
        self._gate_until_s = self._last_decrease_s = float("-inf")
        self._gate_handle: asyncio.TimerHandle | None = None
        self._headroom: int | None = None
        self._headroom_base = 0
        """Requests in flight besides the one answered when the headroom was reported."""
        self._instances = 1
        self._waiters: deque[asyncio.Future[None]] = deque()

    def __repr__(self) -> str:
        gate_s = max(0.0, self._gate_until_s - self._loop.time())
        return (f"Governor(limit={self._limit}, share={self._share}, in_flight={self._in_flight},"
                f" headroom={self._headroom}, waiting={len(self._waiters)}, "
                f"gate_closed_for_s={gate_s:.1f})")

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def share(self) -> int:
        return self._share

    @property
    def max_wait_s(self) -> float:
        """The longest wait for the gate this governor accepts inside an invocation."""
        return self._max_wait_s

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def gate_remaining_s(self) -> float:
        """Seconds until the gate opens; 0 when open."""
        return max(0.0, self._gate_until_s - self._loop.time())

    def note_headroom(self, headroom: int | None) -> None:
        """What the last answer said is left of the window (None: the server does not say)."""
        self._headroom = headroom
        self._headroom_base = max(0, self._in_flight - 1)
        self._wake()

    def set_share(self, share: int, instances: int = 1) -> None:
        """A new share of the DOP hint; the limit follows it down at once, up by AIMD."""
        self._instances = max(1, instances)
        self._share = max(1, share)
        self._limit = min(self._limit, self._share)
        self._wake()

    def close_gate(self, retry_after_s: float) -> None:
        """No request enters before now + ``retry_after_s`` (a later closing wins)."""
        until_s = self._loop.time() + retry_after_s
        if until_s <= self._gate_until_s:
            return
        self._gate_until_s = until_s
        if self._gate_handle is not None:
            self._gate_handle.cancel()
        self._gate_handle = self._loop.call_at(until_s, self._wake)
        if retry_after_s > self._max_wait_s:
            self._wake_all()

    def throttled(self, error: Throttled) -> None:
        """A 429: close the gate; the concurrency error also halves the limit."""
        self.close_gate(error.retry_after_s)
        now_s = self._loop.time()
        if error.code == CONCURRENCY_CODE and now_s - self._last_decrease_s >= DECREASE_COOLDOWN_S:
            self._limit, self._successes = decreased(self._limit), 0
            self._last_decrease_s = now_s

    def succeeded(self) -> None:
        """A request answered without throttling."""
        self._limit, self._successes = increased(self._limit, self._successes, self._share)
        self._wake()

    async def __aenter__(self) -> None:
        while not self._may_enter():
            gate_s = self.gate_remaining_s()
            if gate_s > self._max_wait_s:
                raise Throttled(self.service, gate_s, GATE_CODE)
            waiter: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self._in_flight += 1

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._in_flight -= 1
        self._wake()

    def _may_enter(self) -> bool:
        return self.gate_remaining_s() == 0 and self._in_flight < self._room()

    def _room(self) -> int:
        return paced(self._limit, self._headroom, self._instances, self._headroom_base)

    def _wake(self) -> None:
        """Wake as many waiters as may now enter; each re-checks when it runs."""
        if self.gate_remaining_s() > 0:
            return
        room = self._room() - self._in_flight
        for waiter in list(self._waiters)[: max(room, 0)]:
            if not waiter.done():
                waiter.set_result(None)

    def _wake_all(self) -> None:
        """Wake every waiter, e.g. so they learn the gate now closes for too long to wait."""
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
