"""Shared state through Table Storage (Azurite): the hint cache, the gate, instance leases and
request slots; the slot arithmetic as tables."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sync.budget.cluster import UNKNOWN_HINT, Cluster, live_instances, valid_for_s
from sync.budget.governor import Governor
from sync.budget.slots import Slot, SlotTable, plan_slots, target_slots, usable
from sync.clock import ManualClock
from sync.config.settings import StorageSettings
from sync.config.storage_names import STATE_TABLE
from sync.state.storage import table_client


def test_live_instances() -> None:
    assert live_instances({"a": 10.0, "b": 20.0, "c": 30.0}, now_s=15.0) == ["b", "c"]
    assert live_instances({}, now_s=0.0) == []


@pytest.mark.parametrize(("hint", "me", "busy", "cap", "target"), [
    pytest.param(20, "a", [], 52, 20, id="alone: the whole hint"),
    pytest.param(200, "a", [], 52, 52, id="alone: at most the cap"),
    pytest.param(20, "a", ["b"], 52, 10, id="two: half each"),
    pytest.param(50, "b", ["a"], 52, 25, id="the documentation's hint of 50 and two clients"),
    pytest.param(20, "a", ["b", "c"], 52, 7, id="three: the first gets the remainder"),
    pytest.param(20, "c", ["a", "b"], 52, 6, id="three: the last gets the even part"),
    pytest.param(2, "a", ["b", "c", "d"], 52, 1, id="four against two: the first holds one"),
    pytest.param(2, "c", ["a", "b", "d"], 52, 0, id="four against two: the third holds none"),
    pytest.param(2, "a", ["a", "b"], 52, 1, id="itself listed among the busy"),
])
def test_target_is_an_even_part_that_may_be_zero(hint: int, me: str, busy: list[str], cap: int,
                                                 target: int) -> None:
    assert target_slots(hint, me, busy, cap) == target


def test_targets_of_all_instances_add_up_to_the_hint() -> None:
    names = [f"i{n:03d}" for n in range(100)]
    for hint in (1, 2, 6, 99, 100, 250):
        assert sum(target_slots(hint, me, names, 1024) for me in names) == hint


NOW_S = 1000.0


def slots(*rows: tuple[int, str, float]) -> dict[int, Slot]:
    return {i: Slot(i, holder, expires_s, "etag") for i, holder, expires_s in rows}


@pytest.mark.parametrize(("rows", "hint", "target", "in_flight", "expected"), [
    pytest.param((), 3, 3, 0, ((0, 1, 2), (), (), ()), id="an empty pool: claim up to target"),
    pytest.param(((0, "b", 1010.0), (1, "b", 1010.0)), 2, 1, 0, ((), (), (), ()),
                 id="all held by another: nothing to claim"),
    pytest.param(((0, "b", 999.0), (1, "", 0.0)), 2, 2, 0, ((0, 1), (), (), ()),
                 id="expired and released slots are free"),
    pytest.param(((0, "a", 1010.0), (1, "a", 1010.0)), 2, 1, 0, ((), (), (1,), (0,)),
                 id="above the target: give back the highest"),
    pytest.param(((0, "a", 1010.0), (1, "a", 1010.0)), 2, 1, 2, ((), (), (), (0, 1)),
                 id="never below what is in flight"),
    pytest.param(((0, "a", 1010.0), (5, "a", 1010.0)), 2, 2, 1, ((1,), (), (5,), (0,)),
                 id="a slot past a lowered hint goes first"),
    pytest.param(((0, "a", 1004.0), (1, "a", 1014.0)), 2, 2, 0, ((), (0,), (), (0, 1)),
                 id="renew what is past half its lease"),
    pytest.param(((0, "a", 1010.0),), 4, 0, 0, ((), (), (0,), ()),
                 id="idle: target zero gives everything back"),
])
def test_plan_slots(rows: tuple[tuple[int, str, float], ...], hint: int, target: int,
                    in_flight: int,
                    expected: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...],
                                    tuple[int, ...]]) -> None:
    plan = plan_slots("a", slots(*rows), hint=hint, target=target, in_flight=in_flight,
                      now_s=NOW_S, lease_s=15.0)
    assert (plan.claim, plan.renew, plan.release, plan.keep) == expected


@pytest.mark.parametrize(("held", "hint", "target", "expected"), [
    ([0, 1, 2], 3, 3, 3), ([0, 1, 2], 3, 1, 1), ([0, 5], 2, 2, 1), ([], 4, 4, 0),
])
def test_usable_slots(held: list[int], hint: int, target: int, expected: int) -> None:
    assert usable(held, hint, target) == expected


@pytest.mark.parametrize(("expiries", "margin_s", "expected"), [
    ({0: 1015.0, 1: 1008.0}, 1.0, 7.0), ({}, 1.0, 0.0), ({0: 1000.5}, 1.0, 0.0),
])
def test_slots_are_valid_until_the_first_lease_ends(expiries: dict[int, float], margin_s: float,
                                                    expected: float) -> None:
    assert valid_for_s(expiries, NOW_S, margin_s) == expected


class Instance:
    """One process's governor and cluster link, on a controllable wall clock."""

    def __init__(self, storage: StorageSettings, clock: ManualClock, busy: bool = True) -> None:
        self.table = table_client(storage, STATE_TABLE, None)
        self.governor = Governor(0, ceiling=52, max_wait_s=0.0)
        self.seen: int | None = None
        self.busy = busy
        self.cluster = Cluster(self.table, self.governor, cap=52, refresh_s=1.0, lease_s=15.0,
                               seen_hint=lambda: self.seen, busy=lambda: self.busy,
                               clock=clock.wall_s)


