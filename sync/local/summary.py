"""The end of a local run: what the watch and the checks found (``Outcome``), the summary
``python -m sync local`` prints and its exit code, and the figures as JSON for the benchmark.

Exit codes: 0 every record written, unchanged, dead-lettered for a fault of its own, or
cancelled (``sync cancel``); 1 not so (blocked, not finished in time or no host left, records
unaccounted for or dead-lettered for the service's fault).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sync.local.dryrunlocal import writes_seen
from sync.local.environments import Checked, check_line
from sync.local.lanes import EnvironmentFigures, lane_figures, lane_lines
from sync.local.processes import ResourceUsage
from sync.local.progress import Snapshot
from sync.local.verify import Verification
from sync.message.counts import MessageCounts
from sync.ops.status_view import dry_run_lines
from sync.ops.target import LOCAL_RUN_DIR
from sync.state.dead_letters import RECORD_REASONS

__all__ = ["Outcome", "report", "still_to_do", "write_json"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the watch and the checks found."""

    snapshot: Snapshot
    verification: Verification | None
    poisoned: int
    dead_letter_ids: frozenset[str]
    timeline: list[tuple[float, int]]
    emulator_stats: dict[str, Any] | None
    dry_run: dict[str, Any] | None = None
    """The run's dry-run report (``sync status --json``'s ``dry_run``); None when it wrote."""
    environments: list[Checked] = field(default_factory=list)
    """Each environment's emulator stats and verification (none with --dataverse-url)."""
    users: dict[str, str] = field(default_factory=dict)
    """The emulators' user id of each identity's token -> the identity; empty for one lane."""
    service_timeline: list[tuple[float, int]] = field(default_factory=list)
    """(seconds, records the emulators saw written plus those found unchanged) at each poll:
    writes as they land, where ``timeline`` moves only as whole messages finish. Empty with
    --dataverse-url (no emulator to ask)."""
    poisoned_records: int = 0
    """Records in the poison queue's messages: not done, and not on the queue either."""
    ended_hosts: str = ""
    """The hosts that ended while the run went on (``HostWatch.summary``); "" when none."""

    def lanes(self, elapsed_s: float) -> list[EnvironmentFigures]:
        """Per environment, each lane's figures from its emulator (none for one lane)."""
        if not self.users:
            return []
        return [lane_figures(c.environment, c.stats, self.users, elapsed_s)
                for c in self.environments]


def report(outcome: Outcome, elapsed_s: float) -> int:
    """Print the summary; answer the exit code."""
    snap = outcome.snapshot
    counts = snap.counts
    lines = [
        "", "Summary",
        f"  planned          {snap.planned:>10,}",
        f"  written          {counts.written:>10,}",
        f"  unchanged        {counts.unchanged:>10,}  (already held their values)",
        f"  dead-lettered    {counts.dead_lettered:>10,}  "
        f"{_by(counts.dead_lettered_by_reason)}",
        f"  cancelled        {counts.cancelled:>10,}  (sync cancel: not written)",
        f"  still to do      {still_to_do(outcome):>10,}  (on the queue or in flight)",
        f"  re-enqueued      {counts.reenqueued:>10,}  {_by(counts.reenqueued_by_reason)}",
        f"  429 answers      {counts.throttled:>10,}  {dict(counts.throttled_by_code) or ''}",
        f"  service retries  {counts.transient_retries:>10,}",
        f"  requests         {snap.requests.total:>10,}  (Dataverse: reads "
        f"{snap.requests.reads:,}, writes {snap.requests.writes:,}, retries "
        f"{snap.requests.retries:,})",
        f"  enrichment calls {counts.enrichment.calls:>10,}  "
        f"{enrichment_line(counts, snap.planned)}",
        f"  poisoned msgs    {outcome.poisoned:>10,}  {_poisoned_records(outcome)}",
        f"  elapsed          {elapsed_s:>10.1f} s",
        f"  throughput       {snap.done / max(elapsed_s, 1e-9):>10.1f} records/s",
    ]
    if snap.blocked_by and not snap.finished:
        lines += [f"  circuit open     {snap.blocked_by}"]
    if outcome.ended_hosts:
        lines += [f"  hosts            {outcome.ended_hosts}"]
    if outcome.dry_run is not None:
        lines += ["", *dry_run_lines(outcome.dry_run)]
    lines += _check_lines(outcome)
    lines += lane_lines(outcome.lanes(elapsed_s))
    print("\n".join(lines))
    return _exit_code(outcome)


def still_to_do(outcome: Outcome) -> int:
    """Records planned and not done, but those in poison messages (not on the queue)."""
    snap = outcome.snapshot
    counted = snap.counts.poisoned  # poisoned by a bug: in the ledger's done already
    return max(0, snap.planned - snap.done - max(0, outcome.poisoned_records - counted))


def _poisoned_records(outcome: Outcome) -> str:
    if not outcome.poisoned_records:
        return ""
    return f"({outcome.poisoned_records:,} records: see `sync poison list`)"


