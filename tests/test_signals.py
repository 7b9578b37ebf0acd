"""SIGINT and SIGTERM on ``python -m sync local``: real processes, every descendant accounted for.

Each run starts the stack through a small launcher that sets SIGINT (and SIGTERM) to a known
disposition before exec, so the tests do not depend on how the suite itself was launched
(from a terminal, or in the background with SIGINT ignored). "Nothing left" is proven by
walking /proc for every descendant seen during the run, children and grandchildren, and
checking that none of them is alive afterwards.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sync.local.processes import COPY_WINDOW_S

ROOT = Path(__file__).parents[1]
START_WAIT_S = 90.0
EXIT_WAIT_S = 90.0
GONE_WAIT_S = 10.0
STACK_CHILDREN = 4  # Azurite, the two emulators, one host
_LAUNCHER = ("import os, signal, sys; "
             "signal.signal(signal.SIGINT, signal.Handlers(int(sys.argv[1]))); "
             "signal.signal(signal.SIGTERM, signal.SIG_DFL); "
             "os.execv(sys.executable, [sys.executable, '-m', 'sync', *sys.argv[2:]])")

Process = tuple[int, str]
"""A pid and its start time (field 22 of /proc/<pid>/stat): one process, even if pids recycle."""


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def children_of(pids: set[int]) -> set[Process]:
    """Every live process whose parent is one of ``pids``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and int(fields[1]) in pids:
                found.add((int(entry.name), fields[19]))
    return found


def command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(process: Process) -> bool:
    """The very process (same start time) still exists and is not a zombie."""
    fields = _stat(process[0])
    return fields is not None and fields[19] == process[1] and fields[0] != "Z"


def run_timeout_s(args: tuple[str, ...]) -> float:
    """The ``--timeout-s`` a run was started with (0 without one)."""
    for flag, value in itertools.pairwise(args):
        if flag == "--timeout-s":
            return float(value)
    return 0.0


class LocalRun:
    """``python -m sync local`` started with SIGINT at ``sigint`` (under ``wrapper``, e.g.
    ``timeout -s TERM 20``), its descendants watched."""

    def __init__(self, *args: str, sigint: signal.Handlers = signal.SIG_DFL,
                 wrapper: tuple[str, ...] = ()) -> None:
        self.exit_wait_s = EXIT_WAIT_S + run_timeout_s(args)
        """How long the run may take to exit: its own ``--timeout-s`` (it ends itself then),
        plus the time to stop everything."""
        self.process = subprocess.Popen(
            [*wrapper, sys.executable, "-c", _LAUNCHER, str(int(sigint)), "local", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.seen: set[Process] = set()
        self.children: set[Process] = set()
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._read, daemon=True),
                         threading.Thread(target=self._watch, daemon=True)]
        for thread in self._threads:
            thread.start()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def _watch(self) -> None:
        """Record every descendant, level by level, until the run has exited."""
        while self.process.poll() is None:
            direct = children_of({self.process.pid})
            found, level = set(direct), direct
            while level:
                level = children_of({pid for pid, _ in level}) - found
                found |= level
            with self._changed:
                self.children = {p for p in direct if alive(p)}
                self.seen |= found
                self._changed.notify_all()
            time.sleep(0.1)

    def wait_until(self, what: str, ready: Callable[[], bool], timeout_s: float) -> None:
        with self._changed:
            assert self._changed.wait_for(ready, timeout_s), \
                f"not seen within {timeout_s} s: {what}\n{self.output}"

    def wait_for_children(self, count: int) -> None:
        self.wait_until(f"{count} children", lambda: len(self.children) >= count,
                        START_WAIT_S)

    def wait_for_line(self, text: str) -> None:
        self.wait_until(repr(text), lambda: text in self.output, EXIT_WAIT_S)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait_for_exit(self) -> int:
        code = self.process.wait(timeout=self.exit_wait_s)
        for thread in self._threads:
            thread.join(timeout=EXIT_WAIT_S)
        return code

    def left_alive(self) -> list[Process]:
        """Descendants still alive, after giving SIGKILLed ones a moment to be torn down."""
        deadline_s = time.monotonic() + GONE_WAIT_S
        while any(alive(p) for p in self.seen) and time.monotonic() < deadline_s:
            time.sleep(0.1)
        return [p for p in self.seen if alive(p)]

    def kill_everything(self) -> None:
        """Cleanup whatever a failed test left, by pid: the run and every descendant's group."""
        for pid, _ in [p for p in self.seen if alive(p)]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for thread in self._threads:
            thread.join(timeout=EXIT_WAIT_S)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture
def local_run(local_run_dir: Path) -> Iterator[Callable[..., LocalRun]]:
    runs: list[LocalRun] = []

    def start(*args: str, sigint: signal.Handlers = signal.SIG_DFL) -> LocalRun:
        runs.append(LocalRun("--records", "20000", *args, sigint=sigint))
        return runs[-1]

    yield start
    for run in runs:
        run.kill_everything()


