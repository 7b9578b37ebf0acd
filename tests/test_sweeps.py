"""The planner timer's sweeps: a failing sweep is logged and counts nothing (the plan it
follows goes on); one that deletes rows says how many."""

from __future__ import annotations

import logging

import pytest

from sync.state.sweeps import quietly


async def _deleted(count: int) -> int:
    return count


async def _broken() -> int:
    raise ConnectionResetError("storage went away")


async def test_a_sweep_that_fails_counts_nothing_and_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "sync.state.sweeps"):
        assert await quietly(_broken(), "expired answers", "answers") == 0
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert (record.getMessage(), record.__dict__["event"]) == (
        "expired answers not deleted; the next plan tries again", "answers_sweep_failed")


async def test_a_sweep_that_deletes_says_how_many(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "sync.state.sweeps"):
        assert await quietly(_deleted(3), "expired answers", "answers", unit="records") == 3
        assert await quietly(_deleted(0), "expired answers", "answers") == 0
    (record,) = caplog.records
    assert record.getMessage() == "3 expired answers deleted"
    assert (record.__dict__["event"], record.__dict__["records"]) == ("answers_swept", 3)
