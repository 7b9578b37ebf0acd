"""The circuit, the retry loop and the scope on virtual time: every transition, no sleeping."""

from __future__ import annotations

import pytest

from sync.clock import ManualClock
from sync.failures.circuit import Circuit, CircuitPolicy, CircuitView
from sync.failures.errors import AmbiguousFault, CircuitOpen, ConfigFault, RecordFault, ServiceFault
from sync.failures.retry import RetryPolicy, retrying
from sync.failures.scope import ScopeLog, is_record_fault

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
    breaker.admit()
    with pytest.raises(CircuitOpen):
        breaker.admit()  # a second caller waits for the probe
    assert breaker.succeeded()  # it closed the circuit
    assert breaker.state == "closed"
    assert breaker.view == CircuitView(0.0, 0, "")
    assert not breaker.succeeded()  # already closed: no change to publish
    breaker.admit()


def test_a_failed_probe_opens_it_again_for_longer() -> None:
    clock = ManualClock()
    breaker = half_open(clock)
    breaker.admit()
    assert breaker.failed(FAULT)
    assert breaker.state == "open"
    assert breaker.view.trips == 2
    assert breaker.open_for_s() == pytest.approx(20.0)


def test_a_throttled_probe_frees_the_probe_slot() -> None:
    clock = ManualClock()
    breaker = half_open(clock)
    breaker.admit()
    breaker.released()
    breaker.admit()


def test_the_clusters_later_opening_wins_and_its_closing_closes_a_half_open_one() -> None:
    clock = ManualClock()
    breaker = circuit(clock)
    breaker.apply(CircuitView(clock.wall_s() + 30, 2, "elsewhere: 403"))
    assert breaker.state == "open"
    assert breaker.open_for_s() == pytest.approx(30)
    breaker.apply(CircuitView(clock.wall_s() + 5, 1, "older"))
    assert breaker.view.reason == "elsewhere: 403"
    clock.advance(30)
    breaker.apply(CircuitView(0.0, 0, ""))
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
