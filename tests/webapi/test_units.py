"""The emulator's pure pieces, table-driven, no I/O: the limits on a fake clock, the
ceiling, the time scale, the settings' checks, the $filter parser, key segments, Prefer, and
the store's undo journal and change log."""

from __future__ import annotations

import random
from collections import deque
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from sync.local.emulators.webapi import EmulatorConfig
from sync.local.emulators.webapi.limits import (
    Bucket,
    admit,
    charge,
    finish,
    remaining,
    round_up,
)
from sync.local.emulators.webapi.odata import (
    ODataError,
    parse_filter,
    parse_segment,
    parse_select,
)
from sync.local.emulators.webapi.ops import World
from sync.local.emulators.webapi.reads import Prefer, read_collection
from sync.local.emulators.webapi.stats import ceiling, run_bound
from sync.local.emulators.webapi.store import Table, accounts, iso_now

# ---- the limits on a fake clock ------------------------------------------------------------

Step = tuple[Any, ...]  # ("admit", now_s), ("charge", start_s, cost_ms) or ("finish", now_s)
Outcome = tuple[str, float] | None  # per admit: None (admitted) or (code, Retry-After s)

LIMIT_CASES: list[tuple[str, dict[str, Any], list[Step], list[Outcome]]] = [
    ("request count: the third of two waits until the first leaves the window",
     {"max_requests": 2}, [("admit", 0.0), ("admit", 1.0), ("admit", 2.0), ("admit", 10.5)],
     [None, None, ("0x80072322", 8.0), None]),
    ("execution time: admitted while the budget has room for the largest request, then "
     "when enough of it leaves the window",
     {"max_exec_ms": 100.0},
     [("admit", 0.0), ("charge", 0.0, 40.0), ("finish", 0.04), ("admit", 1.0),
      ("charge", 1.0, 40.0), ("finish", 1.04), ("admit", 2.0), ("admit", 11.0)],
     [None, None, ("0x80072321", 9.0), None]),
    ("a request that does not fit what is left waits, though the budget is not spent",
     {"max_exec_ms": 100.0},
     [("admit", 0.0), ("charge", 0.0, 60.0), ("finish", 0.06), ("admit", 1.0)],
     [None, ("0x80072321", 10.0)]),
    ("a request larger than the whole budget runs alone: the next waits for an empty window",
     {"max_exec_ms": 1000.0},
     [("admit", 0.0), ("charge", 0.0, 3000.0), ("admit", 1.0), ("finish", 3.0),
      ("admit", 13.0)],
     [None, ("0x80072321", 12.0), None]),
    ("in-flight work counts at once: what a request will spend is committed when it starts",
     {"max_exec_ms": 100.0}, [("admit", 0.0), ("charge", 0.0, 500.0), ("admit", 0.1)],
     [None, ("0x80072321", 11.0)]),
    ("a long request's time leaves the window as it was spent, not all at its end",
     {"max_exec_ms": 4000.0},
     [("admit", 0.0), ("charge", 0.0, 3000.0), ("finish", 3.0), ("admit", 3.0),
      ("admit", 12.5)],
     [None, ("0x80072321", 9.0), None]),
    ("with in-flight time counted in part, the execution facet bites late",
     {"max_exec_ms": 100.0, "exec_in_flight_share": 0.0},
     [("admit", 0.0), ("charge", 0.0, 500.0), ("admit", 0.05), ("admit", 0.2)],
     [None, None, ("0x80072321", 11.0)]),
    ("concurrency: refused at once, admitted as soon as one finishes, no episode",
     {"max_concurrent": 2},
     [("admit", 0.0), ("admit", 0.0), ("admit", 0.0), ("finish", 0.1), ("admit", 0.1)],
     [None, None, ("0x80072326", 1.0), None]),
    ("a client that sends while throttled is pushed back once per episode",
     {"max_requests": 1, "penalty_s": 2.0},
     [("admit", 0.0), ("admit", 1.0), ("admit", 2.0), ("admit", 3.0), ("admit", 12.0)],
     [None, ("0x80072322", 9.0), ("0x80072322", 10.0), ("0x80072322", 9.0), None]),
    ("sending more often than Retry-After's step does not lock a client out",
     {"max_requests": 1, "window_s": 2.0},
     [("admit", 0.0), ("admit", 0.5), ("admit", 1.0), ("admit", 1.5), ("admit", 2.0)],
     [None, ("0x80072322", 2.0), ("0x80072322", 1.0), ("0x80072322", 1.0), None]),
    ("Retry-After is rounded up to the resolution",
     {"max_requests": 1, "window_s": 1.0, "retry_after_resolution_s": 0.1},
     [("admit", 0.0), ("admit", 0.25)], [None, ("0x80072322", 0.8)]),
]


