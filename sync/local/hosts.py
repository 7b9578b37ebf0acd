"""The local stack's host instances while a run goes on: one that ends is reported, and the
others carry its work on once its messages' leases end (as Functions instances do); the run
stops early only when no host is left."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sync.local.hostrunner import LEASE_S
from sync.local.processes import Child


@dataclass(frozen=True, slots=True)
class EndedHost:
    """A host that ended while the run went on."""

    name: str
    exit_code: int
    after_s: float

    @property
    def how(self) -> str:
        """``SIGKILL``, or ``exit 1``."""
        if self.exit_code < 0:
            return signal.Signals(-self.exit_code).name
        return f"exit {self.exit_code}"

    def line(self) -> str:
        return f"{self.name} ended ({self.how}) after {self.after_s:.0f} s"


class HostWatch:
    """Notices hosts that end; ``any_alive`` is the run's health."""

    __slots__ = ("_clock", "_hosts", "_say", "_started_s", "ended")

    def __init__(self, hosts: Sequence[Child], say: Callable[[str], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._hosts, self._say, self._clock = list(hosts), say, clock
        self._started_s = clock()
        self.ended: list[EndedHost] = []

    def __repr__(self) -> str:
        return f"HostWatch(hosts={len(self._hosts)}, ended={self.ended})"

    def any_alive(self) -> bool:
        """Report each host that ended since the last call; True while one is left."""
        for host in self._hosts:
            code = host.process.poll()
            if code is not None and host.name not in {e.name for e in self.ended}:
                self._ended(EndedHost(host.name, code, self._clock() - self._started_s))
        return len(self.ended) < len(self._hosts)

    def _ended(self, host: EndedHost) -> None:
        self.ended.append(host)
        left = len(self._hosts) - len(self.ended)
        rest = (f"the {left} other host(s) take over its messages when their lease ends "
                f"(up to {LEASE_S} s)" if left else "no host is left")
        self._say(f"{host.line()}; {rest}")

    def summary(self) -> str:
        """``2 of 3 ran to the end; host-1 ended (SIGKILL) after 12 s``, or ""."""
        if not self.ended:
            return ""
        ran = len(self._hosts) - len(self.ended)
        return f"{ran} of {len(self._hosts)} ran to the end; " + "; ".join(
            e.line() for e in self.ended)
