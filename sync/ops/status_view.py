"""``sync status`` as text for people and as JSON for scripts (the keys are documented in the
docs/operations.md and held by tests: renaming one is a breaking change)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sync.config.storage_names import QUEUES
from sync.ops.run_status import (
    ClusterState,
    ControlState,
    RunStatus,
    circuit_state,
    elapsed_s,
    eta_s,
    hint_or_default,
    rate_per_s,
)
from sync.safety.canary import CanaryRow
from sync.safety.flags import Flag
from sync.state.runs import RunTotals
from sync.state.systematic_row import PREFIX as DEFINITION_CIRCUIT


def iso(epoch_s: float) -> str | None:
    """An epoch time as ISO 8601 UTC; None for "never" (0)."""
    if epoch_s <= 0:
        return None
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_dict(totals: RunTotals, now_s: float) -> dict[str, Any]:
    """One run's figures under stable keys."""
    run, counts = totals.run, totals.counts
    eta = eta_s(totals, now_s)
    return {
        "id": run.run_id, "kind": run.kind, "definition": run.definition,
        "started_at": iso(run.started_s),
        "plan_complete": run.plan_complete, "completed": run.completed,
        "completed_at": iso(run.completed_s) if run.completed else None,
        "planned": run.planned, "enqueued_messages": run.batches,
        "written": counts.written, "unchanged": counts.unchanged,
        "dead_lettered": counts.dead_lettered, "previewed": counts.previewed,
        "requests": _usage(totals),
        "dead_lettered_by_reason": dict(counts.dead_lettered_by_reason),
        "cancelled": counts.cancelled, "poisoned": counts.poisoned,
        "enrichment": _enrichment(totals),
        "reenqueued": counts.reenqueued, "reenqueued_by_reason": dict(counts.reenqueued_by_reason),
        "open": totals.open, "throttled_by_code": dict(counts.throttled_by_code),
        "elapsed_s": round(elapsed_s(totals, now_s), 3),
        "rate_per_s": round(rate_per_s(totals, now_s), 3),
        "eta_s": None if eta is None else round(eta, 1),
        "previous_run_id": run.previous_run_id or None,
        "overlapped_by": run.overlapped_by or None,
    }


def _enrichment(totals: RunTotals) -> dict[str, Any]:
    """The enrichment API's side of the run: calls, the records they carried, and those per
    record planned (1 when each record was asked once; a record sent back carries its
    values)."""
    usage = totals.counts.enrichment
    return {"calls": usage.calls, "records_asked": usage.inputs, "carried": usage.carried,
            "cache_hits": usage.cache_hits,
            "per_record": round(usage.inputs / max(1, totals.run.planned), 3)}


def blocked_by(status: RunStatus) -> str | None:
    """The reason of the run's definition's circuit while a systematic fault holds it
    (``sync.work.refusals``); None when nothing does."""
    view = status.cluster.circuits.get(f"{DEFINITION_CIRCUIT}{status.run.run.definition}")
    if view is None or circuit_state(view, status.now_s) == "closed":
        return None
    return view.reason or None


def _usage(totals: RunTotals) -> dict[str, int]:
    """The Dataverse requests the run consumed (what entitlements count), the planner's
    reads among them."""
    usage = totals.requests
    return {"total": usage.total, "reads": usage.reads, "writes": usage.writes,
            "retries": usage.retries, "planner": totals.run.plan_requests.total}


def status_dict(status: RunStatus) -> dict[str, Any]:
    """Everything ``sync status --json`` prints."""
    now_s, cluster = status.now_s, status.cluster
    return {
        "read_at": iso(now_s),
        "run": run_dict(status.run, now_s),
        "blocked": blocked_by(status),
        "dead_letters_by_state": dict(sorted(status.dead_letters_by_state.items())),
        "overlapping": [run_dict(other, now_s) for other in status.overlapping],
        "control": control_dict(status.control),
        "queues": dict(status.queues), "poisoned": status.poisoned,
        **cluster_dict(cluster, now_s),
        "lanes": {name: cluster_dict(scope, now_s)
                  for name, scope in sorted(cluster.lanes.items())},
        "dry_run": status.dry_run.to_dict() if status.dry_run is not None else None,
    }


