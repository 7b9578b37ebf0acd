"""The governor's arithmetic and admission on a fake clock: nothing here sleeps for real."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from sync.budget.dependency import Dependency
from sync.budget.governor import (
    CONCURRENCY_CODE,
    GATE_CODE,
    NEVER,
    Governor,
    allowed,
    closes_for_all,
    decreased,
    increased,
    paced,
)
from sync.clients.dataverse import headroom_from
from sync.clock import ManualClock
from sync.failures.circuit import Circuit, CircuitPolicy
from sync.failures.errors import Throttled
from sync.failures.retry import RetryPolicy


class FakeClock:
    """The governor's injected clock; ``advance`` moves it and lets the woken waiters run."""

    def __init__(self) -> None:
        self.manual = ManualClock(1000.0)

    async def advance(self, seconds: float) -> None:
        self.manual.advance(seconds)
        for _ in range(5):
            await asyncio.sleep(0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.parametrize(("limit", "expected"), [(1, 1), (2, 1), (7, 3), (50, 25)])
def test_decrease_halves(limit: int, expected: int) -> None:
    assert decreased(limit) == expected


@pytest.mark.parametrize(("limit", "successes", "share", "expected"), [
    (4, 0, 10, (4, 1)),     # counting
    (4, 3, 10, (5, 0)),     # the limit-th success adds one
    (9, 8, 10, (10, 0)),    # back at the share (the governor then unbinds it)
    (10, 9, 10, (10, 0)),   # at the share: not binding, kept
    (52, 0, 10, (52, 0)),   # above the share: not binding, kept
    (1, 0, 10, (2, 0)),
    (1, 0, 0, (1, 0)),      # no slot held: the limit stays at 1, not 0
])
def test_increase_is_additive_below_the_share(limit: int, successes: int, share: int,
                                         expected: tuple[int, int]) -> None:
    assert increased(limit, successes, share) == expected


async def test_impossible_requests_fail_early() -> None:
    with pytest.raises(ValueError, match="share"):
        Governor(-1)
    with pytest.raises(ValueError, match="max_wait_s"):
        Governor(1, max_wait_s=-1)
    with pytest.raises(ValueError, match="ceiling"):
        Governor(0, ceiling=0)
    with pytest.raises(ValueError, match="no_slot_retry_s"):
        Governor(0, no_slot_retry_s=0)
    with pytest.raises(ValueError, match="share"):
        Governor(1).set_share(-1)


async def hold(governor: Governor, release: asyncio.Event, entered: list[int], n: int) -> None:
    async with governor:
        entered.append(n)
        await release.wait()


async def test_at_most_limit_in_flight(clock: FakeClock) -> None:
    governor = Governor(3, clock=clock.manual)
    release, entered = asyncio.Event(), list[int]()
    tasks = [asyncio.create_task(hold(governor, release, entered, n)) for n in range(8)]
    await settle()
    assert len(entered) == 3
    assert governor.in_flight == 3
    release.set()
    await asyncio.gather(*tasks)
    assert sorted(entered) == list(range(8))
    assert governor.in_flight == 0


async def test_concurrency_error_halves_once_per_cooldown(clock: FakeClock) -> None:
    governor = Governor(16, clock=clock.manual)
    error = Throttled("dataverse", 0.0, CONCURRENCY_CODE)
    governor.throttled(error)
    governor.throttled(error)  # the same burst answering: ignored
    assert governor.limit == 8
    await clock.advance(1.5)
    governor.throttled(error)
    assert governor.limit == 4


async def test_other_429s_close_the_gate_without_halving(clock: FakeClock) -> None:
    governor = Governor(16, clock=clock.manual)
    governor.throttled(Throttled("dataverse", 1.0, "0x80072322"))
    assert governor.limit == 16
    assert governor.gate_remaining_s() == pytest.approx(1.0)


async def test_successes_grow_the_limit_back_to_the_share(clock: FakeClock) -> None:
    governor = Governor(4, clock=clock.manual)
    governor.throttled(Throttled("dataverse", 0.0, CONCURRENCY_CODE))
    assert governor.limit == 2
    for _ in range(2):
        governor.succeeded()
    assert governor.limit == 3
    for _ in range(20):
        governor.succeeded()
    assert governor.limit == 4


async def test_a_share_moves_what_is_allowed_at_once_both_ways(clock: FakeClock) -> None:
    governor = Governor(10, clock=clock.manual)
    governor.set_share(4)
    assert (governor.allowed, governor.limit) == (4, 10)
    governor.set_share(8)
    assert governor.allowed == 8  # the cluster's split, not the service asking for less


async def test_a_cold_instance_sends_its_whole_share_from_the_first_refresh(
        clock: FakeClock) -> None:
    """Before any hint is known the pool is one slot; the first refresh after the hint grants
    the whole share, and all of it is usable at once (no ramp from one request)."""
    governor = Governor(0, ceiling=52, clock=clock.manual)
    assert (governor.limit, governor.allowed) == (52, 0)
    governor.set_share(1)
    governor.succeeded()
    assert governor.allowed == 1
    governor.set_share(20)
    assert governor.allowed == 20
    release, entered = asyncio.Event(), list[int]()
    tasks = [asyncio.create_task(hold(governor, release, entered, n)) for n in range(25)]
    await settle()
    assert governor.in_flight == 20
    release.set()
    await asyncio.gather(*tasks)


async def test_a_concurrency_error_holds_the_limit_below_the_share_until_it_grows_back(
        clock: FakeClock) -> None:
    governor = Governor(0, ceiling=52, clock=clock.manual)
    governor.set_share(20)
    governor.throttled(Throttled("dataverse", 0.0, CONCURRENCY_CODE))
    assert governor.allowed == 10  # half of what was allowed, not of the ceiling
    governor.set_share(40)
    assert governor.allowed == 10  # a larger share does not erase the service's answer
    for _ in range(10 + 11 + 12 + 13):
        governor.succeeded()
    assert governor.allowed == 14
    governor.set_share(14)
    governor.succeeded()
    assert (governor.limit, governor.allowed) == (52, 14)  # back at the share: unbound
    governor.set_share(30)
    assert governor.allowed == 30


@pytest.mark.parametrize(("limit", "share", "expected"), [
    (10, 4, 4), (4, 8, 4), (52, 0, 0), (52, 20, 20)])
def test_allowed_is_the_lower_of_limit_and_share(limit: int, share: int, expected: int) -> None:
    assert allowed(limit, share) == expected


async def test_no_slot_admits_nothing_and_gives_up_after_max_wait(clock: FakeClock) -> None:
    governor = Governor(0, ceiling=4, max_wait_s=2.0, no_slot_retry_s=3.0, clock=clock.manual)
    release, entered = asyncio.Event(), list[int]()
    task = asyncio.create_task(hold(governor, release, entered, 1))
    await settle()
    await clock.advance(1.9)
    assert entered == []
    assert not task.done()
    await clock.advance(0.2)
    with pytest.raises(Throttled) as caught:
        await task
    assert (caught.value.code, caught.value.retry_after_s) == (GATE_CODE, 3.0)
    assert governor.in_flight == 0


async def test_a_slot_granted_while_waiting_admits_the_waiter(clock: FakeClock) -> None:
    governor = Governor(0, ceiling=4, max_wait_s=2.0, clock=clock.manual)
    release, entered = asyncio.Event(), list[int]()
    task = asyncio.create_task(hold(governor, release, entered, 1))
    await settle()
    await clock.advance(1.0)
    governor.set_share(1)
    await settle()
    assert entered == [1]
    release.set()
    await task


async def test_a_share_falls_to_zero_when_not_renewed(clock: FakeClock) -> None:
    governor = Governor(0, ceiling=4, max_wait_s=0.0, clock=clock.manual)
    governor.set_share(2, valid_for_s=5.0)
    await clock.advance(4.0)
    assert governor.share == 2
    governor.set_share(2, valid_for_s=5.0)  # renewed: the old expiry no longer counts
    await clock.advance(4.0)
    assert governor.share == 2
    await clock.advance(1.5)
    assert governor.share == 0
    with pytest.raises(Throttled):
        async with governor:
            pytest.fail("entered without a slot")


async def test_a_refused_request_still_shows_demand(clock: FakeClock) -> None:
    governor = Governor(0, ceiling=4, max_wait_s=0.0, clock=clock.manual)
    assert governor.idle_s() == float("inf")
    with pytest.raises(Throttled):
        async with governor:
            pytest.fail("entered without a slot")
    await clock.advance(3.0)
    assert governor.idle_s() == pytest.approx(3.0)  # the cluster counts it as busy


async def test_losing_the_share_sends_waiters_back_to_the_queue(clock: FakeClock) -> None:
    governor = Governor(1, max_wait_s=1.0, clock=clock.manual)
    release, entered = asyncio.Event(), list[int]()
    first = asyncio.create_task(hold(governor, release, entered, 1))
    second = asyncio.create_task(hold(governor, release, entered, 2))
    await settle()
    governor.set_share(0)
    await clock.advance(1.1)
    with pytest.raises(Throttled):
        await second
    assert governor.in_flight == 1  # the one already sent finishes; nothing new enters
    release.set()
    await first
    assert entered == [1]


async def test_short_gate_is_waited_for_on_the_injected_clock(clock: FakeClock) -> None:
    governor = Governor(4, max_wait_s=2.0, clock=clock.manual)
    governor.close_gate(1.5)
    release, entered = asyncio.Event(), list[int]()
    task = asyncio.create_task(hold(governor, release, entered, 1))
    await settle()
    assert entered == []
    await clock.advance(1.0)
    assert entered == []
    await clock.advance(0.6)
    assert entered == [1]
    release.set()
    await task


async def test_long_gate_raises_throttled_at_once(clock: FakeClock) -> None:
    governor = Governor(4, service="enrichment", max_wait_s=2.0, clock=clock.manual)
    governor.close_gate(30.0)
    with pytest.raises(Throttled) as caught:
        async with governor:
            pytest.fail("entered a closed gate")
    assert caught.value.retry_after_s == pytest.approx(30.0)
    assert caught.value.service == "enrichment"  # it stops that service's sends, not another


async def test_waiters_give_up_when_the_gate_closes_for_long(clock: FakeClock) -> None:
    governor = Governor(1, max_wait_s=2.0, clock=clock.manual)
    release, entered = asyncio.Event(), list[int]()
    first = asyncio.create_task(hold(governor, release, entered, 1))
    second = asyncio.create_task(hold(governor, release, entered, 2))
    await settle()
    governor.close_gate(10.0)
    await settle()
    with pytest.raises(Throttled):
        await second
    release.set()
    await first
    assert entered == [1]


async def test_a_later_gate_wins_an_earlier_one_does_not_shorten(clock: FakeClock) -> None:
    governor = Governor(1, clock=clock.manual)
    governor.close_gate(5.0)
    governor.close_gate(1.0)
    assert governor.gate_remaining_s() == pytest.approx(5.0)


async def test_repr_shows_live_state(clock: FakeClock) -> None:
    governor = Governor(6, clock=clock.manual)
    governor.close_gate(1.0)
    assert repr(governor) == ("Governor(limit=6, share=6, in_flight=0, headroom=None, "
                              "waiting=0, gate_closed_for_s=1.0)")


@pytest.mark.parametrize(("limit", "headroom", "instances", "expected"), [
    (10, None, 1, 10),   # the server says nothing: the limit
    (10, 500, 1, 10),    # plenty left
    (10, 4, 1, 4),       # only four more fit in the window
    (10, 0, 1, 1),       # none left: one probe, whose 429 closes the gate
    (10, 12, 3, 4),      # three instances draw on the same window
    (0, 500, 1, 0),      # no slot: no probe either
])
def test_pacing_by_what_the_window_has_left(limit: int, headroom: int | None, instances: int,
                                            expected: int) -> None:
    assert paced(limit, headroom, instances) == expected


@pytest.mark.parametrize(("limit", "headroom", "in_flight", "expected"), [
    (10, 0, 6, 6),       # at the window's edge the six in flight go on: no fall to one
    (10, 2, 6, 8),       # two more fit beside them
    (10, 50, 6, 10),     # never above the limit
    (10, 0, 0, 1),       # nothing in flight, nothing left: one probe
])
def test_pacing_counts_the_requests_the_window_already_holds(limit: int, headroom: int,
                                                             in_flight: int,
                                                             expected: int) -> None:
    assert paced(limit, headroom, 1, in_flight) == expected


async def test_headroom_caps_admission_until_it_grows(clock: FakeClock) -> None:
    governor = Governor(6, clock=clock.manual)
    governor.note_headroom(2)
    release, entered = asyncio.Event(), list[int]()
    tasks = [asyncio.create_task(hold(governor, release, entered, n)) for n in range(6)]
    await settle()
    assert len(entered) == 2
    governor.note_headroom(300)
    await settle()
    assert len(entered) == 6
    release.set()
    await asyncio.gather(*tasks)


@pytest.mark.parametrize(("requests_left", "time_left", "latency_ms", "expected"), [
    (None, None, 100.0, None),
    ("50", None, 100.0, 50),
    (None, "1.00", 100.0, None),      # time left for ten more: no brake
    ("50", "1.00", 100.0, 50),
    ("50", "0.05", 100.0, 0),         # less than one request's time: the brake
    ("3", "1,000.00", 100.0, 3),
    ("x", "y", 100.0, None),
])
def test_headroom_from_the_ratelimit_headers(requests_left: str | None,
                                             time_left: str | None, latency_ms: float,
                                             expected: int | None) -> None:
    """The time left is in seconds, as the service sends it (tests/test_ratelimit_headers.py)."""
    assert headroom_from(requests_left, time_left, latency_ms) == expected


BULK_LATENCY_MS = 1000.0
"""An UpdateMultiple of 100 targets at the Dataverse-bound scenario's 10 ms a target."""


async def answered_with(governor: Governor, answer: asyncio.Event, said: list[int | None],
                        entered: list[int], n: int) -> None:
    """One request: it enters, and when answered notes what the headers said while still in
    flight, as the Dataverse client does inside the governed call."""
    async with governor:
        entered.append(n)
        await answer.wait()
        governor.note_headroom(said[0])


async def test_the_service_header_formats_pace_like_no_headers_until_the_window_is_spent(
        clock: FakeClock) -> None:
    """The pacing decision with the headers as the service writes them: a fresh window admits
    the whole share, exactly as no headers do; less than one request's time left lets the
    requests in flight go on but starts nothing new; time back in the window starts new ones
    up to the share again."""
    fresh = headroom_from("5993", "1,200.00", BULK_LATENCY_MS)
    spent = headroom_from("5990", "0.40", BULK_LATENCY_MS)
    back = headroom_from("5988", "2.60", BULK_LATENCY_MS)
    assert paced(8, fresh, 1) == paced(8, headroom_from(None, None, BULK_LATENCY_MS), 1) == 8
    governor, said, entered = Governor(8, clock=clock.manual), [fresh], list[int]()
    answers = [asyncio.Event() for _ in range(12)]
    tasks = [asyncio.create_task(answered_with(governor, answers[n], said, entered, n))
             for n in range(12)]
    await settle()
    assert (len(entered), governor.in_flight) == (8, 8)
    said[0] = spent
    answers[0].set()
    await clock.advance(1.0)
    assert (len(entered), governor.in_flight) == (8, 7)
    said[0] = back
    answers[1].set()
    await clock.advance(1.0)
    assert (len(entered), governor.in_flight) == (10, 8)
    for answer in answers:
        answer.set()
    await asyncio.gather(*tasks)
    assert sorted(entered) == list(range(12))


# The line: oldest ticket first, retries keep their place.

async def take(governor: Governor, ticket: int, release: asyncio.Event,
               entered: list[str], name: str) -> None:
    async with governor.entry(ticket):
        entered.append(name)
        await release.wait()


async def test_a_call_that_asked_first_enters_first_whenever_it_asks_again(
        clock: FakeClock) -> None:
    """A retry brings back its first ticket: it goes before the requests that asked after it,
    though it joins the line after them."""
    governor = Governor(1, clock=clock.manual)
    early = governor.ticket()
    release, entered = asyncio.Event(), list[str]()
    holder = asyncio.create_task(take(governor, governor.ticket(), release, entered, "holder"))
    later = [asyncio.create_task(take(governor, governor.ticket(), release, entered, f"later-{n}"))
             for n in range(3)]
    await settle()
    retry = asyncio.create_task(take(governor, early, release, entered, "retry"))
    await settle()
    assert entered == ["holder"]
    release.set()
    await asyncio.gather(holder, retry, *later)
    assert entered == ["holder", "retry", "later-0", "later-1", "later-2"]


async def test_nobody_enters_ahead_of_an_older_waiter(clock: FakeClock) -> None:
    """A slot freed while a waiter is woken but has not run yet is not taken by a newcomer."""
    governor = Governor(1, clock=clock.manual)
    release, entered = asyncio.Event(), list[str]()
    holder = asyncio.create_task(take(governor, governor.ticket(), release, entered, "holder"))
    waiter = asyncio.create_task(take(governor, governor.ticket(), release, entered, "waiter"))
    await settle()
    release.set()
    newcomer = asyncio.create_task(take(governor, governor.ticket(), release, entered,
                                        "newcomer"))
    await asyncio.gather(holder, waiter, newcomer)
    assert entered == ["holder", "waiter", "newcomer"]


async def test_a_woken_waiter_that_leaves_passes_its_turn_on(clock: FakeClock) -> None:
    governor = Governor(1, clock=clock.manual)
    await governor.enter(governor.ticket())
    release, entered = asyncio.Event(), list[str]()
    leaving = asyncio.create_task(take(governor, governor.ticket(), release, entered, "leaving"))
    last = asyncio.create_task(take(governor, governor.ticket(), release, entered, "last"))
    await settle()
    governor.leave()  # wakes "leaving", which is cancelled before it runs
    leaving.cancel()
    release.set()
    await last
    assert entered == ["last"]
    assert leaving.cancelled()
    assert governor.in_flight == 0


async def test_a_throttled_call_goes_back_to_its_place_after_the_gate(clock: FakeClock) -> None:
    """Through the governed call: the first request of a message is refused with a short
    Retry-After; once the gate opens it is sent before every request that asked after it, so
    the message that started first finishes first."""
    governor = Governor(1, max_wait_s=2.0, clock=clock.manual)
    circuit = Circuit("enrichment", CircuitPolicy(), clock=ManualClock())
    dep = Dependency("enrichment", governor, circuit, RetryPolicy(0), clock=ManualClock())
    sent: list[str] = []
    refused = {"a-0"}

    def sender(name: str) -> Callable[[], Awaitable[str]]:
        async def send() -> str:
            sent.append(name)
            if name in refused:
                refused.discard(name)
                raise Throttled("enrichment", 0.5, "enrichment-429")
            return name
        return send

    calls = [asyncio.create_task(dep.call(sender(name), NoHooks()))
             for name in ("a-0", "a-1", "b-0", "b-1")]
    await settle()
    assert sent == ["a-0"]
    await clock.advance(0.6)
    assert await asyncio.gather(*calls) == ["a-0", "a-1", "b-0", "b-1"]
    assert sent == ["a-0", "a-0", "a-1", "b-0", "b-1"]


class NoHooks:
    """What a governed call reports, ignored."""

    def stop_delay(self, service: str) -> float | None:
        return None

    def count_429(self, error: Throttled) -> None:
        return None

    def count_retry(self, fault: Exception) -> None:
        return None

    def count_request(self, service: str, kind: str, *, retry: bool) -> None:
        return None


EXEC_CODE = "0x80072321"


@pytest.mark.parametrize(("retry_after_s", "last_until_s", "for_all"), [
    (1.0, NEVER, False),      # a short 429, the first of its code: the request waits alone
    (1.0, 100.5, False),      # within the throttle already running (rounded up to a second)
    (1.0, 99.0, False),       # the last one of its code is over: a new episode
    (3.0, NEVER, True),       # longer than a request may wait in place: back to the queue
    (2.0, 100.4, True),       # ends a second or more after the last one said: lengthened
], ids=["short", "same episode", "episode over", "long", "lengthened"])
def test_a_429_covers_every_request_only_on_evidence_that_covers_them(
        retry_after_s: float, last_until_s: float, for_all: bool) -> None:
    assert closes_for_all(retry_after_s, 2.0, 100.0, last_until_s) is for_all


async def test_a_short_429_at_dataverse_leaves_the_gate_open(clock: FakeClock) -> None:
    governor = Governor(4, clock=clock.manual, waits_in_place=True)
    assert governor.throttled(Throttled("dataverse", 1.0, EXEC_CODE)) is False
    assert governor.gate_remaining_s() == 0
    assert governor.throttled(Throttled("dataverse", 5.0, EXEC_CODE)) is True
    assert governor.gate_remaining_s() == pytest.approx(5.0)


async def test_a_lengthened_throttle_closes_the_gate_for_all(clock: FakeClock) -> None:
    governor = Governor(4, clock=clock.manual, waits_in_place=True)
    governor.throttled(Throttled("dataverse", 1.0, EXEC_CODE))
    await clock.advance(0.5)
    assert governor.throttled(Throttled("dataverse", 2.0, EXEC_CODE)) is True  # 2.5 > 1.0 + 1
    assert governor.gate_remaining_s() == pytest.approx(2.0)


async def test_an_api_with_one_bucket_closes_the_gate_on_every_429(clock: FakeClock) -> None:
    governor = Governor(4, clock=clock.manual, service="enrichment")
    assert governor.throttled(Throttled("enrichment", 1.0, "enrichment-429")) is True
    assert governor.gate_remaining_s() == pytest.approx(1.0)


async def test_a_throttled_dataverse_request_waits_alone_while_the_others_go(
        clock: FakeClock) -> None:
    """Through the governed call: the refused request waits out its own Retry-After; the
    requests behind it are sent meanwhile; then it goes again, first in line."""
    governor = Governor(1, max_wait_s=2.0, clock=clock.manual, waits_in_place=True)
    circuit = Circuit("dataverse", CircuitPolicy(), clock=ManualClock())
    dep = Dependency("dataverse", governor, circuit, RetryPolicy(0), clock=clock.manual)
    sent: list[str] = []
    refused = {"a-0"}

    def sender(name: str) -> Callable[[], Awaitable[str]]:
        async def send() -> str:
            sent.append(name)
            if name in refused:
                refused.discard(name)
                raise Throttled("dataverse", 1.0, EXEC_CODE)
            return name
        return send

    calls = [asyncio.create_task(dep.call(sender(name), NoHooks()))
             for name in ("a-0", "a-1", "b-0")]
    await settle()
    assert sent == ["a-0", "a-1", "b-0"]  # the gate stayed open for the others
    await clock.advance(1.0)
    assert await asyncio.gather(*calls) == ["a-0", "a-1", "b-0"]
    assert sent == ["a-0", "a-1", "b-0", "a-0"]
