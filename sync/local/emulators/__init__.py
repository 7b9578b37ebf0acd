"""In-repo emulators of the services the sync talks to, served over real HTTP on loopback."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from typing import Any


async def until_signalled() -> None:
    """Wait for SIGINT or SIGTERM: how an emulator's command line serves until stopped."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()



def add_serving_options(parser: argparse.ArgumentParser, *, fault_rule: Callable[[str], Any],
                        fault_example: str) -> None:
    """Where an emulator's command line listens, and the fault rules it starts with
    (``--fault``, JSON, repeatable, read by ``fault_rule``)."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one")
    parser.add_argument("--fault", action="append", type=fault_rule, default=[],
                        dest="fault_rules", metavar="JSON",
                        help="a fault rule in force from the start, as JSON; repeatable "
                             f"(none). E.g. '{fault_example}'")
