"""``python -m sync host``: one local host instance running function_app.py until a signal.

The first SIGINT or SIGTERM stops fetching and lets the running messages finish (bounded by
``DRAIN_S``); a second one exits at once (copies of the first within a second, as ``timeout``
sends them, are the same stop). Binding expressions (``%SYNC_SCHEDULE%``) take the settings
table's default where the setting is unset, as the deployment's app settings do. A timer
function that raises is logged and the host goes on, as the Functions host does. Local-only
knobs (a clock offset, the message lease) come from ``sync.local.host_knobs``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from azure.storage.queue.aio import QueueClient

from sync import entry
from sync.config.settings import SETTINGS
from sync.local.azurite import ROOT
from sync.local.functions_index import IndexedFunction, QueueOptions, index, load_app
from sync.local.host_knobs import clock_of, message_lease_s
from sync.local.hostrunner import QueueListener, fire_timer
from sync.local.processes import HOST_STOP_S, is_copy
from sync.state.storage import APP_CLIENT_OPTIONS

logger = logging.getLogger(__name__)

DRAIN_S: Final = HOST_STOP_S - 2.0
"""After SIGINT or SIGTERM, how long running messages get to finish (less than the
``HOST_STOP_S`` the local stack waits before it kills a host). A message abandoned then comes
back when its lease ends; its writes are idempotent."""


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m sync host``."""
    parser.add_argument("--app", type=Path, default=ROOT / "function_app.py",
                        help="the function app to run (function_app.py)")
    parser.add_argument("--host-json", type=Path, default=ROOT / "host.json",
                        help="host.json with the queue options (host.json)")
    parser.add_argument("--fire-timer", action="store_true",
                        help="fire every timer trigger once at start (one instance does)")


def main(args: argparse.Namespace) -> int:
    """Index the app, then serve its triggers until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    for noisy in ("azure", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    entry.use_clock(clock_of(os.environ))
    lease_s = message_lease_s(os.environ)
    functions = index(load_app(args.app), with_defaults(os.environ))
    options = QueueOptions.from_host_json(args.host_json)
    asyncio.run(_serve(functions, options, args.fire_timer, lease_s))
    return 0


def with_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment with every declared setting's default where it is unset."""
    defaults = {spec.name: spec.default for spec in SETTINGS if spec.default is not None}
    return {**defaults, **environ}


async def _serve(functions: list[IndexedFunction], options: QueueOptions,
                 fire_timers: bool, lease_s: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    first: list[tuple[int, float]] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _on_signal, sig, stop, first)
    clients: list[QueueClient] = []
    tasks = [asyncio.create_task(_listen(f, options, stop, clients, lease_s))
             for f in functions if f.trigger_type == "queueTrigger"]
    if fire_timers:
        tasks.append(asyncio.create_task(_fire_timers(functions)))
    await _run_until_drained(asyncio.gather(*tasks), stop)
    for client in clients:
        await client.close()
    await entry.close_services()


def _on_signal(signum: int, stop: asyncio.Event, first: list[tuple[int, float]]) -> None:
    """First signal: stop fetching and let running messages finish; a copy of it within a
    second: nothing more; any other: exit at once."""
    name = signal.Signals(signum).name
    at_s = time.monotonic()
    if first and is_copy(first[0], signum, at_s):
        return
    if stop.is_set():
        logger.warning("%s again: exiting at once", name, extra={"event": "host_killed"})
        logging.shutdown()
        os._exit(128 + signum)
    first.append((signum, at_s))
    logger.info("%s: no new messages; running ones get up to %g s to finish", name, DRAIN_S,
                extra={"event": "host_stopping"})
    stop.set()


async def _run_until_drained(work: asyncio.Future[list[None]], stop: asyncio.Event) -> None:
    """Await ``work``; once ``stop`` is set, give it ``DRAIN_S`` more, then cancel it."""
    stopped = asyncio.create_task(stop.wait())
    either: set[asyncio.Future[Any]] = {work, stopped}
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not work.done():
        try:
            await asyncio.wait_for(work, DRAIN_S)
        except TimeoutError:
            logger.warning("messages still running after %g s were abandoned; they become "
                           "visible again when their lease ends", DRAIN_S,
                           extra={"event": "host_drain_timeout"})
            return
    work.result()


async def _fire_timers(functions: list[IndexedFunction]) -> None:
    for function in functions:
        if function.trigger_type == "timerTrigger":
            try:
                await fire_timer(function)
            except Exception as error:  # the Functions host logs a failed timer and goes on
                logger.error("timer %s failed: %s: %s", function.name, type(error).__name__,
                             error, extra={"event": "timer_failed"})


async def _listen(function: IndexedFunction, options: QueueOptions, stop: asyncio.Event,
                  clients: list[QueueClient], lease_s: int) -> None:
    connection = os.environ.get(function.connection)
    if not connection:
        raise RuntimeError(f"{function.name}: the local host needs the connection string "
                           f"setting {function.connection}")
    queue = QueueClient.from_connection_string(connection, function.queue_name,
                                               **APP_CLIENT_OPTIONS)
    poison = QueueClient.from_connection_string(connection, f"{function.queue_name}-poison",
                                                **APP_CLIENT_OPTIONS)
    clients += [queue, poison]
    logger.info("listening to %s for %s", function.queue_name, function.name)
    await QueueListener(function, queue, poison, options, lease_s=lease_s).run(stop)
