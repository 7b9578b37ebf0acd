"""What the triggers in function_app.py call. The only place that reads the environment.

The clients are built once per process, on first use, inside the worker's event loop, and
reused by every later invocation in that loop.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime

from sync import planner, worker
from sync.ledger import BatchCounts
from sync.planstate import PlanState, plan_state_from
from sync.services import Services, open_services
from sync.settings import Settings

_services: dict[asyncio.AbstractEventLoop, Services] = {}
_opening: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


async def services() -> Services:
    """This process's clients for the running event loop, built and started on first use."""
    loop = asyncio.get_running_loop()
    lock = _opening.setdefault(loop, asyncio.Lock())
    async with lock:
        found = _services.get(loop)
        if found is None:
            found = open_services(Settings.from_env(os.environ))
            await found.start()
            _services[loop] = found
    found.activity.touch()
    return found


async def close_services() -> None:
    """Close the clients of the running loop (at shutdown of a host process or a test)."""
    loop = asyncio.get_running_loop()
    _opening.pop(loop, None)
    found = _services.pop(loop, None)
    if found is not None:
        await found.close()


async def plan_sync(now: datetime | None = None) -> PlanState | None:
    """The timer's work: start a plan; answers the state handed on, None when complete."""
    return await planner.plan(await services(), now or datetime.now(UTC))


async def continue_plan(body: bytes) -> PlanState | None:
    """The plan queue's work: go on with a plan from its continuation message."""
    return await planner.continue_plan(await services(), plan_state_from(body))


async def process_batch(body: bytes) -> BatchCounts:
    """The batches queue's work: carry out one message (already base64-decoded)."""
    return await worker.process_message(await services(), body)
