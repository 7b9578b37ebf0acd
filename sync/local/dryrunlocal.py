"""``python -m sync local --dry-run``: the local run as a dry run, and what is checked after it.

The stack sets the definition's ``dry_run`` for its hosts (the rest of ``SYNC_DEFINITION`` as
the environment gives it); afterwards the emulator must show no record written or created, and
the summary prints the run's report (``sync.safety.dry_run``), as ``sync status`` does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from azure.data.tables.aio import TableClient

from sync.config.table_definition import parse_definition
from sync.safety import dry_run
from sync.state import runs
from sync.state.ledger_rows import PLAN_KIND


def dry_run_definition(environ: Mapping[str, str]) -> str:
    """The environment's ``SYNC_DEFINITION`` (JSON or ``@path``) with ``dry_run`` set, as JSON."""
    definition = parse_definition(environ.get("SYNC_DEFINITION") or None)
    return json.dumps({**asdict(definition), "dry_run": True})


def writes_seen(stats: Mapping[str, Any]) -> list[str]:
    """What the emulator's counters say was written; empty for a dry run that kept its word."""
    records = stats.get("records", {})
    return [f"{n:,} records {what}" for what in ("updated", "created", "deleted")
            if (n := int(records.get(what, 0)))]


async def latest_report(ledger: TableClient, reports: TableClient) -> dict[str, Any] | None:
    """The latest plan's dry-run report, under the keys ``sync status --json`` uses."""
    run_id = await runs.latest_run_id(ledger, PLAN_KIND)
    report = await dry_run.read_report(reports, run_id) if run_id else None
    return report.to_dict() if report is not None else None
