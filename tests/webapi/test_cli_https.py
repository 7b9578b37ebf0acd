"""``python -m sync emulator dataverse --https``: prints its https URL, then the CA to trust;
a client that trusts that CA (and only then) talks to it."""

from __future__ import annotations

import asyncio
import re
import ssl
import sys
from pathlib import Path

import aiohttp

from tests.webapi.conftest import API, token_for

ROOT = Path(__file__).parents[2]
COMMAND = [sys.executable, "-m", "sync", "emulator", "dataverse"]


async def test_an_https_run_prints_its_url_and_the_ca_to_trust() -> None:
    process = await asyncio.create_subprocess_exec(
        *COMMAND, "--records", "2", "--https", cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        lines = [(await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
                 for _ in range(2)]
        url = re.search(r"https://127\.0\.0\.1:\d+", lines[0])
        ca = re.search(r"REQUESTS_CA_BUNDLE=(\S+)", lines[1])
        assert url, lines
        assert ca, lines
        trusted = ssl.create_default_context(cafile=ca.group(1))  # fails if it is not there
        headers = {"Authorization": f"Bearer {token_for('cli')}"}
        async with aiohttp.ClientSession() as session, session.get(
                f"{url.group(0)}{API}accounts?$select=name", ssl=trusted,
                headers=headers) as answer:
            assert answer.status == 200
            assert len((await answer.json())["value"]) == 2
    finally:
        process.terminate()
        code = await asyncio.wait_for(process.wait(), timeout=30)
    assert code == 0
