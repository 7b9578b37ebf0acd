"""The fault-rule model without HTTP: parsing (every field checked, presets filled in, stable
names), which requests a rule hits, windows on a manual clock, and rates on a seeded RNG."""

from __future__ import annotations

import random
from typing import Any

import pytest

from sync.clock import ManualClock
from sync.local.emulators.webapi.fault_parsing import RuleError, parse_rule
from sync.local.emulators.webapi.faults import (
    DATAVERSE,
    Entry,
    FaultBook,
    Rule,
    Target,
    hits,
    pick,
)
from sync.local.emulators.webapi.injection import target_of, touched_ids

ID_A = "6e1f0d4c-0000-4000-8000-00000000000a"
ID_B = "6e1f0d4c-0000-4000-8000-00000000000b"


@pytest.mark.parametrize(("data", "expected"), [
    ({"preset": "403-privilege"},
     {"kind": "error", "name": "403-privilege", "status": 403, "code": "0x80040220",
      "hits": "all"}),
    ({"preset": "429-execution-time", "window_s": 15},
     {"status": 429, "code": "0x80072321", "retry_after_s": 5.0, "window_s": 15.0}),
    ({"preset": "429-concurrency", "retry_after_s": 2},
     {"code": "0x80072326", "retry_after_s": 2.0}),
    ({"kind": "error", "status": 500, "code": "0x80040265", "message": "plug-in"},
     {"name": "error-500", "message": "plug-in", "retry_after_s": None}),
    ({"kind": "reset", "rate": 0.2}, {"name": "reset", "rate": 0.2, "hits": "all"}),
    ({"kind": "not_json"}, {"name": "not_json", "hits": "reads"}),
    ({"kind": "missing_field", "field": "@odata.nextLink"},
     {"name": "missing-@odata.nextLink", "field": "@odata.nextLink"}),
    ({"kind": "commit_then_drop"}, {"name": "commit_then_drop", "hits": "writes"}),
    ({"preset": "500-plugin", "record_ids": [ID_A.upper()]},
     {"name": "key-500-plugin", "hits": "writes", "keys": frozenset({ID_A})}),
    ({"kind": "reset", "name": "my-reset"}, {"name": "my-reset"}),
], ids=["a preset fills status code and message", "a 429 preset carries its Retry-After",
        "a preset's field can be overridden", "an error spelled out is named by its status",
        "a reset at a rate hits everything", "malformed answers hit page reads by default",
        "missing field is named by the field", "commit then drop hits writes",
        "record ids make a write-only keyed rule", "a rule can name itself"])
def test_rules_parse_with_defaults(data: dict[str, Any], expected: dict[str, Any]) -> None:
    rule = parse_rule(data, DATAVERSE)
    for name, value in expected.items():
        assert getattr(rule, name) == value, name


@pytest.mark.parametrize(("data", "names"), [
    ([], "a JSON object"),
    ({"kind": "boom"}, "kind must be"),
    ({"preset": "418"}, "preset must be"),
    ({"kind": "error"}, "status must be"),
    ({"kind": "error", "status": 200}, "status must be"),
    ({"kind": "reset", "rate": 1.5}, "rate must be"),
    ({"kind": "reset", "rate": True}, "rate must be"),
    ({"kind": "reset", "window_s": 0}, "window_s must be"),
    ({"kind": "reset", "hits": "deletes"}, "hits must be"),
    ({"kind": "reset", "record_ids": [ID_A]}, "record_ids go with kind error"),
    ({"kind": "reset", "record_ids": "x"}, "record_ids must be a list"),
    ({"preset": "503", "retry_after_s": -1}, "retry_after_s must be"),
    ({"kind": "reset", "domains": ["a.com"]}, "unknown field(s) domains"),
], ids=["not an object", "unknown kind", "unknown preset", "error without status",
        "error with a success status", "rate above one", "rate a boolean", "empty window",
        "unknown hits", "keyed reset", "keys not a list", "negative Retry-After",
        "a field of another emulator"])
def test_bad_rules_are_refused_naming_the_field(data: Any, names: str) -> None:
    with pytest.raises(RuleError, match=names.replace("(", r"\(").replace(")", r"\)")):
        parse_rule(data, DATAVERSE)


@pytest.mark.parametrize(("method", "path", "scope"), [
    ("GET", "accounts", "reads"),
    ("GET", "accounts?$select=name", "reads"),
    ("GET", f"accounts({ID_A})", "other"),
    ("GET", "WhoAmI", "other"),
    ("PATCH", f"accounts({ID_A})", "writes"),
    ("POST", "$batch", "writes"),
    ("POST", "accounts/Microsoft.Dynamics.CRM.UpdateMultiple", "writes"),
    ("DELETE", f"accounts({ID_A})", "writes"),
])
def test_what_a_request_is(method: str, path: str, scope: str) -> None:
    assert target_of(method, path.split("?", maxsplit=1)[0]).scope == scope