@pytest.mark.parametrize(("overrides", "steps", "expected"),
                         [case[1:] for case in LIMIT_CASES], ids=[c[0] for c in LIMIT_CASES])
def test_limits_on_a_fake_clock(overrides: dict[str, Any], steps: list[Step],
                                expected: list[Outcome]) -> None:
    config = EmulatorConfig(**{"window_s": 10.0, "penalty_s": 0.0, **overrides})
    bucket, outcomes = Bucket(), []
    for step in steps:
        if step[0] == "finish":
            finish(bucket, config, step[1])
        elif step[0] == "charge":
            charge(bucket, step[1], step[2])
        else:
            denial = admit(bucket, config, step[1])
            outcomes.append(None if denial is None else (denial.code, denial.retry_after_s))
    assert outcomes == [o if o is None else (o[0], pytest.approx(o[1])) for o in expected]


@pytest.mark.parametrize(("now_s", "spent_s", "committed_s"), [
    (0.0, 0.0, 10.0), (4.0, 4.0, 10.0), (10.0, 10.0, 10.0), (15.0, 5.0, 5.0), (20.0, 0.0, 0.0),
], ids=["at its start: nothing spent, all committed", "while it runs", "at its end",
        "half of it has left the window", "all of it has left"])
def test_execution_time_is_charged_to_the_window_it_is_spent_in(
        now_s: float, spent_s: float, committed_s: float) -> None:
    bucket = Bucket()
    charge(bucket, 0.0, 10_000.0)  # one request running from 0 s to 10 s, window 10 s
    assert bucket.spent_s(now_s, 10.0) == pytest.approx(spent_s)
    assert bucket.committed_s(now_s, 10.0) == pytest.approx(committed_s)


DOCUMENTED_MESSAGES = [
    ("0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 "
                   "seconds."),
    ("0x80072321", "Combined execution time of incoming requests exceeded limit of 1,200,000 "
                   "milliseconds over time window of 300 seconds. Decrease number of "
                   "concurrent requests or reduce the duration of requests and try again "
                   "later."),
    ("0x80072326", "Number of concurrent requests exceeded the limit of 52."),
]


@pytest.mark.parametrize(("code", "message"), DOCUMENTED_MESSAGES)
def test_default_limits_answer_the_documented_codes_and_messages(code: str,
                                                                 message: str) -> None:
    config = EmulatorConfig()
    bucket = Bucket()
    if code == "0x80072322":
        bucket.arrivals_s = deque([0.0] * 6000)
    elif code == "0x80072321":
        charge(bucket, 0.0, 1_200_000.0)
    else:
        bucket.in_flight = 52
    denial = admit(bucket, config, 1.0)
    assert denial is not None
    assert (denial.code, denial.message) == (code, message)
    assert denial.retry_after_s >= 1.0


def test_remaining_is_what_the_window_leaves() -> None:
    config = EmulatorConfig(max_requests=10, max_exec_ms=1000.0, window_s=10.0)
    bucket = Bucket()
    assert remaining(bucket, config, 0.0) == (10, 1000.0)
    for now_s in (0.0, 1.0):
        assert admit(bucket, config, now_s) is None
        charge(bucket, now_s, 300.0)
        finish(bucket, config, now_s + 0.3)
    assert remaining(bucket, config, 2.0) == (8, pytest.approx(400.0))
    assert remaining(bucket, config, 10.6) == (9, pytest.approx(700.0))  # the first has left
    assert remaining(bucket, config, 30.0) == (10, 1000.0)