@pytest.fixture
async def pair(storage: StorageSettings) -> AsyncIterator[tuple[Instance, Instance, ManualClock]]:
    clock = ManualClock()
    first, second = Instance(storage, clock), Instance(storage, clock)
    yield first, second, clock
    await first.table.close()
    await second.table.close()


Pair = tuple[Instance, Instance, ManualClock]


async def test_until_a_hint_is_known_the_pool_is_the_default(pair: Pair) -> None:
    first, second, _ = pair
    await first.cluster.refresh()
    await second.cluster.refresh()
    assert first.governor.share + second.governor.share == UNKNOWN_HINT == 5


async def test_cold_busy_instance_starts_at_the_cached_hint(pair: Pair) -> None:
    first, second, _ = pair
    first.busy = False
    first.seen = 20
    await first.cluster.refresh()
    assert first.governor.share == 0  # idle: it holds nothing
    view = await second.cluster.refresh()
    assert view.hint == 20
    assert second.governor.share == view.slots == 20  # one busy instance: the whole hint


async def test_hint_is_divided_among_busy_instances(pair: Pair) -> None:
    first, second, _ = pair
    first.seen = 20
    await first.cluster.refresh()
    assert first.governor.share == 20
    await second.cluster.refresh()
    assert second.governor.share == 0  # every slot is held: a joiner waits for one
    await first.cluster.refresh()  # sees two instances: gives back half
    assert first.governor.share == 10
    await second.cluster.refresh()
    assert (first.cluster.view.instances, second.cluster.view.instances) == (2, 2)
    assert first.governor.share == second.governor.share == 10


async def test_slots_in_flight_are_kept_until_they_finish(pair: Pair) -> None:
    first, second, _ = pair
    first.seen = 2
    await first.cluster.refresh()
    await first.governor.__aenter__()
    await first.governor.__aenter__()
    await second.cluster.refresh()
    await first.cluster.refresh()  # its part is one, but two requests are still out
    assert (first.governor.share, first.cluster.view.slots) == (1, 2)
    await second.cluster.refresh()
    assert second.governor.share == 0
    await first.governor.__aexit__(None, None, None)
    await first.governor.__aexit__(None, None, None)
    await first.cluster.refresh()
    await second.cluster.refresh()
    assert (first.governor.share, second.governor.share) == (1, 1)


async def test_an_idle_instance_gives_its_slots_and_lease_back(pair: Pair) -> None:
    first, second, _ = pair
    first.seen = 20
    await first.cluster.refresh()
    await second.cluster.refresh()
    await first.cluster.refresh()
    await second.cluster.refresh()
    second.busy = False
    await second.cluster.refresh()
    assert second.governor.share == 0
    view = await first.cluster.refresh()
    assert (view.instances, first.governor.share) == (1, 20)


async def test_a_killed_instances_slots_return_after_their_lease(pair: Pair) -> None:
    first, second, clock = pair
    first.seen = 4
    await first.cluster.refresh()
    await second.cluster.refresh()
    assert second.governor.share == 0  # the first holds all four
    # the first is killed: it never refreshes again
    clock.advance(14.0)
    await second.cluster.refresh()
    assert second.governor.share == 0  # its lease has not run out yet
    clock.advance(2.0)
    await second.cluster.refresh()
    assert second.governor.share == 4


async def test_racing_claims_never_hold_more_than_the_hint(storage: StorageSettings) -> None:
    clock = ManualClock()
    instances = [Instance(storage, clock) for _ in range(6)]
    try:
        for instance in instances:
            instance.seen = 3
        for _ in range(3):
            await asyncio.gather(*(i.cluster.refresh() for i in instances))
            assert sum(i.governor.share for i in instances) <= 3
        holders = await SlotTable(instances[0].table, "reader").read()
        held = [s for s in holders.values() if s.holder and s.expires_s > clock.wall_s()]
        assert len(held) <= 3
        assert len({s.index for s in held}) == len(held)
    finally:
        for instance in instances:
            await instance.table.close()


async def test_leaving_gives_everything_back(pair: Pair) -> None:
    first, second, _ = pair
    first.seen = 6
    await first.cluster.refresh()
    await first.cluster.leave()
    assert first.governor.share == 0
    view = await second.cluster.refresh()
    assert (view.instances, second.governor.share) == (1, 6)


async def test_a_changed_hint_reaches_the_other_instance(pair: Pair) -> None:
    first, second, _ = pair
    first.seen = 20
    await first.cluster.refresh()
    first.seen = 8
    await first.cluster.refresh()
    assert (await second.cluster.refresh()).hint == 8


async def test_gate_published_by_one_pauses_the_other(pair: Pair) -> None:
    first, second, _ = pair
    await first.cluster.publish_gate(30.0, "0x80072322")
    await second.cluster.refresh()
    assert second.governor.gate_remaining_s() == pytest.approx(30.0, abs=0.5)


async def test_an_earlier_gate_never_shortens_a_later_one(pair: Pair) -> None:
    first, second, clock = pair
    await first.cluster.publish_gate(30.0, "0x80072322")
    await second.cluster.publish_gate(5.0, "0x80072321")
    view = await second.cluster.refresh()
    assert view.gate_until_s == pytest.approx(clock.wall_s() + 30.0)


async def test_racing_gates_keep_the_latest(pair: Pair) -> None:
    first, second, clock = pair
    await asyncio.gather(*(inst.cluster.publish_gate(s, "x") for inst, s in
                           [(first, 10.0), (second, 20.0), (first, 15.0), (second, 12.0)]))
    view = await first.cluster.refresh()
    assert view.gate_until_s == pytest.approx(clock.wall_s() + 20.0)
