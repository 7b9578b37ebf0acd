"""Events are log records carrying the custom-event name and their attributes."""

from __future__ import annotations

import pytest

from sync.telemetry import names
from sync.telemetry.events import EVENT_NAME_ATTRIBUTE, emit


def test_an_event_is_one_record_with_its_name_and_attributes(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="sync.events"):
        emit(names.RUN_PLANNED, {names.RUN_ID: "run-1", names.PLANNED: 12})
    (record,) = caplog.records
    assert record.getMessage() == names.RUN_PLANNED
    assert getattr(record, EVENT_NAME_ATTRIBUTE) == names.RUN_PLANNED
    assert getattr(record, names.RUN_ID) == "run-1"
    assert getattr(record, names.PLANNED) == 12
