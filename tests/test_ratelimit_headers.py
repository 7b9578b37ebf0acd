"""The x-ms-ratelimit headers as the service writes them (captured values from Microsoft's
Web API docs: ``1,200.00`` and ``1,199.46`` seconds; ``5993`` and ``7999`` requests)."""

from __future__ import annotations

import pytest

from sync.budget.governor import paced
from sync.clients import ratelimit_headers
from sync.clients.dataverse import headroom_from


@pytest.mark.parametrize(("value", "expected"), [
    ("1,200.00", 1200.0),
    ("1,199.46", 1199.46),
    ("1199.46", 1199.46),
    ("1200", 1200.0),
    ("0.00", 0.0),
    ("12,345,678.9", 12_345_678.9),
    (" 1,199.46 ", 1199.46),
], ids=repr)
def test_time_left_reads_seconds_with_or_without_the_thousands_separator(
        value: str, expected: float) -> None:
    assert ratelimit_headers.time_left_s(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", [
    None, "", "1.199,46", "1,19", "1,1994.6", ",199.46", "1,199.", "-3", "nan", "inf",
    "1e3", "12 00", "1,199.46s",
], ids=repr)
def test_time_left_refuses_what_it_would_misread(value: str | None) -> None:
    assert ratelimit_headers.time_left_s(value) is None


@pytest.mark.parametrize(("value", "expected"), [
    ("5993", 5993), ("7999", 7999), ("0", 0), ("5,993", 5993), (None, None), ("", None),
    ("59.93", None), ("-1", None), ("x", None),
], ids=repr)
def test_requests_left_is_an_integer(value: str | None, expected: int | None) -> None:
    assert ratelimit_headers.requests_left(value) == expected


@pytest.mark.parametrize(("requests", "time_s", "latency_ms", "expected"), [
    (None, None, 150.0, None),
    (5993, None, 150.0, 5993),
    (None, 1199.46, 150.0, None),
    (7999, 1199.46, 150.0, 7999),
    (10, 1199.46, 150.0, 10),
    (None, 0.05, 100.0, 0),
    (7999, 0.05, 100.0, 0),
    (None, 0.0005, 0.0, 0),
    (None, 0.002, 0.0, None),
], ids=["nothing known", "requests only", "time only: 1,199.46 s is no limit",
        "time left, the requests count", "requests are the lesser",
        "less than one request's time left: a brake", "the brake wins over requests",
        "latency floored at 1 ms: under it", "latency floored at 1 ms: over it"])
def test_headroom_counts_requests_and_brakes_on_time(
        requests: int | None, time_s: float | None, latency_ms: float,
        expected: int | None) -> None:
    assert ratelimit_headers.headroom(requests, time_s, latency_ms) == expected


def test_the_captured_headers_leave_thousands_of_requests_not_seven() -> None:
    """Read as milliseconds, ``1,199.46`` would be 1.2 s: a brake after 7 requests of 150 ms.
    Read as seconds it leaves the requests facet to count."""
    assert headroom_from("7999", "1,199.46", 150.0) == 7999
    assert headroom_from("5993", "1,200.00", 150.0) == 5993
    assert headroom_from(None, "1199.46", 150.0) is None
    assert headroom_from(None, "1,199.46", 1_199_460.0) is None


@pytest.mark.parametrize("instances", [1, 3])
def test_the_real_headers_leave_the_governor_as_fast_as_no_headers(instances: int) -> None:
    """Pacing by what the window leaves: with the service's formats, a fresh window does not
    hold the governor below its share, exactly as when the server sends no headers."""
    share = 50
    unpaced = paced(share, headroom_from(None, None, 150.0), instances)
    for requests_left, time_left in (("7999", "1,199.46"), ("5993", "1,200.00"),
                                     (None, "1199.46")):
        headroom = headroom_from(requests_left, time_left, 150.0)
        assert paced(share, headroom, instances) == unpaced == share


def test_a_nearly_spent_window_still_paces() -> None:
    """The same parser holds the governor back when the window is really spent: 0.10 s left
    at 150 ms a request brakes new sends to the requests already in flight."""
    assert headroom_from("900", "0.10", 150.0) == 0
    assert paced(50, headroom_from("900", "0.10", 150.0), 1, in_flight=12) == 12
    assert paced(50, headroom_from("900", "0.30", 150.0), 1, in_flight=12) == 50
