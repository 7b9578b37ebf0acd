"""Shared state through Table Storage (Azurite): the hint cache, the gate, instance leases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sync.cluster import UNKNOWN_HINT, Cluster, live_leases, share_of
from sync.governor import Governor
from sync.names import STATE_TABLE
from sync.settings import StorageSettings
from sync.storage import table_client


@pytest.mark.parametrize(("hint", "instances", "cap", "share"), [
    (20, 1, 52, 20), (20, 2, 52, 10), (20, 3, 52, 6), (2, 5, 52, 1), (200, 1, 52, 52),
    (50, 2, 52, 25),  # the documentation's example: a hint of 50 and two clients
])
def test_share_of_the_hint(hint: int, instances: int, cap: int, share: int) -> None:
    assert share_of(hint, instances, cap) == share


def test_live_leases() -> None:
    assert live_leases([10.0, 20.0, 30.0], now_s=15.0) == 2
    assert live_leases([], now_s=0.0) == 0


class Instance:
    """One process's governor and cluster link, on a controllable wall clock."""

    def __init__(self, storage: StorageSettings, clock: list[float], busy: bool = True) -> None:
        self.table = table_client(storage, STATE_TABLE, None)
        self.governor = Governor(UNKNOWN_HINT, max_wait_s=0.0)
        self.seen: int | None = None
        self.busy = busy
        self.cluster = Cluster(self.table, self.governor, cap=52, refresh_s=1.0, lease_s=15.0,
                               seen_hint=lambda: self.seen, busy=lambda: self.busy,
                               clock=lambda: clock[0])


@pytest.fixture
async def pair(storage: StorageSettings) -> AsyncIterator[tuple[Instance, Instance, list[float]]]:
    clock = [1_000_000.0]
    first, second = Instance(storage, clock), Instance(storage, clock)
    yield first, second, clock
    await first.table.close()
    await second.table.close()


async def test_cold_instance_starts_at_the_cached_hint(pair: tuple[Instance, Instance,
                                                                  list[float]]) -> None:
    first, second, _ = pair
    second.busy = False
    first.seen = 20
    await first.cluster.refresh()
    view = await second.cluster.refresh()
    assert view.hint == 20
    assert second.governor.share == 20  # one busy instance: the whole hint


async def test_hint_is_divided_among_busy_instances(pair: tuple[Instance, Instance,
                                                               list[float]]) -> None:
    first, second, _ = pair
    first.seen = 20
    await first.cluster.refresh()
    await second.cluster.refresh()
    await first.cluster.refresh()
    assert (first.cluster.view.instances, second.cluster.view.instances) == (2, 2)
    assert first.governor.share == second.governor.share == 10


async def test_expired_leases_stop_counting(pair: tuple[Instance, Instance,
                                                       list[float]]) -> None:
    first, second, clock = pair
    first.seen = 20
    await second.cluster.refresh()
    second.busy = False
    clock[0] += 16.0  # past the second's lease
    view = await first.cluster.refresh()
    assert view.instances == 1
    assert first.governor.share == 20


async def test_a_changed_hint_reaches_the_other_instance(pair: tuple[Instance, Instance,
                                                                    list[float]]) -> None:
    first, second, _ = pair
    first.seen = 20
    await first.cluster.refresh()
    first.seen = 8
    await first.cluster.refresh()
    assert (await second.cluster.refresh()).hint == 8


async def test_gate_published_by_one_pauses_the_other(pair: tuple[Instance, Instance,
                                                                 list[float]]) -> None:
    first, second, _ = pair
    await first.cluster.publish_gate(30.0, "0x80072322")
    await second.cluster.refresh()
    assert second.governor.gate_remaining_s() == pytest.approx(30.0, abs=0.5)


async def test_an_earlier_gate_never_shortens_a_later_one(pair: tuple[Instance, Instance,
                                                                     list[float]]) -> None:
    first, second, _ = pair
    await first.cluster.publish_gate(30.0, "0x80072322")
    await second.cluster.publish_gate(5.0, "0x80072321")
    view = await second.cluster.refresh()
    assert view.gate_until_s == pytest.approx(1_000_030.0)


async def test_racing_gates_keep_the_latest(pair: tuple[Instance, Instance,
                                                       list[float]]) -> None:
    first, second, _ = pair
    await asyncio.gather(*(inst.cluster.publish_gate(s, "x") for inst, s in
                           [(first, 10.0), (second, 20.0), (first, 15.0), (second, 12.0)]))
    view = await first.cluster.refresh()
    assert view.gate_until_s == pytest.approx(1_000_020.0)
