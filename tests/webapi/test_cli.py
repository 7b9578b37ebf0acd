"""``python -m sync emulator dataverse``: ``--help`` explains every option with its default,
and a real run prints its URL on the first line and answers Web API requests."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from sync.local.emulators.webapi import EmulatorConfig
from sync.local.emulators.webapi.cli import config_from, configure_parser
from tests.emulator_command import emulator_serving
from tests.webapi.conftest import API, token_for

ROOT = Path(__file__).parents[2]
COMMAND = [sys.executable, "-m", "sync", "emulator", "dataverse"]


def test_help_explains_each_option_with_its_documented_default() -> None:
    result = subprocess.run([*COMMAND, "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=True)
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for expected in ("--port", "--servers", "--window-s", "(300, documented)",
                     "--max-requests", "(6000, documented)", "--max-exec-ms",
                     "(1,200,000, documented)", "--max-concurrent", "(52, documented)",
                     "--dop-hint", "--records", "--write-ms-min", "--batch-op-ms",
                     "--bulk-target-ms", "--fault-500-rate", "--fault-503-rate",
                     "--reset-rate", "--slow-rate", "--slow-ms", "--seed"):
        assert expected in text


def test_every_setting_has_an_option_that_states_its_default() -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    helps = {action.dest: action.help or "" for action in parser._actions}
    for name in EmulatorConfig.__dataclass_fields__:
        assert re.search(r"\(.+\)", helps[name]), f"--{name} does not state its default"


@pytest.mark.parametrize(("argv", "expected"), [
    ([], EmulatorConfig()),
    (["--window-s", "30"], EmulatorConfig.scaled(30.0)),
    (["--window-s", "30", "--max-requests", "9"], EmulatorConfig.scaled(30.0, max_requests=9)),
    (["--servers", "3", "--dop-hint", "4", "--records", "12", "--fault-503-rate", "0.1"],
     EmulatorConfig(servers=3, dop_hint=4, records=12, fault_503_rate=0.1)),
])
def test_options_make_the_configuration(argv: list[str], expected: EmulatorConfig) -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    assert config_from(parser.parse_args(argv)) == expected


async def test_a_run_prints_its_url_first_and_answers_requests() -> None:
    async with emulator_serving("dataverse", "--records", "4", "--servers", "3",
                                "--window-s", "30") as url, aiohttp.ClientSession() as session:
        async with session.get(f"{url}{API}accounts?$select=name", headers={
                "Authorization": f"Bearer {token_for('cli')}"}) as answer:
            body = await answer.json()
            assert answer.status == 200
            assert answer.headers["x-ms-dop-hint"] == "30"  # 10 per server, 3 servers
            assert answer.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "599"
        assert len(body["value"]) == 4
