"""The circuit, the retry loop and the scope on virtual time: every transition, no sleeping;
and the circuit's shared row on Azurite: ordered, ETag-guarded, one probe for the cluster."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from azure.data.tables.aio import TableClient

from sync.budget.circuit_row import CIRCUIT_PARTITION, CircuitRow, view_of
from sync.budget.dependency import Dependency
from sync.budget.governor import Governor
from sync.clock import ManualClock
from sync.config.settings import StorageSettings
from sync.config.storage_names import STATE_TABLE
from sync.failures.circuit import PROBE_PENDING_S, PROBE_WAIT_S, Circuit, CircuitPolicy, CircuitView
from sync.failures.errors import (
    AmbiguousFault,
    CircuitOpen,
    ConfigFault,
    RecordFault,
    ServiceFault,
    Throttled,
)
from sync.failures.retry import RetryPolicy, retrying
from sync.failures.scope import ScopeLog, is_record_fault
from sync.state.storage import table_client

FAULT = ServiceFault("dataverse", "503 Service Unavailable on PATCH accounts", 503)
POLICY = CircuitPolicy(threshold=3, open_s=10.0, max_open_s=60.0)


def circuit(clock: ManualClock) -> Circuit:
    return Circuit("dataverse", POLICY, clock=clock, rand=lambda: 0.5)


def half_open(clock: ManualClock) -> Circuit:
    """A circuit opened by three faults whose first open period has passed: the next caller
    is its probe."""
    breaker = circuit(clock)
    for _ in range(3):
        breaker.failed(FAULT)
    clock.advance(10)
    return breaker


@pytest.mark.parametrize(("trips", "rand", "expected_s"), [
    (1, 0.5, 10.0), (1, 0.0, 7.5), (1, 1.0, 12.5), (2, 0.5, 20.0), (3, 0.5, 40.0),
    (4, 0.5, 60.0), (9, 1.0, 60.0),
], ids=str)
def test_each_opening_lasts_longer_up_to_the_cap(trips: int, rand: float,
                                                 expected_s: float) -> None:
    assert POLICY.open_for_s(trips, rand) == pytest.approx(expected_s)


@pytest.mark.parametrize("policy", [dict(threshold=0), dict(open_s=0.0),
                                    dict(open_s=10.0, max_open_s=5.0)])
def test_impossible_policies_are_refused(policy: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="impossible"):
        CircuitPolicy(**policy)  # type: ignore[arg-type]


def test_consecutive_faults_open_it_and_a_success_between_resets_the_count() -> None:
    clock = ManualClock()
    breaker = circuit(clock)
    assert not breaker.failed(FAULT)
    assert not breaker.failed(FAULT)
    breaker.succeeded()
    assert not breaker.failed(FAULT)
    assert not breaker.failed(FAULT)
    assert breaker.state == "closed"
    assert breaker.failed(FAULT)
    assert breaker.state == "open"
    assert breaker.view == CircuitView(clock.wall_s() + 10.0, 1, FAULT.detail)


def test_an_open_circuit_refuses_with_the_time_left_and_the_reason() -> None:
    clock = ManualClock()
    breaker = circuit(clock)
    for _ in range(3):
        breaker.failed(FAULT)
    clock.advance(4)
    with pytest.raises(CircuitOpen) as caught:
        breaker.admit()
    assert caught.value.retry_after_s == pytest.approx(6.0)
    assert "503 Service Unavailable" in caught.value.reason


def test_a_configuration_fault_opens_it_at_once_with_its_hint() -> None:
    breaker = circuit(ManualClock())
    fault = ConfigFault("dataverse", "400 Bad Request on PATCH accounts", 400,
                        hint="check SYNC_DEFINITION")
    assert breaker.failed(fault)
    assert breaker.view.reason == "400 Bad Request on PATCH accounts; check SYNC_DEFINITION"


def test_half_open_lets_one_probe_through_and_its_success_closes() -> None:
    clock = ManualClock()
    breaker = half_open(clock)
    assert breaker.state == "half-open"
    assert breaker.admit()  # the probe
    with pytest.raises(CircuitOpen):
        breaker.admit()  # a second caller waits for the probe
    assert breaker.succeeded()  # it closed the circuit
    assert breaker.state == "closed"
    assert breaker.view == CircuitView(0.0, 0, "")
    assert not breaker.succeeded()  # already closed: no change to publish
    assert not breaker.admit()


def test_a_failed_probe_opens_it_again_for_longer() -> None:
    clock = ManualClock()
    breaker = half_open(clock)
    breaker.admit()
    assert breaker.failed(FAULT, probe=True)
    assert breaker.state == "open"
    assert breaker.view.trips == 2
    assert breaker.open_for_s() == pytest.approx(20.0)


def test_an_ambiguous_fault_on_the_probe_fails_it_like_any_other() -> None:
    """The cause of a permanent 403 that never backed off: a probe released on an ambiguous
    answer left the circuit half-open, every message probing again every second or two."""
    clock = ManualClock()
    breaker = half_open(clock)
    assert breaker.admit()
    assert breaker.failed(AmbiguousFault("dataverse", "403 Forbidden on PATCH accounts", 403),
                          probe=True)
    assert breaker.state == "open"
    assert breaker.open_for_s() == pytest.approx(20.0)
    with pytest.raises(CircuitOpen) as caught:
        breaker.admit()
    assert caught.value.retry_after_s == pytest.approx(20.0)


def test_each_failed_probe_doubles_the_opening_up_to_the_cap() -> None:
    clock = ManualClock()
    breaker = half_open(clock)
    openings = []
    for _ in range(5):
        assert breaker.admit()
        breaker.failed(FAULT, probe=True)
        openings.append(breaker.open_for_s())
        clock.advance(breaker.open_for_s())
    assert openings == pytest.approx([20.0, 40.0, 60.0, 60.0, 60.0])


def test_the_probe_claims_the_next_opening_which_a_failure_keeps() -> None:
    """What a half-open probe writes to the cluster's row before it goes: the next opening; the
    circuit that adopts it (the claim won) refuses every other caller for that long."""
    clock = ManualClock()
    breaker = half_open(clock)
    assert breaker.admit()
    claim = breaker.next_opening()
    assert (claim.trips, claim.open_until_s) == (2, pytest.approx(clock.wall_s() + 20.0))
    assert breaker.adopt(CircuitView(claim.open_until_s, claim.trips, claim.reason, 1))
    with pytest.raises(CircuitOpen):
        breaker.admit()
    clock.advance(5)
    assert breaker.failed(FAULT, probe=True)  # the claimed opening stands, not a longer one
    assert breaker.view.trips == 2
    assert breaker.open_for_s() == pytest.approx(15.0)


def test_while_a_claimed_probe_is_pending_a_request_held_back_comes_again_in_a_second() -> None:
    """Before: the probe's claim moved the opening's end, and every message that arrived with
    the probe went back for the whole next opening (up to ``SYNC_CIRCUIT_MAX_OPEN_S``) though
    the probe then closed the circuit a moment later."""
    clock = ManualClock()
    breaker = half_open(clock)
    assert breaker.admit()
    assert breaker.adopt(CircuitView(**{**_fields(breaker.next_opening()), "generation": 1}))
    assert breaker.probe_pending()
    with pytest.raises(CircuitOpen) as refused:
        breaker.admit()
    assert refused.value.retry_after_s == PROBE_WAIT_S
    assert breaker.holds_for_s() == PROBE_WAIT_S
    assert breaker.failed(FAULT, probe=True)  # the answer: failed, so the opening stands
    assert not breaker.probe_pending()
    assert breaker.holds_for_s() == pytest.approx(20.0)
    assert breaker.refusal().retry_after_s == pytest.approx(20.0)


def test_a_claim_without_an_answer_holds_back_for_its_opening_once_it_is_stale() -> None:
    """A prober gone without a word (killed mid-probe): after ``PROBE_PENDING_S`` its claim is
    an opening like any other."""
    clock = ManualClock()
    breaker = Circuit("dataverse", CircuitPolicy(threshold=1, open_s=40.0, max_open_s=300.0),
                      clock=clock, rand=lambda: 0.5)
    breaker.failed(FAULT)
    clock.advance(40)
    assert breaker.admit()
    claim = breaker.next_opening()  # 80 s from now
    breaker.released()  # as seen by another process: the claim only, no probe of its own
    assert breaker.adopt(CircuitView(**{**_fields(claim), "generation": 1}))
    assert breaker.holds_for_s() == PROBE_WAIT_S
    clock.advance(PROBE_PENDING_S)
    assert not breaker.probe_pending()
    assert breaker.holds_for_s() == pytest.approx(80.0 - PROBE_PENDING_S)


def test_a_probe_that_went_unanswered_is_no_longer_waited_for() -> None:
    clock = ManualClock()
    breaker = half_open(clock)
    assert breaker.admit()
    assert breaker.adopt(CircuitView(**{**_fields(breaker.next_opening()), "generation": 1}))
    breaker.unanswered()  # e.g. the probe met a 429
    assert not breaker.probe_pending()
    assert breaker.holds_for_s() == pytest.approx(20.0)


def _fields(view: CircuitView) -> dict[str, object]:
    return {name: getattr(view, name) for name in CircuitView.__dataclass_fields__}


def test_a_read_in_half_open_goes_without_probing_and_closes_nothing() -> None:
    clock = ManualClock()
    breaker = half_open(clock)
    assert not breaker.admit(probe=False)
    breaker.answered()
    assert breaker.state == "half-open"
    assert breaker.admit()  # the probe slot is still free for a write


def test_a_read_resets_the_count_of_faults() -> None:
    breaker = circuit(ManualClock())
    breaker.failed(FAULT)
    breaker.failed(FAULT)
    breaker.answered()
    assert not breaker.failed(FAULT)
    assert breaker.state == "closed"


def test_a_throttled_probe_frees_the_probe_slot() -> None:
    clock = ManualClock()
    breaker = half_open(clock)
    breaker.admit()
    breaker.released()
    breaker.admit()


def test_the_cluster_state_is_adopted_only_when_newer() -> None:
    clock = ManualClock()
    breaker = circuit(clock)
    assert breaker.adopt(CircuitView(clock.wall_s() + 30, 2, "elsewhere: 403", 4))
    assert breaker.state == "open"
    assert breaker.open_for_s() == pytest.approx(30)
    assert breaker.generation == 4
    assert not breaker.adopt(CircuitView(0.0, 0, "", 3))  # an older closing: ignored
    assert not breaker.adopt(CircuitView(0.0, 0, "", 4))  # what it already holds
    assert breaker.view.reason == "elsewhere: 403"
    assert breaker.adopt(CircuitView(0.0, 0, "", 5))  # a newer closing closes
    assert breaker.state == "closed"
    breaker.synced(9)  # its own state written as generation 9
    assert not breaker.adopt(CircuitView(clock.wall_s() + 30, 1, "late", 8))
    assert breaker.state == "closed"


async def test_retries_service_faults_with_back_off_on_the_clock_then_raises() -> None:
    clock = ManualClock(auto_advance=True)
    calls: list[float] = []
    retried: list[int] = []

    async def failing() -> None:
        calls.append(clock.monotonic_s())
        raise FAULT

    with pytest.raises(ServiceFault):
        await retrying(failing, RetryPolicy(3), clock=clock, rand=lambda: 1.0,
                       on_retry=lambda _, n: retried.append(n))
    assert calls == [0.0, 0.5, 1.5, 3.5]
    assert retried == [1, 2, 3]


@pytest.mark.parametrize("error", [
    ConfigFault("dataverse", "400"), RecordFault("dataverse", 404, "", "gone"),
], ids=["configuration fault", "record fault"])
async def test_what_a_retry_cannot_cure_is_not_retried(error: Exception) -> None:
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(type(error)):
        await retrying(failing, RetryPolicy(3), clock=ManualClock(auto_advance=True))
    assert calls == 1


async def test_a_declined_fault_is_raised_at_once_and_a_success_ends_the_loop() -> None:
    clock = ManualClock(auto_advance=True)
    answers = iter([FAULT, None])

    async def flaky() -> str:
        fault = next(answers)
        if fault is not None:
            raise fault
        return "ok"

    assert await retrying(flaky, RetryPolicy(1), clock=clock) == "ok"
    ambiguous = AmbiguousFault("dataverse", "403")

    async def refused() -> None:
        raise ambiguous

    with pytest.raises(AmbiguousFault):
        await retrying(refused, RetryPolicy(3), clock=clock,
                       retryable=lambda f: not isinstance(f, AmbiguousFault))


@pytest.mark.parametrize(("success_sent_s", "first_failure_s", "record_s"), [
    (None, 5.0, False), (4.9, 5.0, False), (5.0, 5.0, True), (7.0, 5.0, True),
], ids=["no success at all", "a success sent before the failure", "sent together",
        "a success sent after the failure"])
def test_scope_needs_a_success_sent_since_the_first_failure(
        success_sent_s: float | None, first_failure_s: float, record_s: bool) -> None:
    log = ScopeLog()
    if success_sent_s is not None:
        log.succeeded(success_sent_s)
    assert log.siblings_succeeded_since(first_failure_s) is record_s


@pytest.mark.parametrize(("strikes", "probes", "record"), [(0, 3, False), (2, 3, False),
                                                            (3, 3, True), (1, 1, True)])
def test_a_record_fault_needs_its_probes(strikes: int, probes: int, record: bool) -> None:
    assert is_record_fault(strikes, probes) is record


# ------------------------------------------------- the cluster's row (Azurite), two processes

class Process:
    """One instance's view of the ``dataverse`` circuit and its shared row."""

    def __init__(self, table: TableClient, clock: ManualClock, name: str) -> None:
        self.circuit = circuit(clock)
        self.row = CircuitRow(table, CIRCUIT_PARTITION, self.circuit, name)
        self.dependency = Dependency("dataverse", Governor(4), self.circuit, RetryPolicy(2),
                                     clock=clock, shared=self.row)


