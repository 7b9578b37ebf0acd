"""When ``sync local`` calls a run blocked (``sync.local.blocked``), and how its polls live
through a storage outage (``sync.local.outage``): pure, on passed-in times."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sync.clock import ManualClock
from sync.failures.circuit import CircuitView
from sync.local.blocked import BlockedJudge
from sync.local.outage import MAX_RETRY_S, REMIND_EVERY_S, Outage, retry_delay_s

STALL_S = 90.0
DEFAULT_OPENINGS = (0.0, 5.0, 15.0, 35.0, 75.0)
"""When a circuit with the default policy (5 s doubling) opens during a long fault; each
opening lasts until the next one."""


@dataclass(frozen=True, slots=True)
class Fault:
    """A circuit that opens at ``openings`` (each open until the next, the last for as long
    again as the one before doubled), and closes at ``clears_s`` with the records moving."""

    openings: tuple[float, ...]
    clears_s: float | None = None

    def view(self, now_s: float) -> CircuitView:
        if self.clears_s is not None and now_s >= self.clears_s:
            return CircuitView()
        opened = [t for t in self.openings if t <= now_s]
        if not opened:
            return CircuitView()
        trips = len(opened)
        ends = [*self.openings[1:], self.openings[-1] + 2 * (self.openings[-1] -
                                                             self.openings[-2])]
        return CircuitView(ends[trips - 1], trips, f"503 at opening {trips}")

    def done(self, now_s: float) -> int:
        return 100 + (10 if self.clears_s is not None and now_s >= self.clears_s else 0)


def first_verdict(fault: Fault, until_s: float, every_s: float = 1.0) -> tuple[float, str]:
    """Poll a judge every ``every_s`` from 0 to ``until_s``: when it first says blocked,
    and what (``(-1, "")`` when it never does)."""
    judge = BlockedJudge(STALL_S, 0.0)
    now_s = 0.0
    while now_s <= until_s:
        verdict = judge.observe(fault.done(now_s), {"enrichment": fault.view(now_s)}, now_s)
        if verdict:
            return now_s, verdict
        now_s += every_s
    return -1.0, ""


PERMANENT = Fault((*DEFAULT_OPENINGS, 155.0, 315.0))


@pytest.mark.parametrize(("fault", "blocked_at_s", "says"), [
    pytest.param(Fault(DEFAULT_OPENINGS, clears_s=155.0), -1, "",
                 id="an-outage-that-clears-before-the-probe-after-the-stall-is-not-blocked"),
    pytest.param(Fault((0.0, 5.0, 15.0, 35.0, 95.0), clears_s=120.0), 95.0,
                 "enrichment: 503 at opening 5",
                 id="the-same-outage-is-blocked-when-the-opening-in-force-at-the-stall-ends-first"),
    pytest.param(Fault(DEFAULT_OPENINGS), -1, "",
                 id="not-blocked-while-the-back-off-in-force-at-the-stall-has-not-come-round"),
    pytest.param(PERMANENT, 155.0, "enrichment: 503 at opening 6",
                 id="a-fault-that-stays-is-blocked-when-its-probe-after-the-stall-fails"),
    pytest.param(Fault((0.0, 1.0, 3.0, 7.0, 12.0, 17.0, 22.0, 27.0, 32.0, 37.0, 42.0, 47.0,
                        52.0, 57.0, 62.0, 67.0, 72.0, 77.0, 82.0, 87.0, 92.0, 97.0)),
                 92.0, "enrichment: 503 at opening 21",
                 id="a-short-back-off-is-blocked-soon-after-the-stall"),
])
def test_blocked_only_when_the_back_off_in_force_at_the_stall_came_round_without_progress(
        fault: Fault, blocked_at_s: float, says: str) -> None:
    assert first_verdict(fault, 400.0) == (blocked_at_s, says)


def test_the_fault_named_is_the_one_current_when_judged() -> None:
    judge = BlockedJudge(STALL_S, 0.0)
    assert judge.observe(5, {"dataverse": CircuitView(80.0, 4, "old: 503")}, 0.0) == ""
    assert judge.observe(5, {"dataverse": CircuitView(80.0, 4, "old: 503")}, 91.0) == ""
    assert judge.observe(5, {"dataverse": CircuitView(250.0, 5, "403 Forbidden")}, 95.0) == \
        "dataverse: 403 Forbidden"


def test_progress_or_a_closed_circuit_starts_the_judgement_again() -> None:
    judge = BlockedJudge(STALL_S, 0.0)
    open_ = {"dataverse": CircuitView(100.0, 3, "503")}
    assert judge.observe(1, open_, 0.0) == ""
    assert judge.observe(1, open_, 95.0) == ""  # armed
    assert judge.observe(2, {"dataverse": CircuitView(300.0, 4, "503")}, 101.0) == ""
    assert judge.observe(2, {"dataverse": CircuitView(300.0, 4, "503")}, 150.0) == ""
    assert judge.observe(2, {}, 195.0) == ""  # closed: nothing to judge
    assert judge.observe(2, {"dataverse": CircuitView(400.0, 5, "503")}, 196.0) == ""  # armed
    assert judge.observe(2, {"dataverse": CircuitView(900.0, 6, "503")}, 401.0) == \
        "dataverse: 503"


def test_without_a_circuit_a_stall_is_never_blocked() -> None:
    judge = BlockedJudge(STALL_S, 0.0)
    assert [judge.observe(7, {"dataverse": CircuitView()}, t) for t in (0.0, 100.0, 9e9)] == \
        ["", "", ""]
    with pytest.raises(ValueError, match="stall_s"):
        BlockedJudge(-1.0, 0.0)


@pytest.mark.parametrize(("failures", "delay_s"), [
    (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, MAX_RETRY_S), (50, MAX_RETRY_S)])
def test_retries_back_off_to_a_ceiling(failures: int, delay_s: float) -> None:
    assert retry_delay_s(failures) == delay_s


def test_an_outage_is_said_once_then_every_half_minute_then_its_end() -> None:
    said: list[str] = []
    clock = ManualClock(wall_start_s=1_800_000_000.0)  # 2027-01-15 08:00:00 UTC
    outage = Outage(said.append, clock)
    outage.succeeded()
    assert said == []
    for _ in range(int(REMIND_EVERY_S) + 5):
        outage.failed(ConnectionResetError())
        clock.advance(1.0)
    assert said == ["storage unreachable since 08:00:00 UTC (0 s): ConnectionResetError; "
                    "trying again",
                    "storage unreachable since 08:00:00 UTC (30 s): ConnectionResetError; "
                    "trying again"]
    assert outage.failures == int(REMIND_EVERY_S) + 5
    outage.succeeded()
    assert said[-1] == "storage reachable again after 35 s"
    assert outage.failures == 0
