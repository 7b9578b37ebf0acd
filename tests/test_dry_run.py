"""The dry run against Azurite and the emulators: it reports what would change and writes
nothing; its run completes; an enrichment record fault is counted, never dead-lettered."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from sync.local.verify import expected_columns
from sync.message.contract import Message, RecordRef
from sync.ops import status
from sync.safety import before_images, dry_run
from sync.safety.dry_run import SAMPLE_SIZE, SAMPLE_VALUE_CHARS, Change, Preview
from sync.services import Services
from sync.state import runs
from sync.work import worker
from tests.test_worker import emulator, rows

Make = Callable[..., Any]
DRY = json.dumps({"dry_run": True})


def read_ref(services: Services, row: dict[str, Any], *,
             current: dict[str, Any] | None = None) -> RecordRef:
    """The record as the planner reads it: its ETag and its mapped columns' values."""
    definition = services.settings.definitions.first.table
    values = current if current is not None else {c: row.get(c) for c in definition.mapping}
    return RecordRef(str(row["accountid"]), str(row["websiteurl"]),
                     etag=f'W/"{row["versionnumber"]}"', current=values)


def enriched_values(services: Services, row: dict[str, Any]) -> dict[str, Any]:
    values = expected_columns(str(row["websiteurl"]), services.settings.definitions.first.table)
    assert values is not None
    return values


@pytest.mark.parametrize(("changes", "expected"), [
    pytest.param({"a": 5}, 1, id="one-column-changed-counts-one-record"),
    pytest.param({}, 0, id="nothing-changed-counts-unchanged"),
])
def test_compare_counts_records_and_columns(changes: dict[str, int], expected: int) -> None:
    preview = Preview()
    preview.compare(RecordRef("r1", "x.com", current={"a": 0, "b": 2}), {"b": 2, **changes})
    assert (preview.changed, preview.unchanged) == (expected, 1 - expected)
    assert preview.columns == Counter(changes.keys())


def test_the_sample_is_bounded_and_long_values_are_cut() -> None:
    total = Preview()
    for number in range(3):
        part = Preview()
        for index in range(SAMPLE_SIZE):
            part.compare(RecordRef(f"r{number}-{index}", "x.com", current={"d": ""}),
                         {"d": "x" * (SAMPLE_VALUE_CHARS + 50)})
        total.add(dry_run.preview_from(dry_run.report_entity("run", f"b{number}", 0, part)))
    assert total.changed == 3 * SAMPLE_SIZE
    assert len(total.sample) == SAMPLE_SIZE
    assert len(total.sample[0].after) == SAMPLE_VALUE_CHARS + 1
    assert total.sample[0] == Change("r0-0", "d", "", total.sample[0].after)


@pytest.mark.emulator(records=30)
async def test_a_dry_run_reports_the_changes_and_writes_nothing(make_services: Make) -> None:
    services = await make_services(SYNC_DEFINITION=DRY, SYNC_WRITE_MODE="single")
    table = await rows(services)
    same = [read_ref(services, row, current=enriched_values(services, row)) for row in table[:5]]
    changing = [read_ref(services, row) for row in table[5:20]]
    broken = RecordRef("00000000-0000-4000-8000-00000000beef", "no-domain", current={})
    message = Message("dry-1", (*same, *changing, broken))
    counts = await worker.process_message(services, message.to_json().encode())

    assert (counts.previewed, counts.written, counts.dead_lettered) == (21, 0, 0)
    report = await dry_run.read_report(services.storage.reports, "dry-1")
    assert report is not None
    assert (report.changed, report.unchanged, report.failed) == (15, 5, 1)
    assert report.failed_by_reason == Counter({"unusable_input": 1})
    assert sum(report.columns.values()) >= 15
    assert set(report.columns) <= set(services.settings.definitions.first.table.mapping)
    assert {change.record_id for change in report.sample} <= {r.id for r in changing}
    stats = await emulator(services, "stats")
    assert stats["records"] == {"created": 0, "updated": 0, "deleted": 0}
    assert await rows(services) == table
    assert await before_images.read_images(services.storage.before_images, "dry-1") == ([], False)
    letters = await services.storage.dead_letters.get_queue_properties()
    assert letters.approximate_message_count == 0
    totals = await runs.read_run(services.storage.ledger, "dry-1")
    assert totals is not None
    assert totals.run.completed
    await status_shows_the_report(services, "dry-1", report)


async def status_shows_the_report(services: Services, run_id: str, report: Preview) -> None:
    out = io.StringIO()
    assert await status.show(services.settings.storage, run_id, as_json=True, watch_s=None,
                             out=out) == 0
    data = json.loads(out.getvalue())
    assert data["dry_run"] == json.loads(json.dumps(report.to_dict()))
    assert data["run"]["previewed"] == report.records
    assert data["run"]["open"] == 0
    out = io.StringIO()
    await status.show(services.settings.storage, run_id, as_json=False, watch_s=None, out=out)
    text = out.getvalue()
    assert "Dry run: nothing was written" in text
    assert f"would change     {report.changed:>10,}" in text
    assert report.sample[0].record_id in text


@pytest.mark.emulator(records=10)
async def test_a_written_run_keeps_no_report(make_services: Make) -> None:
    services = await make_services(SYNC_WRITE_MODE="single")
    table = await rows(services)
    message = Message("wet-1", tuple(read_ref(services, row) for row in table[:4]))
    counts = await worker.process_message(services, message.to_json().encode())
    assert counts.written == 4
    assert await dry_run.read_report(services.storage.reports, "wet-1") is None