class Hooks:
    """What a message run is told about its calls; here only the sends are counted."""

    def __init__(self) -> None:
        self.sent = 0

    def stop_delay(self, service: str) -> float | None:
        return None

    def count_429(self, error: Throttled) -> None:
        return None

    def count_retry(self, fault: ServiceFault) -> None:
        return None

    def count_request(self, service: str, kind: str, *, retry: bool) -> None:
        self.sent += 1


@pytest.fixture
async def table(storage: StorageSettings) -> AsyncIterator[TableClient]:
    async with table_client(storage, STATE_TABLE, None) as client:
        yield client


async def shared_row(table: TableClient) -> CircuitView:
    return view_of(await table.get_entity(CIRCUIT_PARTITION, "dataverse"))


async def opened_everywhere(table: TableClient, clock: ManualClock) -> tuple[Process, Process]:
    """Two processes; the first opens the circuit (three faults) and publishes it, the second
    adopts it; then its opening passes: both are half-open."""
    first, second = Process(table, clock, "a"), Process(table, clock, "b")
    for _ in range(3):
        await first.dependency.record_failure(FAULT)
    assert second.circuit.adopt(await shared_row(table))
    clock.advance(10)
    assert first.circuit.state == second.circuit.state == "half-open"
    return first, second


async def test_a_late_closing_never_overwrites_a_newer_opening(table: TableClient) -> None:
    """Before: rows were upserted without an ETag and closings published fire-and-forget, so a
    closing that reached the table after another instance's newer opening undid it."""
    clock = ManualClock()
    first, second = await opened_everywhere(table, clock)
    assert first.circuit.admit()  # the first's probe succeeds: it closes, published later...
    assert first.circuit.succeeded()
    for _ in range(3):  # ...meanwhile the second opens it again and publishes at once
        await second.dependency.record_failure(FAULT)
    opened = await shared_row(table)
    assert opened.trips == 2
    await first.row.publish()  # the late closing
    assert await shared_row(table) == opened
    assert first.circuit.state == "open"  # the first adopted the newer opening instead
    assert first.circuit.view == opened


