"""Child processes of the local stack: started in their own group, always stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

_URL: Final = re.compile(r"https?://\S+")
STOP_TIMEOUT_S: Final = 20.0


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
    """A child process whose output goes to a log file."""

    def __init__(self, name: str, process: subprocess.Popen[str], log_path: Path) -> None:
        self.name, self.process, self.log_path = name, process, log_path

    def __repr__(self) -> str:
        return f"Child({self.name!r}, pid={self.process.pid}, code={self.process.poll()})"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM, then SIGKILL if it does not end in time; answers the exit code."""
        if self.alive:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.wait()


class Children:
    """Every child the stack started; ``stop_all`` ends them in reverse order."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Child] = []

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None,
              wait_for_url_s: float = 0.0) -> tuple[Child, str]:
        """Start ``python -m sync <args>``; with ``wait_for_url_s``, answer the URL it prints."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "sync", *args], stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, env=dict(env or os.environ),
            start_new_session=True)
        child = Child(name, process, log_path)
        self.started.append(child)
        log = log_path.open("w")
        url = _read_url(child, log, wait_for_url_s) if wait_for_url_s else ""
        threading.Thread(target=_copy, args=(process.stdout, log), daemon=True).start()
        return child, url

    def stop_all(self) -> None:
        for child in reversed(self.started):
            child.stop()


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
