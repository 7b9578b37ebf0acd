"""Shared fixtures: one Azurite per session with a fresh storage account per test, emulators."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.config.settings import Settings, StorageSettings
from sync.local.azurite import Azurite, StorageAccount, start_azurite
from sync.local.emulators.enrichment import EnrichmentConfig, start_enrichment
from sync.local.emulators.webapi import EmulatorConfig, start_emulator
from sync.local.stack import local_token
from sync.services import Services, open_services
from sync.state.storage import ensure_resources

ACCOUNTS_PER_SESSION = 200
MAX_WORKERS = 2


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker per usable core, at most ``MAX_WORKERS`` (each runs its own
    Azurite and the stack tests start several processes, so more only contend)."""
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


@pytest.fixture
def local_run_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """This test's own run directory for ``python -m sync local`` and the ``--local`` commands
    it starts (``SYNC_LOCAL_RUN_DIR``, inherited): stacks of tests on other xdist workers write
    their logs and storage file elsewhere, never to the checkout's shared ``.local-run/``."""
    run_dir = tmp_path / "local-run"
    monkeypatch.setenv("SYNC_LOCAL_RUN_DIR", str(run_dir))
    return run_dir


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite from node_modules, on free ports, with many accounts to hand out."""
    running = start_azurite(ACCOUNTS_PER_SESSION)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def _account_numbers() -> Iterator[int]:
    return itertools.count()


@pytest.fixture
def account(azurite: Azurite, _account_numbers: Iterator[int]) -> StorageAccount:
    """A storage account no other test has touched: its queues and tables are this test's."""
    number = next(_account_numbers)
    if number >= len(azurite.accounts):
        pytest.fail(f"more than {ACCOUNTS_PER_SESSION} storage tests: raise ACCOUNTS_PER_SESSION")
    return azurite.accounts[number]


@pytest.fixture
async def storage(account: StorageAccount) -> StorageSettings:
    """Storage settings for this test's account, with the app's queues and tables created."""
    settings = StorageSettings(connection_string=account.connection_string)
    await ensure_resources(settings)
    return settings


@pytest.fixture
async def enrichment_url() -> AsyncIterator[str]:
    """The enrichment API emulator on a free loopback port."""
    runner, url = await start_enrichment(EnrichmentConfig())
    yield url
    await runner.cleanup()


@pytest.fixture
async def dataverse_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The Dataverse Web API emulator: 50 seeded accounts and the documented limits, unless
    the test's ``@pytest.mark.emulator(**config)`` says otherwise."""
    marker = request.node.get_closest_marker("emulator")
    config = {"records": 50, **(marker.kwargs if marker else {})}
    running = await start_emulator(EmulatorConfig(**config))
    yield running.url
    await running.close()


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, storage: StorageSettings, dataverse_url: str,
            enrichment_url: str) -> dict[str, str]:
    """The app settings of a local host, set in this process's environment."""
    env = {"AzureWebJobsStorage": str(storage.connection_string), "DATAVERSE_URL": dataverse_url,
           "DATAVERSE_STATIC_TOKEN": local_token(), "ENRICHMENT_URL": enrichment_url,
           "ENRICHMENT_API_KEY": EnrichmentConfig().api_key, "SYNC_SCHEDULE": "0 0 2 * * *",
           "SYNC_QUEUE_METRICS_SCHEDULE": "0 * * * * *"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
async def make_services(app_env: dict[str, str]) -> AsyncIterator[Callable[..., Any]]:
    """Builds started worker services (one "instance" each) with extra settings."""
    opened: list[Services] = []

    async def make(**overrides: str) -> Services:
        services = open_services(Settings.from_env({**app_env, **overrides}))
        await services.start()
        opened.append(services)
        return services

    yield make
    for services in opened:
        await services.close()