async def test_a_process_publishes_its_changes_in_order(table: TableClient) -> None:
    clock = ManualClock()
    first, _ = await opened_everywhere(table, clock)
    assert first.circuit.admit()
    first.circuit.succeeded()
    closing = asyncio.create_task(first.row.publish())  # as a closing is: not awaited
    first.circuit.failed(ConfigFault("dataverse", "403 Forbidden on PATCH accounts"))
    await asyncio.gather(closing, first.row.publish())
    row = await shared_row(table)
    assert (row.trips, row.reason) == (1, "403 Forbidden on PATCH accounts")
    assert row.open_until_s > clock.wall_s()


async def test_one_probe_per_opening_for_the_whole_cluster(table: TableClient) -> None:
    """Two half-open instances each try to probe a service that refuses every write (an
    ambiguous 403): one request reaches it; both then wait the claimed, longer opening."""
    clock = ManualClock(auto_advance=True)
    first, second = await opened_everywhere(table, clock)
    refused = AmbiguousFault("dataverse", "403 Forbidden on PATCH accounts", 403)
    sends = 0

    async def send() -> None:
        nonlocal sends
        sends += 1
        raise refused

    outcomes = await asyncio.gather(
        *(process.dependency.call(send, Hooks(), split_ambiguous=True)
          for process in (first, second, first, second)), return_exceptions=True)
    assert sends == 1
    assert sum(isinstance(o, AmbiguousFault) for o in outcomes) == 1
    assert sum(isinstance(o, CircuitOpen) for o in outcomes) == 3
    row = await shared_row(table)
    assert row.trips == 2
    assert row.open_until_s == pytest.approx(clock.wall_s() + 20.0, abs=0.1)
    for process in (first, second):
        assert process.circuit.state == "open"
        assert process.circuit.open_for_s() == pytest.approx(20.0, abs=0.1)


