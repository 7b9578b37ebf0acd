"""The stop-signal handler of ``sync local``: the signal reaches the stack wherever the main
thread is, an asyncio loop callback included; copies of the first signal within a second (GNU
``timeout`` sends two) are one graceful stop, a later one stops hard."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sync.local.processes import COPY_WINDOW_S, Children, Interrupted, is_copy, stop_on_signals


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


_STOPPED_TWICE = """
import os, signal, sys, tempfile, time
from pathlib import Path
from sync.local.processes import (Children, Interrupted, signals_deferred, stop_on_signals,
                                  stopping)
restore = stop_on_signals(Children(Path(tempfile.mkdtemp())))
try:
    if sys.argv[1] == "while-a-child-starts":
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
    else:
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)
except Interrupted as stop:
    print("interrupted by", stop, flush=True)
    stopping()
    time.sleep(float(sys.argv[2]))
    os.kill(os.getpid(), signal.SIGTERM)  # the copy timeout sends to its process group
    time.sleep(0.5)
    print("stopped gracefully", flush=True)
finally:
    restore()
"""


@pytest.mark.parametrize(("how", "second_after_s", "graceful"), [
    pytest.param("one-by-one", 0.0, True, id="a-copy-within-the-window-is-the-same-stop"),
    pytest.param("while-a-child-starts", 0.0, True,
                 id="two-copies-held-back-while-a-child-starts-are-one-stop"),
    pytest.param("one-by-one", COPY_WINDOW_S + 0.2, False,
                 id="the-same-signal-after-the-window-is-a-second-stop"),
])
def test_copies_of_the_first_signal_within_a_second_are_one_graceful_stop(
        how: str, second_after_s: float, graceful: bool) -> None:
    done = subprocess.run([sys.executable, "-c", _STOPPED_TWICE, how, str(second_after_s)],
                          cwd=Path(__file__).parents[1], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.stdout.count("interrupted by SIGTERM") == 1, done.stdout + done.stderr
    if graceful:
        assert (done.returncode, "stopped gracefully" in done.stdout) == (0, True), done.stderr
        assert "again" not in done.stderr
    else:
        assert done.returncode == 143
        assert "SIGTERM again: killing every child process group now." in done.stderr


@pytest.mark.parametrize(("first", "signum", "at_s", "copy"), [
    ((signal.SIGTERM, 10.0), signal.SIGTERM, 10.0, True),
    ((signal.SIGTERM, 10.0), signal.SIGTERM, 10.0 + COPY_WINDOW_S - 0.01, True),
    ((signal.SIGTERM, 10.0), signal.SIGTERM, 10.0 + COPY_WINDOW_S, False),
    ((signal.SIGTERM, 10.0), signal.SIGINT, 10.1, False),
])
def test_a_copy_is_the_same_signal_within_the_window(first: tuple[int, float], signum: int,
                                                     at_s: float, copy: bool) -> None:
    assert is_copy(first, signum, at_s) is copy
