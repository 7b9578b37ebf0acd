"""In-repo emulators of the services the sync talks to, served over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import signal


async def until_signalled() -> None:
    """Wait for SIGINT or SIGTERM: how an emulator's command line serves until stopped."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
