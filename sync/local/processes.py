"""Child processes of the local stack: started in their own group, always stopped.

``stop_on_signals`` makes SIGINT and SIGTERM stop them whatever disposition this process
inherited: the first signal raises ``Interrupted`` (the caller stops every child gracefully), a
second one SIGKILLs every child's process group and exits at once. Copies of the first signal
that arrive within ``COPY_WINDOW_S`` are that same stop, not a second one: GNU ``timeout``
signals its child and then its own process group, so one ``timeout -s TERM`` delivers SIGTERM
twice.

A graceful stop is bounded: the hosts get ``HOST_STOP_S`` (they stop fetching and finish what
runs), the emulators and Azurite ``SERVICE_STOP_S``; whatever is left then is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final, NoReturn, TextIO

_URL: Final = re.compile(r"https?://\S+")
HOST_STOP_S: Final = 6.0
"""How long a host gets after SIGTERM (it drains for ``sync.local.host.DRAIN_S``, less)."""
SERVICE_STOP_S: Final = 2.0
"""How long the emulators and Azurite get after SIGTERM: they hold nothing to save (the
stack's storage is thrown away), and Azurite waits on any open client connection forever."""
STOP_TIMEOUT_S: Final = HOST_STOP_S + SERVICE_STOP_S
"""The longest a graceful stop of a whole stack takes (well inside the 10 s promised)."""
STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
COPY_WINDOW_S: Final = 1.0
"""The same signal again within this long after the first is a copy of it (``timeout``)."""
_POLL_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class ResourceUsage:
    """CPU time and peak memory of a live process, from /proc."""

    cpu_s: float
    peak_rss_mib: float


def resource_usage(pid: int) -> ResourceUsage:
    """What ``pid`` has used so far (zeros if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return ResourceUsage(0.0, 0.0)
    ticks = os.sysconf("SC_CLK_TCK")
    cpu_s = (int(stat[11]) + int(stat[12])) / ticks
    peak_kib = next((int(line.split()[1]) for line in status.splitlines()
                     if line.startswith("VmHWM:")), 0)
    return ResourceUsage(cpu_s=cpu_s, peak_rss_mib=peak_kib / 1024)


class Child:
    """A child process, leader of its own process group, whose output goes to a log file."""

    def __init__(self, name: str, process: subprocess.Popen[str], log_path: Path,
                 *, stop_first: bool = False) -> None:
        self.name, self.process, self.log_path = name, process, log_path
        self.stop_first = stop_first

    def __repr__(self) -> str:
        return f"Child({self.name!r}, pid={self.process.pid}, code={self.process.poll()})"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM to its group, then SIGKILL if it does not end in time; the exit code."""
        stop_processes([self.process], timeout_s)
        return self.process.wait()


class Children:
    """Every child the stack started; ``stop_all`` ends them all, leaving no process behind.

    ``cleanups`` are what a stop must also remove (Azurite's folder, the file that holds the
    stack's keys): ``run_cleanups`` runs them, on a graceful stop and on a hard one alike."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Child] = []
        self.cleanups: list[Callable[[], None]] = []

    def run_cleanups(self) -> None:
        """Run every cleanup once, newest first; one that fails does not stop the others."""
        while self.cleanups:
            cleanup = self.cleanups.pop()
            with contextlib.suppress(OSError):
                cleanup()

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None,
              wait_for_url_s: float = 0.0, *, stop_first: bool = False) -> tuple[Child, str]:
        """Start ``python -m sync <args>``; with ``wait_for_url_s``, answer the URL it prints.

        ``stop_first`` children (the hosts) are stopped before the others (what they use).
        """
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with signals_deferred():
            process = subprocess.Popen(
                [sys.executable, "-m", "sync", *args], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True, env=dict(env or os.environ),
                start_new_session=True)
            child = self.adopt(name, process, log_path, stop_first=stop_first)
        log = log_path.open("w")
        url = _read_url(child, log, wait_for_url_s) if wait_for_url_s else ""
        threading.Thread(target=_copy, args=(process.stdout, log), daemon=True).start()
        return child, url

    def adopt(self, name: str, process: subprocess.Popen[str], log_path: Path,
              *, stop_first: bool = False) -> Child:
        """Record a process started elsewhere (in its own session) so it is stopped too."""
        child = Child(name, process, log_path, stop_first=stop_first)
        self.started.append(child)
        return child

    def stop_all(self, say: Callable[[str], None] | None = None) -> None:
        """Stop the ``stop_first`` children (the hosts) together within ``HOST_STOP_S``, then
        all the others together within ``SERVICE_STOP_S``."""
        first = [c for c in self.started if c.stop_first]
        rest = [c for c in self.started if not c.stop_first]
        for group, timeout_s in ((first, HOST_STOP_S), (rest, SERVICE_STOP_S)):
            running = [c for c in group if c.alive]
            if running and say is not None:
                say(f"Stopping {', '.join(c.name for c in running)} (SIGTERM, up to "
                    f"{timeout_s:g} s)")
            stop_processes([c.process for c in group], timeout_s)

    def kill_all(self) -> None:
        """SIGKILL to every child's group at once, without waiting: the hard stop."""
        for child in self.started:
            if child.process.returncode is None:  # not yet reaped: its group id is still ours
                _signal_group(child.process.pid, signal.SIGKILL)


def stop_processes(processes: Sequence[subprocess.Popen[str]], timeout_s: float) -> None:
    """SIGTERM to every group, wait for all up to ``timeout_s`` together, SIGKILL the rest.

    Each group gets a final SIGKILL once its leader has exited but before it is reaped (the
    group id cannot have been reused then), so no grandchild outlives its parent.
    """
    for process in processes:
        if process.returncode is None:
            _signal_group(process.pid, signal.SIGTERM)
    deadline_s = time.monotonic() + timeout_s
    waiting = [p for p in processes if p.returncode is None]
    while waiting and time.monotonic() < deadline_s:
        waiting = [p for p in waiting if not _exited_group_swept(p)]
        if waiting:
            time.sleep(_POLL_S)
    for process in waiting:
        _signal_group(process.pid, signal.SIGKILL)
    for process in processes:
        process.wait()


def _exited_group_swept(process: subprocess.Popen[str]) -> bool:
    """True (and its group killed, its leader reaped) once the leader has exited."""
    try:
        exited = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # already reaped elsewhere
        process.poll()
        return True
    if exited is None:
        return False
    _signal_group(process.pid, signal.SIGKILL)
    process.wait()
    return True


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _read_url(child: Child, log: TextIO, timeout_s: float) -> str:
    stream = child.process.stdout
    deadline_s = time.monotonic() + timeout_s
    while stream is not None and time.monotonic() < deadline_s:
        line = stream.readline()
        if not line:
            break
        log.write(line)
        log.flush()
        match = _URL.search(line)
        if match:
            return match.group(0).rstrip("/")
    raise RuntimeError(f"{child.name} printed no URL; see {child.log_path}")


def _copy(stream: TextIO | None, log: TextIO) -> None:
    if stream is None:
        return
    with log, stream:
        for line in stream:
            log.write(line)
            log.flush()


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived: unwind, stop every child, exit with 128 + the signal number.

    A ``KeyboardInterrupt``, because the handler raises it wherever the main thread is: asyncio
    re-raises ``KeyboardInterrupt`` out of a loop callback, and logs and drops any other
    ``BaseException`` (the signal would then be lost while the stack runs on).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _SignalState:
    """What a stop signal does; process-wide, as signal dispositions are."""

    __slots__ = ("children", "deferred", "first", "pending", "stopping")

    def __init__(self) -> None:
        self.children: Children | None = None
        self.deferred = 0
        self.pending: list[tuple[int, float]] = []
        self.stopping = False
        self.first: tuple[int, float] | None = None
        """The signal that started the stop, and when (monotonic seconds)."""

    def is_copy(self, signum: int, at_s: float) -> bool:
        """The signal that started the stop, again within ``COPY_WINDOW_S``."""
        return self.first is not None and is_copy(self.first, signum, at_s)


def is_copy(first: tuple[int, float], signum: int, at_s: float) -> bool:
    """Whether ``signum`` at ``at_s`` repeats ``first`` (a signal and its time) within
    ``COPY_WINDOW_S``: one stop sent twice, not a second stop."""
    return signum == first[0] and 0 <= at_s - first[1] < COPY_WINDOW_S


_STATE: Final = _SignalState()


def stop_on_signals(children: Children) -> Callable[[], None]:
    """Own SIGINT and SIGTERM while ``children`` run; answer what gives back the old handlers.

    The first signal raises ``Interrupted`` in the main thread; any signal after that (but its
    own copies within ``COPY_WINDOW_S``), or after ``stopping()``, SIGKILLs every child's group
    and exits at once with 128 + its number.
    """
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    _STATE.children, _STATE.stopping, _STATE.pending = children, False, []
    _STATE.first = None
    for sig in STOP_SIGNALS:
        signal.signal(sig, _on_signal)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _STATE.children = None

    return restore


def stopping() -> None:
    """The children are being stopped: from now on a stop signal means stop hard."""
    _STATE.stopping = True


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold stop signals back while a child is started and recorded, so none can escape."""
    _STATE.deferred += 1
    try:
        yield
    finally:
        _STATE.deferred -= 1
        if not _STATE.deferred and _STATE.pending:
            (first, *rest), _STATE.pending = _STATE.pending, []
            for signum, at_s in rest:
                if not is_copy(first, signum, at_s):
                    _hard_stop(signum)
            _take(*first)


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    at_s = time.monotonic()
    if _STATE.deferred:
        _STATE.pending.append((signum, at_s))
        return
    _take(signum, at_s)


def _take(signum: int, at_s: float) -> None:
    """The first signal interrupts; its copies are ignored; anything else stops hard."""
    if _STATE.is_copy(signum, at_s):
        return
    if not _STATE.stopping:
        _STATE.stopping, _STATE.first = True, (signum, at_s)
        raise Interrupted(signum)
    _hard_stop(signum)


def _hard_stop(signum: int) -> NoReturn:
    # os.write, not print: the main thread may be inside a write to the same stream.
    os.write(2, f"\n{signal.Signals(signum).name} again: killing every child process group "
                f"now.\n".encode())
    if _STATE.children is not None:
        _STATE.children.kill_all()
        _STATE.children.run_cleanups()
    os._exit(128 + signum)