@pytest.mark.parametrize(("seconds", "step", "expected"), [
    (0.01, 1.0, 1.0), (1.0, 1.0, 1.0), (1.2, 1.0, 2.0), (0.25, 0.1, 0.3), (0.0, 0.1, 0.1),
    (299.5, 1.0, 300.0)])
def test_retry_after_is_rounded_up_to_the_step(seconds: float, step: float,
                                               expected: float) -> None:
    assert round_up(seconds, step) == pytest.approx(expected)


# ---- the ceiling, the time scale, the settings ---------------------------------------------

@pytest.mark.parametrize(("overrides", "mode", "expected"), [
    ({}, "single", 40.0),  # request-bound: 6000 / 300 s per server, 2 servers
    ({"servers": 1}, "single", 20.0),
    ({"write_ms_min": 2000.0, "write_ms_max": 2000.0, "request_overhead_ms": 0.0,
      "max_concurrent": 1}, "single", 1.0),  # concurrency-bound: 1 in flight of 2 s, x2
    ({"write_ms_min": 400.0, "write_ms_max": 400.0, "request_overhead_ms": 0.0},
     "single", 20.0),  # execution-bound: 4 server s/s / 0.4 s, x2
    ({"bulk_target_ms": 10.0, "request_overhead_ms": 0.0}, "bulk", 800.0),  # 4 s/s / 10 ms x2
    ({"batch_op_ms": 100.0, "request_overhead_ms": 0.0}, "batch", 80.0),  # 4 s/s / 0.1 s x2
    ({"batch_op_ms": 0.0, "request_overhead_ms": 0.0}, "batch", 40_000.0),  # free: requests
])
def test_ceiling(overrides: dict[str, Any], mode: str, expected: float) -> None:
    found = ceiling(EmulatorConfig(**overrides))
    assert found[mode] == pytest.approx(expected, rel=0.01)
    assert found["overall"] == max(found[m] for m in ("single", "batch", "bulk"))


@pytest.mark.parametrize(("overrides", "run_s", "mode", "expected"), [
    ({"max_requests": 10}, 25.0, "single", 30.0),  # 3 whole windows of 10 requests
    ({"max_requests": 10}, 9.9, "single", 10.0),  # inside the first window: its burst
    ({"max_exec_ms": 1000.0, "write_ms_min": 250.0, "write_ms_max": 250.0}, 10.0, "single",
     9.0),  # 1 s / 0.25 s x 2 windows + 1 crossing request (a new largest size), once
    ({"max_concurrent": 2, "write_ms_min": 2000.0, "write_ms_max": 2000.0}, 5.0, "single",
     7.0),  # 2 slots x (5 s / 2 s + 1): whole starts, or fewer records per start
    ({"max_exec_ms": 1000.0, "bulk_target_ms": 100.0, "max_batch_operations": 5}, 0.0,
     "bulk", 15.0),  # (1 s / 0.5 s + 1) requests of 5 targets
    ({"max_exec_ms": 1000.0, "bulk_target_ms": 100.0, "max_batch_operations": 5,
      "exec_in_flight_share": 0.5, "max_concurrent": 4}, 5.0, "bulk", 25.0),  # + 0.5 x 4
], ids=["request count", "first window only", "execution time", "concurrency",
        "bulk by execution time", "in-flight time counted in half"])
def test_run_bound(overrides: dict[str, Any], run_s: float, mode: str,
                   expected: float) -> None:
    config = EmulatorConfig(**{"servers": 1, "window_s": 10.0, "request_overhead_ms": 0.0,
                               **overrides})
    found = run_bound(config, run_s)
    assert found[mode] == pytest.approx(expected)
    assert found["overall"] >= max(found[m] for m in ("single", "batch", "bulk"))


def test_the_enrichment_api_can_be_the_ceiling() -> None:
    config = EmulatorConfig()
    assert "enrichment" not in ceiling(config)
    slow = ceiling(config, enrichment_rate_per_s=50.0)
    assert (slow["enrichment"], slow["overall"]) == (50.0, 50.0)
    assert ceiling(config, enrichment_rate_per_s=1e6)["overall"] == ceiling(config)["overall"]
    assert run_bound(config, 10.0, enrichment=(50.0, 20.0))["enrichment"] == 520.0
    assert ceiling(config, users=3)["bulk"] == pytest.approx(3 * ceiling(config)["bulk"])


