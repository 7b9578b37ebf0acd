"""Scope decides the ambiguous faults: the record's when its siblings succeed, else the service's.

A 403 can mean "the application user lacks the privilege" (every record) or "this record is
owned where we may not write" (one record); a plug-in's 500 can be an outage or one record that
breaks it. The evidence is whether the service accepted other work that was sent after this
record first failed: then the fault follows the record. A record meets such a fault on several
deliveries (``strikes``, carried in the message) before it is dead-lettered as a suspected
record fault; without that evidence the fault is the service's and the record waits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

NEVER: Final = float("-inf")


@dataclass(slots=True)
class ScopeLog:
    """When the latest successful request of one dependency was sent (on the clock's
    monotonic seconds)."""

    last_success_sent_s: float = NEVER

    def succeeded(self, sent_s: float) -> None:
        """A request sent at ``sent_s`` succeeded."""
        self.last_success_sent_s = max(self.last_success_sent_s, sent_s)

    def siblings_succeeded_since(self, first_failure_sent_s: float) -> bool:
        """Did a request sent after the record's first failed one succeed?"""
        return self.last_success_sent_s >= first_failure_sent_s


def is_record_fault(strikes: int, probes: int) -> bool:
    """After ``probes`` deliveries with the evidence, the fault is the record's."""
    return strikes >= probes
