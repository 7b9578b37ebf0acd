"""``python -m sync host``: one local host instance running function_app.py until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path

from azure.storage.queue.aio import QueueClient

from sync import entry
from sync.local.azurite import ROOT
from sync.local.functions_index import IndexedFunction, QueueOptions, index, load_app
from sync.local.hostrunner import QueueListener, fire_timer

logger = logging.getLogger(__name__)


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
    functions = index(load_app(args.app), os.environ)
    options = QueueOptions.from_host_json(args.host_json)
    asyncio.run(_serve(functions, options, args.fire_timer))
    return 0


async def _serve(functions: list[IndexedFunction], options: QueueOptions,
                 fire_timers: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    clients: list[QueueClient] = []
    tasks = [asyncio.create_task(_listen(f, options, stop, clients))
             for f in functions if f.trigger_type == "queueTrigger"]
    if fire_timers:
        for function in functions:
            if function.trigger_type == "timerTrigger":
                await fire_timer(function)
    await asyncio.gather(*tasks)
    for client in clients:
        await client.close()
    await entry.close_services()


async def _listen(function: IndexedFunction, options: QueueOptions, stop: asyncio.Event,
                  clients: list[QueueClient]) -> None:
    connection = os.environ.get(function.connection)
    if not connection:
        raise RuntimeError(f"{function.name}: the local host needs the connection string "
                           f"setting {function.connection}")
    queue = QueueClient.from_connection_string(connection, function.queue_name)
    poison = QueueClient.from_connection_string(connection, f"{function.queue_name}-poison")
    clients += [queue, poison]
    logger.info("listening to %s for %s", function.queue_name, function.name)
    await QueueListener(function, queue, poison, options).run(stop)