def cluster_dict(cluster: ClusterState, now_s: float) -> dict[str, Any]:
    """One scope's gate, circuits and slots (the single lane's, a lane's, an environment's)."""
    return {
        "gate": {"closed_for_s": round(max(0.0, cluster.gate_until_s - now_s), 3),
                 "code": cluster.gate_code or None},
        "circuits": {name: {"state": circuit_state(view, now_s),
                            "open_for_s": round(max(0.0, view.open_until_s - now_s), 3),
                            "trips": view.trips, "reason": view.reason or None}
                     for name, view in sorted(cluster.circuits.items())},
        "dop": {"hint": cluster.dop_hint, "slots": hint_or_default(cluster),
                "slots_held": sum(cluster.slots_held.values()),
                "slots_by_instance": dict(sorted(cluster.slots_held.items())),
                "instances": cluster.instances},
    }


def flag_dict(flag: Flag | None) -> dict[str, Any]:
    """A pause or cancel flag: running, paused or cancelled, why, since when, and which hosts
    have read it since (``read_by``, empty while none has)."""
    if flag is None:
        return {"state": "running", "reason": None, "since": None, "read_by": [],
                "first_read_at": None}
    return {"state": flag.state, "reason": flag.reason or None, "since": iso(flag.set_at_s),
            "read_by": list(flag.acked_by), "first_read_at": iso(flag.first_ack_s)}


def canary_dict(row: CanaryRow | None) -> dict[str, Any] | None:
    """A run's canary: records admitted, approved, outcome of an automatic check."""
    if row is None:
        return None
    return {"admitted": row.admitted, "approved": row.approved, "outcome": row.outcome or None,
            "released": row.released}


def control_dict(state: ControlState) -> dict[str, Any]:
    """The flags ``sync pause|resume|cancel`` set, and the canary."""
    return {"definition": flag_dict(state.definition), "run": flag_dict(state.run),
            "canary": canary_dict(state.canary)}


def render(status: RunStatus) -> str:
    """The text a person reads."""
    data = status_dict(status)
    lines = _run_lines(data["run"]) + _control_lines(data["control"])
    if data["blocked"]:
        lines.append(f"  blocked          {data['blocked']}")
    if data["dead_letters_by_state"]:
        lines.append(f"  dead letters now {'':>10}  {by_reason(data['dead_letters_by_state'])}"
                     "  (replayed ones count as written once written)")
    if data["dry_run"] is not None:
        lines += ["", *dry_run_lines(data["dry_run"])]
    for other in data["overlapping"]:
        lines += ["", "Overlapping run (incomplete):", *_run_lines(other)]
    lines += ["", "Queues (approximate: visible, delayed and in flight alike)"]
    lines += [f"  {name:<18} {data['queues'].get(name, 0):>10,}" for name in QUEUES]
    if not any(data["queues"].values()):
        lines.append("  every queue is empty")
    lines += ["", *_cluster_lines(data)]
    return "\n".join(lines)


def _run_lines(run: dict[str, Any]) -> list[str]:
    state = ("completed " + str(run["completed_at"]) if run["completed"]
             else "running" if run["plan_complete"] else "planning")
    eta = "-" if run["eta_s"] is None else f"{run['eta_s']:,.0f} s"
    lines = [f"Run {run['id']} ({run['kind']}) of {run['definition']}, started "
             f"{run['started_at']}: {state}",
             f"  planned          {run['planned']:>10,}  in {run['enqueued_messages']:,} "
             "messages",
             f"  written          {run['written']:>10,}",
             f"  unchanged        {run['unchanged']:>10,}  (already held their values)",
             f"  dead-lettered    {run['dead_lettered']:>10,}  "
             f"{by_reason(run['dead_lettered_by_reason'])}",
             f"  cancelled        {run['cancelled']:>10,}",
             f"  poisoned         {run['poisoned']:>10,}  (an unexpected error: see `sync "
             "poison list`)",
             f"  enrichment       {run['enrichment']['records_asked']:>10,}  records asked in "
             f"{run['enrichment']['calls']:,} calls, {run['enrichment']['per_record']:.2f} a "
             f"record planned (carried back {run['enrichment']['carried']:,})",
             f"  re-enqueued      {run['reenqueued']:>10,}  "
             f"{by_reason(run['reenqueued_by_reason'])}",
             f"  open             {run['open']:>10,}  (on a queue or in flight)",
             f"  rate             {run['rate_per_s']:>10,.1f} records/s  ETA {eta}",
             f"  requests         {run['requests']['total']:>10,}  "
             f"({usage_text(run['requests'])})"]
    if run["previous_run_id"]:
        lines.append(f"  overlaps         {run['previous_run_id']} "
                     "(this run started before that one completed)")
    if run["overlapped_by"]:
        lines.append(f"  overlapped by    {run['overlapped_by']} "
                     "(started before this one completed)")
    return lines