@pytest.mark.parametrize(("method", "path", "body", "ids"), [
    ("PATCH", f"accounts({ID_A.upper()})", {}, {ID_A}),
    ("DELETE", f"accounts({ID_B})", {}, {ID_B}),
    ("POST", "accounts", {"accountid": ID_A}, {ID_A}),
    ("POST", "accounts", {"name": "new"}, set()),
    ("POST", "accounts/Microsoft.Dynamics.CRM.UpdateMultiple",
     {"Targets": [{"accountid": ID_A}, {"accountid": ID_B}, "junk"]}, {ID_A, ID_B}),
    ("PATCH", "accounts(accountnumber='A-1')", {}, {"a-1"}),
    ("PATCH", "nonsense((", {}, set()),
])
def test_which_records_a_write_touches(method: str, path: str, body: dict[str, Any],
                                       ids: set[str]) -> None:
    assert touched_ids(method, path, body, {"accounts": "accountid"}) == ids


WRITES_403 = parse_rule({"preset": "403-privilege", "hits": "writes"}, DATAVERSE)
READS_500 = parse_rule({"kind": "error", "status": 500, "hits": "reads"}, DATAVERSE)
RECORD_500 = parse_rule({"preset": "500-plugin", "record_ids": [ID_A]}, DATAVERSE)


@pytest.mark.parametrize(("rule", "target", "keyed", "expected"), [
    (WRITES_403, Target("writes"), False, True),
    (WRITES_403, Target("reads"), False, False),
    (READS_500, Target("reads"), False, True),
    (READS_500, Target("other"), False, False),
    (RECORD_500, Target("writes", frozenset({ID_A, ID_B})), True, True),
    (RECORD_500, Target("writes", frozenset({ID_B})), True, False),
    (RECORD_500, Target("writes"), False, False),
    (WRITES_403, Target("writes", frozenset({ID_A})), True, False),
], ids=["a write rule hits a write", "a write rule spares a read",
        "a read rule hits a page read", "a read rule spares WhoAmI",
        "a record rule hits a write touching its record", "a record rule spares other records",
        "a record rule is not checked at admission", "a request rule is not checked per record"])
def test_which_rules_hit_which_requests(rule: Rule, target: Target, keyed: bool,
                                        expected: bool) -> None:
    assert hits(rule, target, keyed=keyed) is expected


def test_a_window_ends_on_the_clock_not_before() -> None:
    entry = Entry(1, parse_rule({"preset": "503", "window_s": 15}, DATAVERSE), added_s=100.0)
    assert pick([entry], Target("reads"), 114.999, random.random) is entry.rule
    assert pick([entry], Target("reads"), 115.0, random.random) is None


def test_the_first_live_matching_rule_wins() -> None:
    expired = Entry(1, parse_rule({"preset": "401", "window_s": 1}, DATAVERSE), 0.0)
    reads = Entry(2, READS_500, 0.0)
    writes = Entry(3, WRITES_403, 0.0)
    assert pick([expired, reads, writes], Target("writes"), 5.0, random.random) is WRITES_403


def test_a_rate_draws_once_per_matching_rule_and_repeats_with_the_seed() -> None:
    rule = parse_rule({"kind": "reset", "rate": 0.3}, DATAVERSE)
    entries = [Entry(1, rule, 0.0)]
    draws = random.Random(9)
    chosen = [pick(entries, Target("writes"), 0.0, draws.random) for _ in range(1000)]
    again = random.Random(9)
    assert chosen == [rule if again.random() < 0.3 else None for _ in range(1000)]
    assert 240 <= chosen.count(rule) <= 360


def test_the_book_forgets_expired_rules_and_clears_on_demand() -> None:
    clock = ManualClock()
    book = FaultBook(clock, random.Random(1), DATAVERSE)
    book.add(parse_rule({"preset": "503", "window_s": 10}, DATAVERSE))
    book.add(WRITES_403)
    listed = book.listing()
    assert [(r["name"], r["window_left_s"]) for r in listed] == [("503", 10.0),
                                                                  ("403-privilege", None)]
    clock.advance(10)
    assert [r["name"] for r in book.listing()] == ["403-privilege"]
    assert book.pick(Target("reads")) is None
    assert book.clear() == 1
    assert book.pick(Target("writes")) is None
