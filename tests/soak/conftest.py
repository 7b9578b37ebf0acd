"""The soak's fixtures: a log folder, and its table printed and saved at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pytest

from sync.local.azurite import ROOT
from tests.soak.measures import FIGURES

LOG_ROOT: Final = ROOT / ".local-run" / "soak"
RESULTS_PATH: Final = LOG_ROOT / "results.md"


@pytest.fixture
def log_dir() -> Path:
    """Where the soak's child processes write their logs (one file per host lifetime)."""
    LOG_ROOT.mkdir(parents=True, exist_ok=True)
    for old in LOG_ROOT.glob("*.log"):
        old.unlink()
    return LOG_ROOT


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Save the soak's table (for docs/failures.md) once it ran."""
    if FIGURES.nights:
        RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_PATH.write_text(FIGURES.markdown() + "\nRows after each night:\n\n"
                                + FIGURES.rows_by_table())


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the soak's table under the test results."""
    if FIGURES.nights:
        terminalreporter.section("soak")
        terminalreporter.write(FIGURES.markdown())
        terminalreporter.write("\nrows after each night\n" + FIGURES.rows_by_table())
