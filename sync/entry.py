"""What the triggers in function_app.py call. The only place that reads the environment.

The clients are built once per process, on first use, inside the worker's event loop, and
reused by every later invocation in that loop.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

from sync import planner, worker
from sync.ledger import BatchCounts, PlanManifest
from sync.services import Services, open_services
from sync.settings import Settings

_services: dict[asyncio.AbstractEventLoop, Services] = {}


def services() -> Services:
    """This process's clients for the running event loop, built on first use."""
    loop = asyncio.get_running_loop()
    found = _services.get(loop)
    if found is None:
        found = _services[loop] = open_services(Settings.from_env(os.environ))
    return found


async def close_services() -> None:
    """Close the clients of the running loop (at shutdown of a host process or a test)."""
    found = _services.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()


async def plan_sync(now: datetime | None = None) -> PlanManifest:
    """The timer's work: plan a run."""
    return await planner.plan(services(), now or datetime.now(UTC))


async def process_batch(body: bytes) -> BatchCounts:
    """The batches queue's work: carry out one message (already base64-decoded)."""
    return await worker.process_message(services(), body)