def _check_lines(outcome: Outcome) -> list[str]:
    """The emulator check: one line, or one per environment when there are several."""
    check = outcome.verification
    if check is None:
        return []
    if len(outcome.environments) < 2:
        return [f"  emulator check   {check_line(check)}"]
    return [f"  emulator check   {c.environment}: {check_line(c.verification)}"
            for c in outcome.environments if c.verification is not None]


def _exit_code(outcome: Outcome) -> int:
    problems = _problems(outcome)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if not problems:
        print(f"OK: {_ok_line(outcome)}")
    return 1 if problems else 0


def _problems(outcome: Outcome) -> list[str]:
    """What makes the run a failure (exit 1); empty when it is not one."""
    snap, check = outcome.snapshot, outcome.verification
    problems = []
    if snap.blocked_by and not snap.finished:
        problems.append(f"blocked: {snap.blocked_by}. {still_to_do(outcome):,} records stay on "
                        "the queue and are written once it is fixed")
    elif not snap.finished:
        problems.append("the sync did not finish (timeout, or no host left; see the logs in "
                        f"{LOCAL_RUN_DIR})")
    wrong = {reason: n for reason, n in snap.counts.dead_lettered_by_reason.items()
             if reason not in RECORD_REASONS}
    if wrong:
        problems.append(f"records dead-lettered for no fault of their own: {wrong}")
    if outcome.dry_run is not None:
        problems += [f"the dry run wrote: {seen}" for c in outcome.environments
                     for seen in writes_seen(c.stats)]
    if check is not None and not check.ok:
        problems.append(f"{check.unaccounted_count} records unaccounted for, "
                        f"{check.created} created")
    return problems


def _ok_line(outcome: Outcome) -> str:
    cancelled = outcome.snapshot.counts.cancelled
    if outcome.dry_run is not None:
        return "dry run: every planned record was compared; nothing was written."
    if cancelled:
        return (f"the run was cancelled (sync cancel): {cancelled:,} records cancelled, every "
                "other record is written, unchanged or dead-lettered for a fault of its own; "
                "none was created.")
    return ("every record is written, unchanged or dead-lettered for a fault of its own; "
            "none was created.")


def enrichment_line(counts: MessageCounts, planned: int) -> str:
    """``(3,000 records; cache hits 2,000, misses 1,000; laters 0)``"""
    usage = counts.enrichment
    return (f"({usage.inputs:,} records, {per_record(counts, planned):.2f} a record; carried "
            f"back {usage.carried:,}; cache hits {usage.cache_hits:,}, misses "
            f"{usage.cache_misses:,}; laters {usage.laters:,})")


def per_record(counts: MessageCounts, planned: int) -> float:
    """Records the enrichment calls carried, per record planned: 1 when each was asked once
    (retries and "later" answers add to it; the cache and carried values take from it)."""
    return counts.enrichment.inputs / max(1, planned)


def _by(counter: Counter[str]) -> str:
    return ", ".join(f"{reason} {n:,}" for reason, n in counter.most_common()) or ""


def write_json(path: Path, outcome: Outcome, elapsed_s: float,
               usage: list[ResourceUsage]) -> None:
    """The run's figures, for the benchmark."""
    snap, check = outcome.snapshot, outcome.verification
    counts = snap.counts
    data = {"elapsed_s": elapsed_s, "planned": snap.planned, "written": counts.written,
            "unchanged": counts.unchanged,
            "requests": {"total": snap.requests.total, "reads": snap.requests.reads,
                         "writes": snap.requests.writes, "retries": snap.requests.retries},
            "dead_lettered": counts.dead_lettered, "reenqueued": counts.reenqueued,
            "dead_lettered_by_reason": dict(counts.dead_lettered_by_reason),
            "reenqueued_by_reason": dict(counts.reenqueued_by_reason),
            "blocked_by": snap.blocked_by, "blocked": snap.blocked,
            "cancelled": counts.cancelled, "poisoned_records": outcome.poisoned_records,
            "ended_hosts": outcome.ended_hosts,
            "throttled_by_code": dict(counts.throttled_by_code),
            "transient_retries": counts.transient_retries, "poisoned": outcome.poisoned,
            "requeue_delay_s": counts.requeue_delay_s,
            "finished": snap.finished, "timeline": outcome.timeline,
            "service_timeline": outcome.service_timeline,
            "verification": asdict(check) if check is not None else None,
            "emulator_stats": outcome.emulator_stats,
            "environments": {c.environment: {"stats": c.stats, "verification": asdict(
                c.verification) if c.verification is not None else None}
                for c in outcome.environments},
            "lanes": [lane.as_dict() for found in outcome.lanes(elapsed_s)
                      for lane in found.lanes],
            "previewed": counts.previewed, "dry_run": outcome.dry_run,
            "enrichment": {**asdict(counts.enrichment),
                           "per_record": per_record(counts, snap.planned)},
            "hosts": [asdict(u) for u in usage]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))
