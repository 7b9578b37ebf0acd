"""Requests in flight against the DOP hint in force, as the emulator measures them at every
admission (``hint_watch.py``): table-driven on the bookkeeping, then over HTTP with requests
held in flight on a manual clock while the hint is lowered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sync.clock import ManualClock
from sync.local.emulators.webapi.hint_watch import HintWatch
from tests.webapi.conftest import Client

Admission = tuple[int, float, int]  # the hint in force, now_s, requests in flight found

CASES: list[tuple[str, list[Admission], dict[str, Any]]] = [
    ("within the hint: no admission over it",
     [(4, 0.0, 1), (4, 1.0, 4), (4, 2.0, 2)],
     {"admissions": 3, "peak": 4, "peak_hint": 4, "over": 0, "over_before": 0,
      "latest_over_s": 0.0}),
    ("over a hint that never changed: over the one before it too",
     [(2, 0.0, 1), (2, 1.0, 3)],
     {"admissions": 2, "peak": 3, "peak_hint": 2, "over": 1, "over_before": 1,
      "latest_over_s": 1.0}),
    ("lowered from 6 to 2: the requests the old hint allowed are over the new one, and how "
     "long after the change the last of them came",
     [(6, 0.0, 5), (2, 10.0, 5), (2, 10.5, 6), (2, 12.0, 2)],
     {"admissions": 4, "peak": 6, "peak_hint": 2, "over": 2, "over_before": 0,
      "latest_over_s": 0.5}),
    ("lowered from 6 to 2: more than the old hint is never excused",
     [(6, 0.0, 6), (2, 3.0, 7)],
     {"admissions": 2, "peak": 7, "peak_hint": 2, "over": 1, "over_before": 1,
      "latest_over_s": 0.0}),
    ("raised from 2 to 6: more than 2 is within the hint in force",
     [(2, 0.0, 2), (6, 5.0, 5)],
     {"admissions": 2, "peak": 5, "peak_hint": 6, "over": 0, "over_before": 0,
      "latest_over_s": 0.0}),
]


@pytest.mark.parametrize(("admissions", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_each_admission_is_judged_against_the_hint_in_force(
        admissions: list[Admission], expected: dict[str, Any]) -> None:
    watch = HintWatch()
    for hint, now_s, in_flight in admissions:
        watch.admitted(hint, now_s, {"server-0": in_flight})
    assert watch.as_json()["scopes"]["server-0"] == expected


def test_a_reset_keeps_the_hint_in_force_and_forgets_the_counts() -> None:
    watch = HintWatch()
    watch.admitted(6, 0.0, {"server-0": 3})
    watch.observe(2, 4.0)
    fresh = watch.fresh()
    assert (fresh.hint, fresh.before, fresh.changed_s, fresh.scopes) == (2, 6, 4.0, {})
    assert (watch.changes, watch.lowest) == (1, 2)


async def _started(client: Client, clock: ManualClock, count: int) -> asyncio.Future[Any]:
    """``count`` more writes sent at once, held in flight until the clock moves."""
    held = clock.sleepers + count
    ids = await client.ids(count)
    sent = asyncio.gather(*(client.patch(record, {"description": "x"}) for record in ids))
    for _ in range(200):
        if clock.sleepers == held:
            break
        await asyncio.sleep(0.01)
    assert clock.sleepers == held
    return sent


async def test_the_stats_show_requests_over_a_lowered_hint_per_server_and_user(
        client: Client) -> None:
    clock = ManualClock()
    await client.configure(clock=clock, records=4, servers=1, dop_hint=6,
                           write_ms_min=60_000.0, write_ms_max=60_000.0,
                           request_overhead_ms=0.0)
    held = await _started(client, clock, 3)
    clock.advance(1.0)
    await client.admin("config", "PATCH", {"dop_hint": 2})
    clock.advance(2.0)
    late = await _started(client, clock, 1)
    clock.advance(120.0)
    await held
    await late
    watch = (await client.admin("stats"))["in_flight_vs_hint"]
    assert (watch["hint"], watch["before"], watch["changes"], watch["lowest"]) == (2, 6, 1, 2)
    user = next(name for name in watch["scopes"] if name.startswith("user:"))
    for scope in (watch["scopes"]["server-0"], watch["scopes"][user]):
        assert scope == {"admissions": 4, "peak": 4, "peak_hint": 2, "over": 1,
                         "over_before": 0, "latest_over_s": 2.0}
