"""CPU and peak memory of every process under one run, by role, read from /proc while it runs.

The product's figures come from ``python -m sync local --json-out`` (its hosts, measured just
before they stop); this sampler adds what runs beside them: the emulators, Azurite and the
launcher itself (the root process: ``python -m sync local``, which watches and verifies). A
process is sampled every ``every_s``; the CPU it spends between its last sample and its exit is
missed. Its peak RSS is the kernel's high-water mark (``VmHWM``), so a peak between two samples
is not: only what the process allocates after its last sample is.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from sync.local.processes import ResourceUsage, resource_usage

EVERY_S: Final = 0.5


def role_of(argv: Sequence[str]) -> str:
    """Which part of the stack a command line is."""
    text = " ".join(argv)
    if "azurite" in text:
        return "azurite"
    if "emulator dataverse" in text:
        return "dataverse-emulator"
    if "emulator enrichment" in text:
        return "enrichment-emulator"
    if " host" in f" {text}" and "-m sync" in text:
        return "host"
    if "-m sync local" in text:
        return "launcher"
    return "other"


def sum_by_role(usage: dict[int, tuple[str, ResourceUsage]]) -> dict[str, float]:
    """CPU seconds per role."""
    totals: dict[str, float] = {}
    for role, used in usage.values():
        totals[role] = totals.get(role, 0.0) + used.cpu_s
    return {role: round(cpu_s, 3) for role, cpu_s in sorted(totals.items())}


def peak_by_role(usage: dict[int, tuple[str, ResourceUsage]]) -> dict[str, float]:
    """The largest peak RSS (MiB) of any one process per role: a role of several processes
    (the hosts) shows its biggest, as the hosts' own figure does."""
    peaks: dict[str, float] = {}
    for role, used in usage.values():
        peaks[role] = max(peaks.get(role, 0.0), used.peak_rss_mib)
    return {role: round(mib, 1) for role, mib in sorted(peaks.items())}


class TreeSampler:
    """Samples the descendants of ``root_pid`` in a thread until ``stop``."""

    def __init__(self, root_pid: int, every_s: float = EVERY_S) -> None:
        self.root_pid, self.every_s = root_pid, every_s
        self.last: dict[int, tuple[str, ResourceUsage]] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        self._thread.join()

    def cpu_by_role(self) -> dict[str, float]:
        return sum_by_role(self.last)

    def peak_rss_by_role(self) -> dict[str, float]:
        return peak_by_role(self.last)

    def _run(self) -> None:
        while not self._stopped.wait(self.every_s):
            self.sample()

    def sample(self) -> None:
        for pid in [self.root_pid, *descendants(self.root_pid)]:
            used = resource_usage(pid)
            if used.cpu_s or used.peak_rss_mib:
                self.last[pid] = merged(self.last.get(pid), role_of(_argv(pid)), used)


def merged(last: tuple[str, ResourceUsage] | None, role: str,
           used: ResourceUsage) -> tuple[str, ResourceUsage]:
    """A process's new sample over its ``last``: the role stays the last one known when the
    new one is ``other`` (a process that is exiting shows no command line), and its CPU and
    peak RSS never go down (an exiting one shows no memory); a new role is a new program
    (the child of a fork sampled before its exec showed its parent's), counted afresh."""
    if last is None or role not in ("other", last[0]):
        return role, used
    known, before = last
    return known, ResourceUsage(max(before.cpu_s, used.cpu_s),
                                max(before.peak_rss_mib, used.peak_rss_mib))


def descendants(root_pid: int) -> list[int]:
    """Every live process whose ancestry leads to ``root_pid``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, frontier = [], [root_pid]
    while frontier:
        pid = frontier.pop()
        found += children.get(pid, [])
        frontier += children.get(pid, [])
    return found


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []
