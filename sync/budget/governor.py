"""The per-process governor of Dataverse requests: a share of the DOP hint, AIMD, a gate.

One governor serves every invocation a worker process runs at once:

- at most ``min(limit, share)`` requests in flight. ``share`` is the number of request slots
  this instance holds from the cluster-wide pool (sync.budget.slots, set by
  sync.budget.cluster), and may be zero: then nothing enters; a waiter gives up after
  ``max_wait_s`` and raises Throttled (``retry_after_s = no_slot_retry_s``) so its work goes
  back on the queue. A share is valid for a time (``valid_for_s``): unless renewed by then it
  falls to zero, so an instance that cannot reach the shared state stops sending before its
  slots lapse;
- ``limit`` is what the service's own evidence allows: it starts at the ceiling and only the
  concurrency error (0x80072326) lowers it, to half of what was allowed (once per cool-down);
  every ``limit`` successes add one back, and once it is back at ``share`` it is unbound again
  (the ceiling): additive increase, multiplicative decrease. A share moves what is allowed at
  once, both ways: a new share is the cluster's split of the hint, not a sign that the service
  wants less, so a cold instance sends at its whole share from its first refresh on;
- a 429 speaks for what its evidence covers. Dataverse's limits are per web server over sliding
  windows that free as they slide (``waits_in_place``): a short 429 (Retry-After within
  ``max_wait_s``) covers the request that met it, which waits its own Retry-After in place and
  goes again (``sync.budget.dependency``) while the others keep the pipeline full, as
  Microsoft's guidance asks of a client ("let Retry-After pace you"). A 429 that asks for longer
  than a request may wait in place, or that ends later than the last one of its code said (the
  service lengthens throttles for clients that keep pushing: ``LENGTHENED_S``), closes the gate
  for every request until then; so does every 429 of an API with one bucket (the enrichment
  API's), where a request sent before the bucket refills is refused too; entering while the gate
  is closed waits for it when it opens within ``max_wait_s``, and otherwise raises Throttled at
  once so the caller puts its work back on the queue instead of sleeping inside an invocation.

Waiters are futures woken by releases and by a timer on the injected clock (``Clock.call_later``)
when the gate opens; nothing polls.
They are admitted oldest ticket first, and nobody enters ahead of an older waiter: a call keeps
the ticket it took when it first asked (``ticket()``, ``entry(ticket)``) through its retries,
so a request that was throttled and tries again goes before requests that asked after it. The
records of the message that started first are served first: under a rate-limited service
messages finish one after another instead of all together at the end.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import Callable
from itertools import islice
from types import TracebackType
from typing import Final

from sync.clock import SYSTEM_CLOCK, Clock, Timer
from sync.failures.errors import Throttled

CONCURRENCY_CODE: Final = "0x80072326"
NEVER: Final = float("-inf")
GATE_CODE: Final = "gate"
"""Code of the Throttled raised by a closed gate or for want of a slot: no request was sent,
nothing was answered."""
LENGTHENED_S: Final = 1.0
"""A 429 whose Retry-After ends this much later than the last one of its code said (while that
one still ran) shows the service lengthening the throttle: the gate closes for all."""
DECREASE_COOLDOWN_S: Final = 1.0
"""After a decrease, further concurrency errors within this time are answers to the same burst."""


def closes_for_all(retry_after_s: float, max_wait_s: float, now_s: float, last_until_s: float,
                   ) -> bool:
    """Whether a 429 closes the gate for every request: it asks for longer than a request may
    wait in place, or it ends ``LENGTHENED_S`` or more after the last 429 of its code said while
    that one still ran. Otherwise it covers only the request that met it."""
    if retry_after_s > max_wait_s:
        return True
    return last_until_s > now_s and now_s + retry_after_s >= last_until_s + LENGTHENED_S


def decreased(limit: int) -> int:
    """Multiplicative decrease: half, at least 1."""
    return max(1, limit // 2)


def paced(limit: int, headroom: int | None, instances: int, in_flight: int = 0) -> int:
    """The limit after pacing: the requests already in flight when the server answered (its
    window has counted them) plus this instance's part of what it says is left
    (``x-ms-ratelimit-*``), never above ``limit`` and at least 1 (a probe); a limit of 0 (no
    request slot held) stays 0.

    Self-clocking: at the window's edge the answers report budget as old spend leaves the
    window, and the requests in flight keep going, so a client at the ceiling stays there
    instead of falling to one request whenever little is left."""
    if limit < 1 or headroom is None:
        return limit
    return max(1, min(limit, in_flight + headroom // max(1, instances)))


def increased(limit: int, successes: int, share: int) -> tuple[int, int]:
    """Additive increase of a limit held below ``share``: one more after ``limit`` successes.
    A limit at or above the share does not bind, and stays (a share of zero slots says
    nothing of what the server tolerates)."""
    if share < 1 or limit >= share:
        return limit, 0
    if successes + 1 >= limit:
        return limit + 1, 0
    return limit, successes + 1


def allowed(limit: int, share: int) -> int:
    """Requests that may be in flight before pacing: the share, or less while a concurrency
    error holds the limit below it."""
    return min(limit, share)


class Governor:
    """An async context manager admitting requests under the limit and the gate."""

    __slots__ = ("_ceiling", "_clock", "_expiry_handle", "_gate_handle", "_gate_until_s",
                 "_headroom", "_headroom_base", "_in_flight", "_instances", "_last_asked_s",
                 "_last_decrease_s", "_limit", "_max_wait_s", "_no_slot_retry_s", "_share",
                 "_successes", "_throttled_until_s", "_tickets", "_waiters", "_waits_in_place",
                 "on_starved", "service")

    def __init__(self, share: int, *, service: str = "dataverse", max_wait_s: float = 2.0,
                 ceiling: int | None = None, no_slot_retry_s: float = 2.0,
                 clock: Clock = SYSTEM_CLOCK, waits_in_place: bool = False) -> None:
        """``share`` slots to start with (0: none until the cluster grants some); the limit
        starts at ``ceiling`` (by default the share), above any share.
        ``waits_in_place``: a short 429 covers only the request that met it (Dataverse: limits
        per web server over sliding windows, which free as they slide); else every 429 covers
        every request (an API with one bucket, like the enrichment API's, where any request
        sent before the bucket refills is refused too)."""
        if share < 0:
            raise ValueError(f"share must not be negative, got {share}")
        if ceiling is not None and ceiling < 1:
            raise ValueError(f"ceiling must be at least 1, got {ceiling}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must not be negative, got {max_wait_s}")
        if no_slot_retry_s <= 0:
            raise ValueError(f"no_slot_retry_s must be positive, got {no_slot_retry_s}")
        self.service = service
        """The service whose requests this governor admits (named by its gate's Throttled)."""
        self.on_starved: Callable[[], None] = lambda: None
        """Told when a request has to wait for want of a slot (the cluster may refresh now)."""
        self._clock = clock
        self._share = share
        self._ceiling = max(1, ceiling if ceiling is not None else share)
        self._limit = self._ceiling
        self._max_wait_s, self._no_slot_retry_s = max_wait_s, no_slot_retry_s
        self._expiry_handle: Timer | None = None
        self._in_flight = self._successes = 0
        self._gate_until_s = self._last_decrease_s = self._last_asked_s = float("-inf")
        self._gate_handle: Timer | None = None
        self._headroom: int | None = None
        self._headroom_base = 0
        """Requests in flight besides the one answered when the headroom was reported."""
        self._instances = 1
        self._waits_in_place = waits_in_place
        self._throttled_until_s: dict[str, float] = {}
        """By 429 code: when the last throttle of that code said to wait until."""
        self._tickets = itertools.count()
        self._waiters: list[_Waiter] = []
        """Sorted by ticket (then arrival): who enters next."""

    def __repr__(self) -> str:
        gate_s = max(0.0, self._gate_until_s - self._clock.monotonic_s())
        return (f"Governor(limit={self.allowed}, share={self._share}, in_flight={self._in_flight},"
                f" headroom={self._headroom}, waiting={len(self._waiters)}, "
                f"gate_closed_for_s={gate_s:.1f})")

    @property
    def limit(self) -> int:
        """What the service's concurrency errors allow (the ceiling when none holds it)."""
        return self._limit

    @property
    def allowed(self) -> int:
        """Requests that may be in flight now, before pacing: the share, or the limit when a
        concurrency error holds it lower."""
        return allowed(self._limit, self._share)

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

    @property
    def waiting(self) -> int:
        """Requests waiting to enter."""
        return len(self._waiters)

    def idle_s(self) -> float:
        """Seconds since a request last asked to enter (admitted or not): the demand an
        instance holding no slot shows the cluster."""
        return self._clock.monotonic_s() - self._last_asked_s

    def gate_remaining_s(self) -> float:
        """Seconds until the gate opens; 0 when open."""
        return max(0.0, self._gate_until_s - self._clock.monotonic_s())

    def note_headroom(self, headroom: int | None) -> None:
        """What the last answer said is left of the window (None: the server does not say)."""
        self._headroom = headroom
        self._headroom_base = max(0, self._in_flight - 1)
        self._wake()

    def set_share(self, share: int, instances: int = 1, valid_for_s: float | None = None) -> None:
        """A new share (slots held), in force at once both ways. With ``valid_for_s`` the share
        falls to zero that long from now unless set again."""
        if share < 0:
            raise ValueError(f"share must not be negative, got {share}")
        self._instances = max(1, instances)
        self._share = share
        if self._expiry_handle is not None:
            self._expiry_handle.cancel()
            self._expiry_handle = None
        if valid_for_s is not None and share > 0:
            self._expiry_handle = self._clock.call_later(max(0.0, valid_for_s),
                                                         self._expire_share)
        self._wake()
        if share == 0:
            self._wake_all()  # they learn there is no slot, and wait out max_wait_s for one

    def _expire_share(self) -> None:
        self._expiry_handle = None
        self._share = 0
        self._wake_all()

    def close_gate(self, retry_after_s: float) -> None:
        """No request enters before now + ``retry_after_s`` (a later closing wins)."""
        until_s = self._clock.monotonic_s() + retry_after_s
        if until_s <= self._gate_until_s:
            return
        self._gate_until_s = until_s
        if self._gate_handle is not None:
            self._gate_handle.cancel()
        self._gate_handle = self._clock.call_later(retry_after_s, self._wake)
        if retry_after_s > self._max_wait_s:
            self._wake_all()

    def throttled(self, error: Throttled) -> bool:
        """A 429: the gate closes for all when its evidence covers all (``closes_for_all``),
        else only the request that met it waits; the concurrency error also halves the limit.
        Answers whether the gate closed for all."""
        now_s = self._clock.monotonic_s()
        last_until_s = self._throttled_until_s.get(error.code, NEVER)
        self._throttled_until_s[error.code] = max(last_until_s, now_s + error.retry_after_s)
        for_all = not self._waits_in_place or closes_for_all(
            error.retry_after_s, self._max_wait_s, now_s, last_until_s)
        if for_all:
            self.close_gate(error.retry_after_s)
        if error.code == CONCURRENCY_CODE and now_s - self._last_decrease_s >= DECREASE_COOLDOWN_S:
            self._limit = decreased(allowed(self._limit, max(1, self._share)))
            self._successes = 0
            self._last_decrease_s = now_s
        return for_all

    def succeeded(self) -> None:
        """A request answered without throttling: a limit held below the share grows back,
        and is unbound once it reaches it."""
        limit, self._successes = increased(self._limit, self._successes, self._share)
        self._limit = self._ceiling if 0 < self._share <= limit else limit
        self._wake()

    def ticket(self) -> int:
        """A place in line, taken when a call first asks and kept through its retries."""
        return next(self._tickets)

    def entry(self, ticket: int) -> _Entry:
        """``async with governor.entry(ticket)``: admission in ``ticket``'s place in line."""
        return _Entry(self, ticket)

    async def __aenter__(self) -> None:
        await self.enter(self.ticket())

    async def enter(self, ticket: int) -> None:
        """Wait for admission (see ``__aenter__``'s rules) in ``ticket``'s place in line."""
        self._last_asked_s = self._clock.monotonic_s()
        give_up_s = self._last_asked_s + self._max_wait_s
        if self._share == 0:
            self.on_starved()
        while not self._may_enter(ticket):
            gate_s = self.gate_remaining_s()
            if gate_s > self._max_wait_s:
                raise Throttled(self.service, gate_s, GATE_CODE)
            if self._share == 0 and self._clock.monotonic_s() >= give_up_s:
                raise Throttled(self.service, self._no_slot_retry_s, GATE_CODE)
            await self._wait(ticket, give_up_s if self._share == 0 else None)
        self._in_flight += 1

    async def _wait(self, ticket: int, give_up_s: float | None) -> None:
        """Until woken (a release, a share, the gate opening) or, holding no slot, until
        ``give_up_s``. A waiter woken that leaves without entering (cancelled, given up, or
        behind an older one) passes the wake on."""
        waiter = _Waiter(ticket, next(self._tickets), asyncio.get_running_loop().create_future())
        bisect.insort(self._waiters, waiter)
        timer = None if give_up_s is None else self._clock.call_later(
            give_up_s - self._clock.monotonic_s(), lambda: _wake(waiter))
        try:
            await waiter.future
        except BaseException:
            self._out_of_line(waiter, timer)
            if waiter.future.done() and not waiter.future.cancelled():
                self._wake()  # woken, but leaving: the room goes to the next in line
            raise
        self._out_of_line(waiter, timer)

    def _out_of_line(self, waiter: _Waiter, timer: Timer | None) -> None:
        if timer is not None:
            timer.cancel()
        self._waiters.remove(waiter)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.leave()

    def leave(self) -> None:
        """A request admitted earlier is done."""
        self._in_flight -= 1
        self._wake()

    def _may_enter(self, ticket: int) -> bool:
        first = self._waiters[0].ticket if self._waiters else ticket
        return (self.gate_remaining_s() == 0 and self._in_flight < self._room()
                and ticket <= first)

    def _room(self) -> int:
        return paced(self.allowed, self._headroom, self._instances,
                     self._headroom_base)

    def _wake(self) -> None:
        """Wake as many waiters as may now enter; each re-checks when it runs."""
        if self.gate_remaining_s() > 0:
            return
        room = self._room() - self._in_flight
        if room > 0:
            for waiter in islice(self._waiters, room):  # no copy of a long queue
                _wake(waiter)

    def _wake_all(self) -> None:
        """Wake every waiter, e.g. so they learn the gate now closes for too long to wait."""
        for waiter in self._waiters:
            _wake(waiter)


class _Waiter:
    """One request waiting for admission, in line by ``ticket`` (then by ``seq``)."""

    __slots__ = ("future", "seq", "ticket")

    def __init__(self, ticket: int, seq: int, future: asyncio.Future[None]) -> None:
        self.ticket, self.seq, self.future = ticket, seq, future

    def __lt__(self, other: _Waiter) -> bool:
        return (self.ticket, self.seq) < (other.ticket, other.seq)


class _Entry:
    """``Governor.entry(ticket)``: the governor's admission with a ticket kept from before."""

    __slots__ = ("_governor", "_ticket")

    def __init__(self, governor: Governor, ticket: int) -> None:
        self._governor, self._ticket = governor, ticket

    async def __aenter__(self) -> None:
        await self._governor.enter(self._ticket)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self._governor.leave()


def _wake(waiter: _Waiter) -> None:
    if not waiter.future.done():
        waiter.future.set_result(None)
