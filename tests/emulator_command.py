"""Running an emulator's command line in a test: ``python -m sync emulator ...`` as a real
process, its URL read from the first line it prints, stopped with SIGTERM (exit 0) after."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).parents[1]
STARTED_S = 30.0
"""How long an emulator may take to print its URL, or to stop."""


@asynccontextmanager
async def emulator_serving(*argv: str) -> AsyncIterator[str]:
    """The URL of ``python -m sync emulator <argv>`` while it serves; it must stop with 0."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sync", "emulator", *argv, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        first = (await asyncio.wait_for(process.stdout.readline(), STARTED_S)).decode()
        found = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert found, first
        yield found.group(0)
    finally:
        process.terminate()
        code = await asyncio.wait_for(process.wait(), STARTED_S)
    assert code == 0