@pytest.mark.parametrize("window_s", [3.0, 30.0, 300.0])
def test_scaled_keeps_the_documented_ratios(window_s: float) -> None:
    scaled, documented = EmulatorConfig.scaled(window_s), EmulatorConfig()
    assert scaled.window_s == window_s
    assert scaled.max_requests / window_s == documented.max_requests / documented.window_s
    assert scaled.max_exec_ms / window_s == pytest.approx(
        documented.max_exec_ms / documented.window_s)
    assert scaled.max_concurrent == documented.max_concurrent
    # a $batch holds what fits a window's budget (119 operations of 100 ms at 3 s): the same
    # records/s within the request overhead
    assert ceiling(scaled) == pytest.approx(ceiling(documented), rel=1e-3)
    assert EmulatorConfig.scaled(window_s, max_requests=7).max_requests == 7


@pytest.mark.parametrize("factor", [1.0, 10.0, 60.0])
def test_one_factor_divides_every_duration_and_keeps_every_rate(factor: float) -> None:
    scaled, documented = EmulatorConfig.time_scaled(factor), EmulatorConfig()
    for name in ("window_s", "max_exec_ms", "penalty_s", "concurrency_retry_after_s"):
        assert getattr(scaled, name) == pytest.approx(getattr(documented, name) / factor)
    assert scaled.max_requests == round(documented.max_requests / factor)
    assert scaled.max_requests / scaled.window_s == pytest.approx(20.0)  # requests/s
    assert scaled.max_exec_ms / 1000 / scaled.window_s == pytest.approx(4.0)  # server s/s
    assert scaled.write_ms_mean() == documented.write_ms_mean()  # a write is still a write
    assert scaled.retry_after_resolution_s == 1.0


@pytest.mark.parametrize("factor", [1.0, 10.0, 60.0])
def test_retry_after_stays_whole_seconds_under_a_time_scale(factor: float) -> None:
    """Queue visibility delays are whole seconds: no scaled Retry-After is under 1 s."""
    config = EmulatorConfig.time_scaled(factor)
    busy = Bucket(in_flight=config.max_concurrent)
    full = Bucket(arrivals_s=deque([0.0] * config.max_requests))
    for bucket in (busy, full):
        denial = admit(bucket, config, 0.001)
        assert denial is not None
        assert denial.retry_after_s >= 1.0
        assert denial.retry_after_s == int(denial.retry_after_s)


def test_a_time_scale_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="factor"):
        EmulatorConfig.time_scaled(0.5)


@pytest.mark.parametrize("bad", [
    {"servers": 0}, {"window_s": 0.0}, {"max_requests": 0}, {"max_exec_ms": 0.0},
    {"max_concurrent": 0}, {"dop_hint": 0}, {"dop_hint": 1025}, {"records": -1},
    {"write_ms_min": 5.0, "write_ms_max": 1.0}, {"fault_500_rate": 1.5}, {"slow_rate": -0.1},
    {"retry_after_resolution_s": 0.0}, {"change_token_ttl_s": 0.0},
    {"exec_in_flight_share": 1.5}, {"exec_in_flight_share": -0.1},
    {"max_batch_operations": 0}, {"max_page_size": 0}, {"penalty_s": -1.0}])
def test_impossible_settings_are_refused_early(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="EmulatorConfig"):
        EmulatorConfig(**bad)


def test_dop_hint_header_is_per_server_times_servers() -> None:
    assert EmulatorConfig().dop_hint_header == 20
    assert EmulatorConfig(servers=3, dop_hint=7).dop_hint_header == 21
    assert EmulatorConfig(servers=4, dop_hint=1000).dop_hint_header == 1024


# ---- $filter, $select, key segments, Prefer --------------------------------------------------

COLUMNS = frozenset({"name", "revenue", "createdon", "description", "statecode"})
ROWS = [
    {"name": "Alpine", "revenue": 10, "createdon": "2026-01-01T00:00:00Z", "description": None,
     "statecode": 0},
    {"name": "It's", "revenue": 20.5, "createdon": "2026-03-01T12:00:00Z", "description": "x",
     "statecode": 0},
    {"name": "Zephyr", "revenue": -5, "createdon": "2025-12-31T23:59:59Z", "description": "y",
     "statecode": 1},
]