async def test_a_claim_that_loses_to_a_closing_sends_as_usual(table: TableClient) -> None:
    clock = ManualClock()
    first, second = await opened_everywhere(table, clock)
    assert first.circuit.admit()
    assert first.circuit.succeeded()
    await first.row.publish()  # closed, for the cluster
    hooks = Hooks()

    async def send() -> str:
        return "written"

    assert await second.dependency.call(send, hooks) == "written"  # its claim found the closing
    assert second.circuit.state == "closed"
    assert hooks.sent == 1
    assert (await shared_row(table)).trips == 0


async def test_a_claim_moves_the_time_and_only_a_failed_probe_the_count(
        table: TableClient) -> None:
    """While the probe is in flight the row says "wait" (open until the next opening's end) but
    not "opened again": a watcher of the row (sync local's blocked judge) sees the circuit
    reopen only once the probe has failed."""
    clock = ManualClock()
    first, second = await opened_everywhere(table, clock)
    assert first.circuit.admit()
    assert await first.row.claim_probe()
    claimed = await shared_row(table)
    assert claimed.trips == 1
    assert claimed.open_until_s == pytest.approx(clock.wall_s() + 20.0)
    assert second.circuit.adopt(claimed)
    assert second.circuit.open_for_s() == pytest.approx(20.0)
    assert second.circuit.holds_for_s() == PROBE_WAIT_S  # the probe's answer is still to come
    await first.dependency.record_failure(FAULT, probe=True)
    failed = await shared_row(table)
    assert (failed.trips, failed.open_until_s) == (2, claimed.open_until_s)
    assert failed.claimed_s == 0.0
    assert second.circuit.adopt(failed)
    assert second.circuit.holds_for_s() == pytest.approx(20.0)  # failed: its opening stands