def dry_run_lines(report: dict[str, Any]) -> list[str]:
    """A dry run's report (``sync.safety.dry_run.Preview.to_dict``): counts, columns, the sample."""
    lines = ["Dry run: nothing was written",
             f"  would change     {report['would_change']:>10,}",
             f"  unchanged        {report['unchanged']:>10,}",
             f"  failed           {report['failed']:>10,}  "
             f"{by_reason(report['failed_by_reason'])}"]
    lines += [f"  column {column:<24} {n:>8,} records" for column, n in report["columns"].items()]
    if report["sample"]:
        lines.append(f"  sample (first {len(report['sample'])} changes): record, column, "
                     "before -> after")
    lines += [f"    {c['id']}  {c['column']}: {c['before']!r} -> {c['after']!r}"
              for c in report["sample"]]
    return lines


def _control_lines(data: dict[str, Any]) -> list[str]:
    lines = []
    for scope in ("definition", "run"):
        flag = data[scope]
        detail = f" since {flag['since']}" if flag["since"] else ""
        detail += f": {flag['reason']}" if flag["reason"] else ""
        if flag["since"]:
            detail += (f" (read by {', '.join(flag['read_by'])})" if flag["read_by"]
                       else " (no worker has read it yet)")
        lines.append(f"  {scope + ' flag':<16} {flag['state']}{detail}")
    found = data["canary"]
    if found is not None:
        state = ("released" if found["released"] else
                 "failed, waiting for `sync approve`" if found["outcome"] == "failed"
                 else "holding the rest of the run")
        lines.append(f"  canary           {found['admitted']:,} admitted; {state}")
    return lines


def _cluster_lines(data: dict[str, Any]) -> list[str]:
    gate, dop = data["gate"], data["dop"]
    hint = dop["hint"] if dop["hint"] is not None else f"unknown (assumed {dop['slots']})"
    lines = [f"  poisoned msgs    {data['poisoned']:>10,}",
             "  throttle gate    " + (f"closed for {gate['closed_for_s']:.1f} s ({gate['code']})"
                                      if gate["closed_for_s"] > 0 else "open"),
             f"  DOP hint         {hint}; {dop['slots_held']} slot(s) leased by "
             f"{len(dop['slots_by_instance'])} instance(s), {dop['instances']} busy"]
    for name, circuit in data["circuits"].items():
        detail = (f" for {circuit['open_for_s']:.1f} s: {circuit['reason']}"
                  if circuit["state"] == "open" else "")
        lines.append(f"  circuit          {name}: {circuit['state']}{detail}")
    for name, scope in data["lanes"].items():
        lines.append(f"  lane {name:<11} {_scope_text(scope)}")
    return lines


def _scope_text(scope: dict[str, Any]) -> str:
    """A lane's gate and circuit, or an environment's shared slots, on one line."""
    gate, dop = scope["gate"], scope["dop"]
    parts = []
    if gate["closed_for_s"] > 0:
        parts.append(f"gate closed for {gate['closed_for_s']:.1f} s ({gate['code']})")
    for name, circuit in scope["circuits"].items():
        parts.append(f"circuit {name} {circuit['state']}"
                     + (f": {circuit['reason']}" if circuit["state"] == "open" else ""))
    if dop["hint"] is not None or dop["slots_held"]:
        parts.append(f"hint {dop['hint'] if dop['hint'] is not None else '?'}; "
                     f"{dop['slots_held']} slot(s), {dop['instances']} busy")
    return "; ".join(parts) or "gate open"


def usage_text(usage: dict[str, int]) -> str:
    """``reads 12 (planner 3), writes 40, retries 2``."""
    return (f"reads {usage['reads']:,} (planner {usage['planner']:,}), "
            f"writes {usage['writes']:,}, retries {usage['retries']:,}")


def by_reason(counts: dict[str, int]) -> str:
    """``record_missing 3, refused 1``: most first."""
    return ", ".join(f"{reason} {n:,}" for reason, n in Counter(counts).most_common())
