"""Faults given at start to ``python -m sync local``: the run ends OK within its time bound,
every record written or dead-lettered for a fault of its own, none for the service's."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import RECORDS, Result, assert_local_ok, note, run_local

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(240)]

BOUND_S = 90.0
"""Every scenario here must finish within this (its faults clear well before)."""

PAGES_OF_20 = {"SYNC_PAGE_SIZE": "20"}
"""Enough page reads (20 and their retries) for every page-read rule to fire."""


@dataclass(frozen=True, slots=True)
class Case:
    """A fault given at start, and what shows it was met."""

    name: str
    fault: str
    dataverse: tuple[dict[str, Any], ...] = ()
    enrichment: tuple[dict[str, Any], ...] = ()
    instances: int = 2
    env: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.name


CASES = (
    Case("dataverse 5xx storm and resets",
         "503 on 50% of every call for 10 s, connection reset on 15% throughout",
         dataverse=({"preset": "503", "rate": 0.5, "window_s": 10},
                    {"kind": "reset", "rate": 0.15})),
    Case("dataverse commit-then-drop", "15% of writes applied, then the connection dropped",
         dataverse=({"kind": "commit_then_drop", "rate": 0.15},)),
    Case("dataverse 401 window", "401 on every call for 8 s",
         dataverse=({"preset": "401", "window_s": 8},)),
    Case("dataverse 403 window", "403 (missing privilege) on every write for 10 s",
         dataverse=({"preset": "403-privilege", "hits": "writes", "window_s": 10},)),
    Case("dataverse 429 number of requests", "429 number of requests on 30% of calls for 10 s",
         dataverse=({"preset": "429-requests", "rate": 0.3, "window_s": 10},)),
    Case("dataverse 429 execution time", "429 execution time on 30% of calls for 10 s",
         dataverse=({"preset": "429-execution-time", "rate": 0.3, "window_s": 10},)),
    Case("dataverse 429 concurrent requests", "429 concurrent requests on 30% of calls for 10 s",
         dataverse=({"preset": "429-concurrency", "rate": 0.3, "window_s": 10},)),
    Case("page-read 500s", "500 on 30% of page reads (pages of 20)",
         dataverse=({"kind": "error", "status": 500, "hits": "reads", "rate": 0.3},),
         env=PAGES_OF_20),
    Case("dataverse malformed answers",
         "page reads (pages of 20): 20% not JSON, 20% truncated, 20% without value",
         dataverse=({"kind": "not_json", "rate": 0.2}, {"kind": "truncated_json", "rate": 0.2},
                    {"kind": "missing_field", "field": "value", "rate": 0.2}),
         env=PAGES_OF_20),
    Case("enrichment down", "503 on every call for 25 s (longer than any retry budget)",
         enrichment=({"preset": "down", "window_s": 25},)),
    Case("enrichment 5xx and resets", "500 on 25% and resets on 10% of calls",
         enrichment=({"preset": "500", "rate": 0.25}, {"kind": "reset", "rate": 0.1})),
    Case("enrichment 401 window", "401 on every call for 8 s (the key is read again first)",
         enrichment=({"preset": "401", "window_s": 8},)),
    Case("enrichment 429 storm", "429 on 40% of calls for 10 s",
         enrichment=({"preset": "429", "rate": 0.4, "window_s": 10},)),
    Case("enrichment malformed answers", "10% not JSON, 10% truncated, 10% no employees",
         enrichment=({"kind": "not_json", "rate": 0.1}, {"kind": "truncated_json", "rate": 0.1},
                     {"kind": "missing_field", "rate": 0.1})),
)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_fault_at_start_loses_nothing(case: Case, tmp_path: Path) -> None:
    run = run_local(tmp_path / "run.json", instances=case.instances, timeout_s=BOUND_S,
                    env=case.env, dataverse_faults=case.dataverse,
                    enrichment_faults=case.enrichment)
    figures = run.figures or {}
    note(Result(case.name, case.fault, RECORDS, int(figures.get("written", 0)),
                run.dead_by_reason, run.wall_s))
    assert_local_ok(run, RECORDS)
    assert run.dead_by_reason == {}, run.explain()
    _assert_fault_was_met(case, figures, run.explain())


def _assert_fault_was_met(case: Case, figures: dict[str, Any], explain: str) -> None:
    """The fault really happened: the emulator counted it, or the run retried or deferred."""
    if case.dataverse:
        injected = (figures.get("emulator_stats") or {}).get("faults", {})
        for rule in case.dataverse:
            assert injected.get(_name_of(rule), 0) > 0, (rule, injected, explain)
    else:
        assert figures["transient_retries"] + figures["reenqueued"] + \
            sum(figures["throttled_by_code"].values()) > 0, explain


def _name_of(rule: dict[str, Any]) -> str:
    """The name the emulator counts a rule's faults under (docs/failures.md, "Fault injection")."""
    if "preset" in rule:
        return str(rule["preset"])
    if rule["kind"] == "error":
        return f"error-{rule['status']}"
    if rule["kind"] == "missing_field":
        return f"missing-{rule['field']}"
    return str(rule["kind"])