FILTERS = [
    ("name eq 'Alpine'", ["Alpine"]),
    ("name eq 'alpine'", ["Alpine"]),  # the service compares strings without case
    ("name ne 'Alpine'", ["It's", "Zephyr"]),
    ("name eq 'It''s'", ["It's"]),  # a quote inside a string is doubled
    ("name gt 'B'", ["It's", "Zephyr"]),
    ("name lt 'B'", ["Alpine"]),
    ("revenue eq 10", ["Alpine"]),
    ("revenue ge 10", ["Alpine", "It's"]),
    ("revenue gt 10", ["It's"]),
    ("revenue le 10", ["Alpine", "Zephyr"]),
    ("revenue lt -1", ["Zephyr"]),
    ("revenue ge 20.5", ["It's"]),
    ("createdon ge 2026-01-01T00:00:00Z", ["Alpine", "It's"]),
    ("createdon lt 2026-01-01", ["Zephyr"]),  # a date alone is midnight UTC
    ("createdon gt 2026-01-01T00:30:00+01:00", ["Alpine", "It's", "Zephyr"]),  # offsets count
    ("description eq null", ["Alpine"]),
    ("description ne null", ["It's", "Zephyr"]),
    ("revenue gt null", []),
    ("statecode eq 0 and revenue gt 15", ["It's"]),
    ("statecode eq 1 or revenue eq 10", ["Alpine", "Zephyr"]),
    ("statecode eq 0 and (name eq 'Alpine' or name eq 'Zephyr')", ["Alpine"]),
    ("(statecode eq 0 and name eq 'Alpine') or name eq 'Zephyr'", ["Alpine", "Zephyr"]),
    ("statecode eq 1 or statecode eq 0 and name eq 'Alpine'", ["Alpine", "Zephyr"]),  # and first
    ("  name   eq   'Alpine'  ", ["Alpine"]),
]


@pytest.mark.parametrize(("expression", "expected"), FILTERS)
def test_filter(expression: str, expected: list[str]) -> None:
    predicate = parse_filter(expression, COLUMNS, "account")
    assert [row["name"] for row in ROWS if predicate(row)] == expected


BAD_FILTERS = [
    ("nosuch eq 1", "Could not find a property named 'nosuch' on type "
                    "'Microsoft.Dynamics.CRM.account'."),
    ("name eq", "Syntax error in $filter"),
    ("name", "Syntax error in $filter"),
    ("name likes 'x'", "unknown operator 'likes'"),
    ("(name eq 'x'", "Syntax error in $filter"),
    ("name eq 'x')", "Syntax error in $filter"),
    ("name eq 'x' and", "Syntax error in $filter"),
    ("name eq 'unterminated", "Syntax error in $filter"),
    ("name eq 'x' xor name eq 'y'", "Syntax error in $filter"),
    ("eq 'x'", "Syntax error in $filter"),
    ("createdon gt 2026-13-45", "not a valid date"),
    ("name eq #", "Syntax error in $filter"),
]


@pytest.mark.parametrize(("expression", "text"), BAD_FILTERS)
def test_bad_filter_is_an_odata_error(expression: str, text: str) -> None:
    with pytest.raises(ODataError) as caught:
        parse_filter(expression, COLUMNS, "account")
    assert caught.value.status == 400
    assert text in caught.value.message
    assert caught.value.body() == {"error": {"code": caught.value.code,
                                             "message": caught.value.message}}


@pytest.mark.parametrize(("text", "expected"), [
    (None, None), ("", None), ("name", ("name",)), ("name, revenue", ("name", "revenue"))])
def test_select(text: str | None, expected: tuple[str, ...] | None) -> None:
    assert parse_select(text, COLUMNS, "account") == expected


def test_select_of_an_unknown_column_is_an_odata_error() -> None:
    with pytest.raises(ODataError, match="Could not find a property named 'nope'"):
        parse_select("name,nope", COLUMNS, "account")


