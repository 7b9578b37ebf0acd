"""The chaos suite's fixtures: a log folder per scenario, and the results table at the end."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sync.local.azurite import StorageAccount
from tests.chaos.harness import (
    LOG_ROOT,
    RESULTS,
    RESULTS_PATH,
    Stack,
    results_table,
    start_stack,
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item, for ``_outcome_in_results``."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def _outcome_in_results(request: pytest.FixtureRequest) -> Iterator[None]:
    """A scenario that did not pass says so in its rows of the results table."""
    first = len(RESULTS)
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and not report.passed:
        for index in range(first, len(RESULTS)):
            RESULTS[index] = replace(RESULTS[index], outcome=report.outcome)


@pytest.fixture
def log_dir(request: pytest.FixtureRequest) -> Path:
    """Where this scenario's child processes write their logs."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    path = LOG_ROOT / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the scenario table (for docs/failures.md) once the suite ends."""
    if RESULTS:
        RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_PATH.write_text(results_table())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the scenario table under the test results."""
    if RESULTS:
        terminalreporter.section("chaos scenarios")
        terminalreporter.write(results_table())


@pytest.fixture
async def stacks(account: StorageAccount,
                 log_dir: Path) -> AsyncIterator[Callable[..., Awaitable[Stack]]]:
    """Starts driven stacks on this test's storage account; stops them all at the end."""
    started: list[Stack] = []

    async def make(**options: Any) -> Stack:
        stack = await start_stack(account, log_dir, **options)
        started.append(stack)
        return stack

    yield make
    for stack in started:
        stack.stop()
