"""Shared state through Table Storage (Azurite): the hint cache, the gate, instance leases and
request slots; the slot arithmetic as tables."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
from azure.data.tables.aio import TableClient

from sync.budget.cluster import (
    CLUSTER_BUDGET_PER_S,
    UNKNOWN_HINT,
    Cluster,
    Timing,
    live_instances,
    refresh_period_s,
    valid_for_s,
    worst_refresh_entities,
)
from sync.budget.governor import Governor
from sync.budget.hint import StoredHint, replaces
from sync.budget.leases import estimate_instances, sample_size
from sync.budget.slots import Slot, SlotTable, plan_slots, target_slots, usable
from sync.clients.dataverse import HintSeen
from sync.clock import ManualClock, SkewedClock
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
    """One process's governor and cluster link, on a controllable clock (``skew_s`` allowed
    between instances; ``offset_s`` this instance's clock ahead of the others')."""

    def __init__(self, storage: StorageSettings, clock: ManualClock, busy: bool = True, *,
                 skew_s: float = 0.0, offset_s: float = 0.0, max_wait_s: float = 0.0) -> None:
        self.table = table_client(storage, STATE_TABLE, None)
        self.clock = clock if not offset_s else SkewedClock(clock, offset_s)
        self.governor = Governor(0, ceiling=52, max_wait_s=max_wait_s, clock=self.clock)
        self._seen: HintSeen | None = None
        self.busy = busy
        self.cluster = Cluster(self.table, self.governor, cap=52,
                               timing=Timing(refresh_s=1.0, lease_s=15.0, skew_s=skew_s),
                               seen_hint=lambda: self._seen, busy=lambda: self.busy,
                               clock=self.clock)

    @property
    def seen(self) -> int | None:
        return None if self._seen is None else self._seen.hint

    @seen.setter
    def seen(self, hint: int | None) -> None:
        """An answer carried ``hint`` now (on this instance's clock)."""
        self._seen = None if hint is None else HintSeen(hint, self.clock.wall_s())


@pytest.fixture
async def pair(storage: StorageSettings) -> AsyncIterator[tuple[Instance, Instance, ManualClock]]:
    clock = ManualClock()
    first, second = Instance(storage, clock), Instance(storage, clock)
    yield first, second, clock
    await first.table.close()
    await second.table.close()


Pair = tuple[Instance, Instance, ManualClock]


async def test_until_a_hint_is_known_one_slot_goes_to_an_instance_with_requests(
        storage: StorageSettings) -> None:
    """One request at a time before any answer (within any hint the service can send), held
    by an instance that has one to send, not by one that merely started first."""
    clock = ManualClock()
    started, asking = (Instance(storage, clock, max_wait_s=10.0),
                       Instance(storage, clock, max_wait_s=10.0))
    try:
        await started.cluster.refresh()
        request = asyncio.create_task(asking.governor.__aenter__())  # waits for a slot
        await asyncio.sleep(0)
        await asking.cluster.refresh()
        await request
        await started.cluster.refresh()
        assert (started.governor.share, asking.governor.share) == (0, UNKNOWN_HINT)
        assert UNKNOWN_HINT == 1
    finally:
        await started.table.close()
        await asking.table.close()


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


# -- bounded state: dead leases reaped, the lease read sampled, the refresh spread ----------

async def lease_rows(table: TableClient) -> list[str]:
    return [str(row["RowKey"]) async for row in
            table.query_entities("PartitionKey eq 'lease'", select=["RowKey"])]


async def test_a_killed_instances_lease_is_reaped_after_a_grace_period(pair: Pair) -> None:
    first, second, clock = pair
    first.seen = 4
    await first.cluster.refresh()
    await second.cluster.refresh()
    assert len(await lease_rows(first.table)) == 2
    # the first is killed: its lease row stays until some instance reaps it
    clock.advance(15.0 + 10.0)  # expired, but within the grace of one lease length
    await second.cluster.refresh()
    assert first.cluster.instance_id in await lease_rows(first.table)
    clock.advance(15.0 + 1.0)  # past the grace: the next reap removes it
    await second.cluster.refresh()
    assert await lease_rows(first.table) == [second.cluster.instance_id]


def even_keys(count: int) -> list[str]:
    """``count`` instance ids spread evenly over the key space (as random uuid4 hex are)."""
    return [f"{(2 * n + 1) * 16 ** 12 // (2 * count):012x}" + "0" * 20 for n in range(count)]


async def test_the_lease_read_is_a_sample_however_many_instances_there_are(pair: Pair) -> None:
    first, _, clock = pair
    for key in even_keys(400):
        await first.table.upsert_entity({"PartitionKey": "lease", "RowKey": key,
                                         "ExpiresAt": clock.wall_s() + 60.0})
    first.seen = 2
    view = await first.cluster.refresh()
    assert 300 <= view.instances <= 500  # estimated from the first leases in key order
    assert first.cluster.entities <= sample_size(2) + 10  # not the 401 rows
    # every refresh of 400 instances together stays within the budget (the count is rounded)
    budget_per_s = view.instances * first.cluster.entities / first.cluster.period_s
    assert budget_per_s <= CLUSTER_BUDGET_PER_S * 1.01


async def test_an_idle_instance_holding_nothing_reads_and_writes_nothing(pair: Pair) -> None:
    first, _, _ = pair
    first.busy = False
    await first.cluster.refresh()
    assert first.cluster.entities == 0


@pytest.mark.parametrize(("keys", "size", "complete", "low", "high"), [
    pytest.param(["a" * 32, "b" * 32], 32, True, 2, 2, id="fewer than the sample: exact"),
    pytest.param(even_keys(32), 32, False, 32, 64, id="a full sample spread wide: about 32"),
    pytest.param(even_keys(1000)[:32], 32, False, 900, 1100,
                 id="the first 32 of 1000: about 1000"),
])
def test_instances_are_counted_or_estimated(keys: list[str], size: int, complete: bool,
                                            low: float, high: float) -> None:
    sample = estimate_instances(keys, size)
    assert sample.complete is complete
    assert low <= sample.estimated <= high


@pytest.mark.parametrize(("instances", "entities", "period_s"), [
    pytest.param(1, 10, 1.0, id="alone: the configured refresh"),
    pytest.param(50, 20, 1.0, id="fifty instances of 20 entities: still within a second"),
    pytest.param(1000, 40, 40.0, id="a thousand instances spread to 40 s"),
    pytest.param(1000, 0, 1.0, id="nothing read: nothing to spread"),
])
def test_the_refresh_spreads_as_the_cluster_grows(instances: int, entities: int,
                                                  period_s: float) -> None:
    assert refresh_period_s(1.0, instances, entities) == pytest.approx(period_s)
    assert instances * entities / period_s <= CLUSTER_BUDGET_PER_S


@pytest.mark.parametrize("hint", [2, 50, 1024])
@pytest.mark.parametrize("instances", [1, 10, 100, 1000])
def test_a_thousand_instances_stay_under_a_partitions_target(hint: int, instances: int) -> None:
    """The arithmetic of docs/operations.md: the worst refresh (a holder reading every slot,
    the lease sample, hint, gate, two circuits, its renewals and every slot changing hands)
    times the instances, per period, stays under 2,000 entities per second."""
    worst = worst_refresh_entities(hint, instances)
    period_s = refresh_period_s(1.0, instances, worst)
    assert instances * worst / period_s <= 2000.0
    assert period_s <= max(1.0, instances * worst / CLUSTER_BUDGET_PER_S)


# -- clocks that disagree --------------------------------------------------------------------

async def test_a_clock_ahead_never_takes_a_slot_its_holder_still_uses(
        storage: StorageSettings) -> None:
    clock = ManualClock()
    holder = Instance(storage, clock, skew_s=5.0)
    ahead = Instance(storage, clock, skew_s=5.0, offset_s=4.0)  # its clock 4 s ahead
    try:
        holder.seen = 4
        await holder.cluster.refresh()
        await ahead.cluster.refresh()
        assert (holder.governor.share, ahead.governor.share) == (4, 0)
        holder.busy = False  # it stops refreshing, but may send until its slots lapse for it
        clock.advance(12.0)  # the slots' expiry (15 s) has passed on the clock that is ahead
        await ahead.cluster.refresh()
        assert holder.governor.share == 4
        assert ahead.governor.share == 0
        clock.advance(5.0)  # the holder's share has lapsed; skew allowed for: free
        await ahead.cluster.refresh()
        assert (holder.governor.share, ahead.governor.share) == (0, 4)
    finally:
        await holder.table.close()
        await ahead.table.close()


async def test_a_gate_set_by_another_clock_allows_for_the_skew(
        storage: StorageSettings) -> None:
    clock = ManualClock()
    setter = Instance(storage, clock, skew_s=5.0)
    ahead = Instance(storage, clock, skew_s=5.0, offset_s=4.0)
    try:
        await setter.cluster.publish_gate(30.0, "0x80072322")
        await ahead.cluster.refresh()
        assert ahead.governor.gate_remaining_s() == pytest.approx(31.0)  # 30 - 4 + 5
        await setter.cluster.refresh()
        assert setter.governor.gate_remaining_s() == pytest.approx(30.0)  # its own: as set
    finally:
        await setter.table.close()
        await ahead.table.close()


async def test_another_clocks_lease_counts_until_the_skew_has_passed(
        storage: StorageSettings) -> None:
    clock = ManualClock()
    behind = Instance(storage, clock, skew_s=5.0, offset_s=-4.0)
    other = Instance(storage, clock, skew_s=5.0)
    try:
        behind.seen = 4
        await behind.cluster.refresh()
        behind.busy = False
        clock.advance(12.0)  # past its lease on this clock, not on its own
        assert (await other.cluster.refresh()).instances == 2
    finally:
        await behind.table.close()
        await other.table.close()


# -- one truth for the hint ------------------------------------------------------------------

async def hint_row(table: TableClient) -> int:
    return int((await table.get_entity("dop", "hint"))["Hint"])


async def test_a_stale_instance_never_writes_an_older_hint_back(pair: Pair) -> None:
    """After the service lowers its hint, an instance that sent nothing since (its last
    sighting is the old hint) follows the row instead of rewriting it."""
    stale, fresh, clock = pair
    stale.seen = fresh.seen = 6
    await stale.cluster.refresh()
    await fresh.cluster.refresh()
    clock.advance(0.5)
    stale.seen = 6  # an answer that left the service before it lowered the hint
    clock.advance(0.5)
    fresh.seen = 2
    await fresh.cluster.refresh()
    for _ in range(3):
        assert (await stale.cluster.refresh()).hint == 2
        assert (await fresh.cluster.refresh()).hint == 2
        assert await hint_row(stale.table) == 2
        clock.advance(1.0)


@pytest.mark.parametrize(("seen", "stored", "expected"), [
    pytest.param((2, 100.0), None, True, id="no row yet: written"),
    pytest.param((6, 100.0), (6, 90.0, "b"), False, id="the same hint: nothing to write"),
    pytest.param((2, 100.0), (6, 90.0, "b"), True, id="lower and newer: written"),
    pytest.param((2, 97.0), (6, 100.0, "b"), True,
                 id="lower, older within the skew: written (the safe side)"),
    pytest.param((2, 90.0), (6, 100.0, "b"), False, id="lower but older than the skew: kept"),
    pytest.param((6, 103.0), (2, 100.0, "b"), False,
                 id="higher, newer within the skew: kept (the clocks may lie)"),
    pytest.param((6, 106.0), (2, 100.0, "b"), True, id="higher, newer beyond the skew: written"),
    pytest.param((6, 101.0), (2, 100.0, "a"), True,
                 id="higher, after the writer's own row: written (one clock)"),
    pytest.param((6, 99.0), (2, 100.0, "a"), False,
                 id="higher, before the writer's own row: kept"),
])
def test_which_sighting_replaces_the_hint_row(seen: tuple[int, float],
                                              stored: tuple[int, float, str] | None,
                                              expected: bool) -> None:
    row = None if stored is None else StoredHint(*stored)
    assert replaces(HintSeen(*seen), row, writer="a", skew_s=5.0) is expected


async def test_a_new_hint_is_published_at_once_not_at_the_next_period(pair: Pair) -> None:
    first, second, _ = pair
    stop = asyncio.Event()
    running = asyncio.create_task(first.cluster.run(stop))
    try:
        await settle_until(lambda: first.cluster.entities > 0)  # the first refresh
        first.seen = 7
        first.cluster.hint_changed()
        await settle_until(lambda: first.cluster.view.hint == 7)  # the clock never moved
        assert (await second.cluster.refresh()).hint == 7
    finally:
        stop.set()
        await running


async def settle_until(done: Callable[[], bool]) -> None:
    for _ in range(200):
        if done():
            return
        await asyncio.sleep(0.01)
    pytest.fail("never happened")


# -- the gate is never dropped for losing races ---------------------------------------------

class Contended:
    """The state table, on which a rival writes an earlier gate just before each of this
    instance's next ``times`` gate writes (so each write loses its ETag race)."""

    def __init__(self, table: TableClient, rival: TableClient, times: int) -> None:
        self._table, self._rival, self.times = table, rival, times

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    async def _rival_writes(self, entity: dict[str, Any]) -> None:
        if self.times > 0 and entity.get("RowKey") == "dataverse":
            self.times -= 1
            await self._rival.upsert_entity({**entity, "Until": 1.0, "SetBy": "rival"})

    async def create_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any:
        await self._rival_writes(entity)
        return await self._table.create_entity(entity, **kwargs)

    async def update_entity(self, entity: dict[str, Any], **kwargs: Any) -> Any:
        await self._rival_writes(entity)
        return await self._table.update_entity(entity, **kwargs)


def contended_instance(storage: StorageSettings, clock: ManualClock,
                       times: int) -> tuple[Instance, Contended]:
    instance = Instance(storage, clock)
    contended = Contended(instance.table, table_client(storage, STATE_TABLE, None), times)
    instance.cluster = Cluster(cast(TableClient, contended), instance.governor, cap=52,
                               timing=Timing(1.0, 15.0), seen_hint=lambda: None,
                               busy=lambda: True, clock=clock)
    return instance, contended


async def gate_row(table: TableClient) -> Any:
    return await table.get_entity("gate", "dataverse")


async def test_a_gate_that_loses_a_few_races_is_still_published(
        storage: StorageSettings) -> None:
    clock = ManualClock()
    instance, contended = contended_instance(storage, clock, times=5)
    try:
        assert await instance.cluster.publish_gate(30.0, "0x80072322")
        row = await gate_row(instance.table)
        assert (row["Until"], row["SetBy"]) == (clock.wall_s() + 30.0,
                                                instance.cluster.instance_id)
    finally:
        await instance.table.close()
        await contended._rival.close()


async def test_a_gate_that_keeps_losing_is_logged_and_published_at_the_next_refresh(
        storage: StorageSettings, caplog: pytest.LogCaptureFixture) -> None:
    clock = ManualClock()
    instance, contended = contended_instance(storage, clock, times=1000)
    try:
        assert not await instance.cluster.publish_gate(30.0, "0x80072322")
        assert any(getattr(r, "event", "") == "gate_not_published" for r in caplog.records)
        contended.times = 0  # the rivals are done
        await instance.cluster.refresh()
        assert (await gate_row(instance.table))["Until"] == clock.wall_s() + 30.0
    finally:
        await instance.table.close()
        await contended._rival.close()