@pytest.mark.parametrize(("segment", "expected"), [
    ("accounts", ("accounts", None)),
    ("accounts(00000000-0000-4000-8000-00000000DEAD)",
     ("accounts", ("", "00000000-0000-4000-8000-00000000dead"))),
    ("accounts(accountid=00000000-0000-4000-8000-00000000dead)",
     ("accounts", ("accountid", "00000000-0000-4000-8000-00000000dead"))),
    ("accounts(accountnumber='X')", ("accounts", ("accountnumber", "X"))),
    ("accounts(accountnumber='O''Brien')", ("accounts", ("accountnumber", "O'Brien"))),
    ("accounts(accountnumber='a)b=c')", ("accounts", ("accountnumber", "a)b=c"))),
])
def test_key_segments(segment: str, expected: tuple[str, Any]) -> None:
    assert parse_segment(segment) == expected


@pytest.mark.parametrize(("segment", "status", "text"), [
    ("accounts(not-a-guid)", 400, "Unrecognized 'Edm.Guid' literal 'not-a-guid'"),
    ("accounts(accountnumber=X)", 400, "Unrecognized 'Edm.Guid' literal 'X'"),
    ("accounts(1)/x", 404, "Resource not found"),
    ("acc ounts", 404, "Resource not found"),
])
def test_bad_key_segments(segment: str, status: int, text: str) -> None:
    with pytest.raises(ODataError) as caught:
        parse_segment(segment)
    assert caught.value.status == status
    assert text in caught.value.message


@pytest.mark.parametrize(("header", "expected"), [
    ("", Prefer()),
    ("odata.maxpagesize=500", Prefer(max_page_size=500)),
    ("odata.track-changes, odata.maxpagesize = 20", Prefer(20, track_changes=True)),
    ("odata.continue-on-error", Prefer(continue_on_error=True)),
    ("odata.maxpagesize=0,odata.maxpagesize=abc", Prefer()),
    ('odata.include-annotations="*",odata.maxpagesize=7', Prefer(max_page_size=7)),
])
def test_prefer(header: str, expected: Prefer) -> None:
    assert Prefer.parse(header) == expected


# ---- the store: undo journal and change log --------------------------------------------------

def snapshot(table: Table) -> tuple[Any, ...]:
    return ({k: dict(v) for k, v in table.rows.items()}, list(table.sorted_ids),
            dict(table.by_alternate), list(table.changes), list(table.deleted))


def test_rollback_puts_every_row_back() -> None:
    table = accounts(20, seed=3)
    before = snapshot(table)
    first, second, third = table.sorted_ids[:3]
    mark = table.begin()
    table.put({**table.rows[first], "description": "changed"}, "user")
    table.put({**table.rows[second], "accountnumber": "NEW-KEY"}, "user")
    table.delete(third)
    new = dict(table.rows[first], accountid="00000000-0000-4000-8000-000000000001",
               accountnumber=before[0][third]["accountnumber"])  # the deleted record's key
    table.put(new, "user")
    inner = table.begin()
    table.put({**table.rows[first], "description": "twice"}, "user")
    table.rollback(inner)
    table.end()
    assert table.rows[first]["description"] == "changed"
    table.rollback(mark)
    table.end()
    assert snapshot(table) == before
    assert table.journal == []


def test_the_journal_is_kept_only_inside_an_atomic_operation() -> None:
    table = accounts(3, seed=3)
    table.put({**table.rows[table.sorted_ids[0]], "description": "x"}, "user")
    assert table.journal == []


def test_changed_since_answers_each_record_once_by_its_last_change() -> None:
    table = accounts(10, seed=5)
    ids = list(table.sorted_ids)
    rng = random.Random(5)
    for record_id in ids[:4] + [rng.choice(ids[:4]) for _ in range(30)]:
        table.put({**table.rows[record_id], "description": str(rng.random())}, "user")
    token = table.version
    table.put({**table.rows[ids[5]], "description": "after"}, "user")
    table.put({**table.rows[ids[0]], "description": "after"}, "user")
    table.delete(ids[6])
    table.put({**table.rows[ids[7]], "description": "gone soon"}, "user")
    table.delete(ids[7])
    found = list(table.changed_since(token, table.version))
    assert [version for version, _, _ in found] == sorted({v for v, _, _ in found})
    assert sorted((i, gone) for _, i, gone in found) == sorted(
        [(ids[0], False), (ids[5], False), (ids[6], True), (ids[7], True)])
    # up to the token: ids[0]'s last change came after it, so the next delta answers it
    assert sorted(i for _, i, _ in table.changed_since(0, token)) == sorted(ids[1:4])