def assert_stopped_gracefully(run: LocalRun, signum: int) -> None:
    name = signal.Signals(signum).name
    assert run.wait_for_exit() == 128 + signum, run.output
    assert f"Interrupted by {name}" in run.output
    assert "Stopped: no process this run started is left." in run.output
    assert len(run.seen) >= STACK_CHILDREN, run.seen
    assert run.left_alive() == []
    assert_no_keys_left()


def assert_no_keys_left() -> None:
    """The file that holds the stack's storage key and token is gone with the stack."""
    assert not (Path(os.environ["SYNC_LOCAL_RUN_DIR"]) / "storage.json").exists()


@pytest.mark.timeout(START_WAIT_S + EXIT_WAIT_S + 60)
def test_sigterm_stops_everything_and_exits_143(local_run: Callable[..., LocalRun]) -> None:
    run = local_run()
    run.wait_for_children(STACK_CHILDREN)
    run.signal(signal.SIGTERM)
    assert_stopped_gracefully(run, signal.SIGTERM)
    assert "Stopping host-0" in run.output


@pytest.mark.timeout(START_WAIT_S + EXIT_WAIT_S + 60)
def test_sigint_inherited_as_ignored_still_stops_everything(
        local_run: Callable[..., LocalRun]) -> None:
    run = local_run(sigint=signal.SIG_IGN)
    run.wait_for_children(STACK_CHILDREN)
    run.signal(signal.SIGINT)
    assert_stopped_gracefully(run, signal.SIGINT)


@pytest.mark.timeout(START_WAIT_S + 2 * EXIT_WAIT_S + 60)
def test_a_second_sigint_stops_everything_at_once(local_run: Callable[..., LocalRun]) -> None:
    run = local_run()
    run.wait_for_children(STACK_CHILDREN)
    # A hung child: SIGSTOPped, it cannot act on SIGTERM, so the graceful stop is still
    # waiting for it when the second signal arrives.
    host = next(pid for pid, _ in run.children if b"\0host" in command_line(pid))
    os.kill(host, signal.SIGSTOP)
    run.signal(signal.SIGINT)
    run.wait_for_line("Interrupted by SIGINT")
    time.sleep(COPY_WINDOW_S + 0.2)  # not a copy of the first: a second stop
    run.signal(signal.SIGINT)
    assert run.wait_for_exit() == 130, run.output
    assert "SIGINT again: killing every child process group now." in run.output
    assert "Stopped: no process" not in run.output
    assert run.left_alive() == []
    assert_no_keys_left()


@pytest.mark.parametrize("children_started", [1, 2, 3],
                         ids=["once Azurite is spawned", "once the Dataverse emulator is spawned",
                              "once the enrichment emulator is spawned"])
@pytest.mark.timeout(START_WAIT_S + EXIT_WAIT_S + 60)
def test_a_signal_during_start_up_leaves_nothing(local_run: Callable[..., LocalRun],
                                                  children_started: int) -> None:
    run = local_run()
    run.wait_for_children(children_started)
    run.signal(signal.SIGTERM)
    assert run.wait_for_exit() == 143, run.output
    assert "Interrupted by SIGTERM" in run.output
    assert run.left_alive() == []


@pytest.mark.parametrize(("signum", "sigint"), [
    (signal.SIGINT, signal.SIG_DFL), (signal.SIGINT, signal.SIG_IGN),
    (signal.SIGTERM, signal.SIG_DFL)],
    ids=["SIGINT", "SIGINT inherited as ignored", "SIGTERM"])
async def test_the_host_stops_gracefully_on_a_signal(app_env: dict[str, str], signum: int,
                                                     sigint: signal.Handlers) -> None:
    code, rest = await host_stopped_by(signum, {**os.environ, **app_env}, sigint)
    assert code == 0, rest
    assert f"{signal.Signals(signum).name}: no new messages; running ones get up to" in rest


async def host_stopped_by(signum: int, env: dict[str, str],
                          sigint: signal.Handlers = signal.SIG_DFL) -> tuple[int, str]:
    """``python -m sync host`` with ``env``, sent ``signum`` once it listens: its exit code
    and what it printed after."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _LAUNCHER, str(int(sigint)), "host", cwd=ROOT,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert process.stdout is not None
    try:
        line = b""
        while b"listening to" not in line:
            line = await asyncio.wait_for(process.stdout.readline(), EXIT_WAIT_S)
            assert line, "the host ended before it listened"
        process.send_signal(signum)
        rest = (await asyncio.wait_for(process.stdout.read(), EXIT_WAIT_S)).decode()
        code = await asyncio.wait_for(process.wait(), EXIT_WAIT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return code, rest
