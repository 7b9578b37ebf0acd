"""The machine a bench ran on: cores, memory, CPU model, Python (named in every report)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe() -> dict[str, str | int]:
    """Cores, memory in MiB, CPU model, Python version, OS."""
    return {"cores": os.cpu_count() or 0, "memory_mib": _memory_mib(), "cpu": _cpu_model(),
            "python": platform.python_version(), "os": f"{platform.system()} "
                                                        f"{platform.release()}"}


def summary(machine: dict[str, str | int]) -> str:
    """``2 cores, 23.5 GiB, Intel(R) Xeon(R) ..., Python 3.11.9``"""
    memory_gib = int(machine["memory_mib"]) / 1024
    return (f"{machine['cores']} cores, {memory_gib:.1f} GiB, {machine['cpu']}, "
            f"Python {machine['python']}")


def _memory_mib() -> int:
    return _meminfo_kib(_read("/proc/meminfo")) // 1024


def _meminfo_kib(text: str) -> int:
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_times() -> tuple[int, int]:
    """The machine's (idle, total) CPU time in clock ticks since boot, every core (/proc/stat);
    (0, 0) where it cannot be read."""
    return parse_cpu_times(_read("/proc/stat"))


def parse_cpu_times(text: str) -> tuple[int, int]:
    """(idle + iowait, all) from /proc/stat's aggregate ``cpu`` line."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            ticks = [int(value) for value in fields[1:]]
            idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
            return idle, sum(ticks[:8])
    return 0, 0


def idle_share(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """The share of the machine's CPU time that was idle between two ``cpu_times`` readings:
    its CPU headroom; None when nothing was measured."""
    total = after[1] - before[1]
    if total <= 0:
        return None
    return max(0.0, min(1.0, (after[0] - before[0]) / total))