def test_a_delta_page_reads_the_change_log_from_where_the_last_page_ended() -> None:
    table = accounts(3000, seed=5)
    world = World(EmulatorConfig(), {"accounts": table})
    tracked = Prefer(max_page_size=5000, track_changes=True)
    full = read_collection(world, "accounts", {"$select": "name"}, tracked)
    for record_id in list(table.sorted_ids):
        table.put({**table.rows[record_id], "description": "x"}, "user")
    looked_up: list[str] = []
    original = table.rows

    class Watched(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            looked_up.append(key)
            return original.get(key, default)

    table.rows = Watched(original)
    link = full.body["@odata.deltaLink"]
    pages: list[list[str]] = []
    for _ in range(2):
        query = dict(parse_qsl(urlsplit(link).query))
        answer = read_collection(world, "accounts", query, Prefer(max_page_size=100))
        pages.append([row["accountid"] for row in answer.body["value"]])
        link = answer.body["@odata.nextLink"]
    assert pages == [table.sorted_ids[:100], table.sorted_ids[100:200]]  # written in key order
    assert len(looked_up) <= 2 * 101  # each page and the one change after it: not the log


# ---- reads of records by id: a lookup, as the service's index does --------------------------

ID_A, ID_B = "00000000-0000-4000-8000-00000000000a", "00000000-0000-4000-8000-00000000000b"
KEYED = COLUMNS | {"accountid"}


@pytest.mark.parametrize(("expression", "keys"), [
    (f"accountid eq {ID_A} or accountid eq {ID_B}", {ID_A, ID_B}),
    (f"accountid eq {ID_A.upper()}", {ID_A}),
    (f"accountid eq {ID_A} and statecode eq 0", {ID_A}),
    (f"(accountid eq {ID_A} or accountid eq {ID_B}) and accountid eq {ID_B}", {ID_B}),
    (f"accountid eq {ID_A} or statecode eq 0", None),
    (f"accountid ne {ID_A}", None),
    ("name eq 'Alpine'", None),
], ids=["ids or'd", "upper case", "an id and a column", "and narrows", "or widens",
        "ne is no lookup", "no id"])
def test_a_filter_names_the_only_keys_it_can_match(expression: str,
                                                   keys: set[str] | None) -> None:
    found = parse_filter(expression, KEYED, "account", "accountid")
    assert found.keys == (frozenset(keys) if keys is not None else None)


def test_a_read_by_ids_tests_only_those_rows_and_pages_as_a_scan_would() -> None:
    table = accounts(2000, seed=5)
    world = World(EmulatorConfig(), {"accounts": table})
    wanted = [table.sorted_ids[i] for i in (3, 700, 1999)]
    text = " or ".join(f"accountid eq {i}" for i in [*wanted, ID_A])  # ID_A does not exist
    tested: list[str] = []
    original = table.rows

    class Watched(dict[str, Any]):
        def __getitem__(self, key: str) -> Any:
            tested.append(key)
            return original[key]

    table.rows = Watched(original)
    first = read_collection(world, "accounts", {"$filter": text}, Prefer(max_page_size=2))
    link = first.body["@odata.nextLink"]
    query = dict(parse_qsl(urlsplit(link).query))
    second = read_collection(world, "accounts", query, Prefer(max_page_size=2))
    ids = [row["accountid"] for answer in (first, second) for row in answer.body["value"]]
    assert ids == wanted
    assert "@odata.nextLink" not in second.body
    assert sorted(set(tested)) == sorted(wanted)


def test_rows_stamped_in_one_second_share_one_string() -> None:
    assert iso_now(1_700_000_000.2) == "2023-11-14T22:13:20Z"
    assert iso_now(1_700_000_000.9) is iso_now(1_700_000_000.2)
    assert iso_now(1_700_000_001.0) == "2023-11-14T22:13:21Z"
