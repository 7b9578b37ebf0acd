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
