"""The stop-signal handler of ``sync local`` in-process: the signal reaches the stack wherever
the main thread is, an asyncio loop callback included."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from sync.local.processes import Children, Interrupted, stop_on_signals


async def _sleep_with_a_signal_in_a_callback(signum: int) -> None:
    # os.kill returns inside the callback's Handle._run, where the Python-level handler runs.
    asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signum)
    await asyncio.sleep(5)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_inside_a_loop_callback_interrupts_the_run(tmp_path: Path, signum: int) -> None:
    restore = stop_on_signals(Children(tmp_path))
    try:
        with pytest.raises(Interrupted) as raised:
            asyncio.run(_sleep_with_a_signal_in_a_callback(signum))
    finally:
        restore()
    assert raised.value.exit_code == 128 + signum


def test_the_handlers_before_the_run_come_back(tmp_path: Path) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    stop_on_signals(Children(tmp_path))()
    assert {sig: signal.getsignal(sig) for sig in before} == before
