"""The chaos suite's fixtures: a log folder per scenario, and the results table at the end."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.chaos.harness import LOG_ROOT, RESULTS, RESULTS_PATH, results_table


@pytest.fixture
def log_dir(request: pytest.FixtureRequest) -> Path:
    """Where this scenario's child processes write their logs."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)
    path = LOG_ROOT / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the scenario table (for the README) once the suite ends."""
    if RESULTS:
        RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_PATH.write_text(results_table())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the scenario table under the test results."""
    if RESULTS:
        terminalreporter.section("chaos scenarios")
        terminalreporter.write(results_table())
