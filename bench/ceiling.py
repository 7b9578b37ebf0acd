"""The ceiling each row is measured against: the emulator's own proven ceiling (the ``ceiling``
of its ``/_emulator/stats``: records/s in the steady state after the first window, per write
mode and ``overall``, the minimum over the request, execution-time and concurrency facets per
server, times the servers), within the enrichment API's limit.

``dataverse_ceiling`` is the one place that reads the emulator's figure; ``enrichment_ceiling``
reads the enrichment emulator's (its ``ceiling_per_s``: the configured rate, the steady state
after its burst) and caps every mode by it, as the emulator's own
``ceiling(config, enrichment_rate_per_s=...)`` caps ``overall``; tests/test_bench_ceiling.py
holds the two to agree for every scenario. Each is proven by its probes (bench/runprobe.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.scenarios import MODES

OVERALL = "overall"


@dataclass(frozen=True, slots=True)
class Ceiling:
    """Records/s per write mode (and ``overall``: any mix of modes) for Dataverse alone, and
    the enrichment API's rate."""

    dataverse_per_s: dict[str, float]
    enrichment_per_s: float

    def mode_per_s(self, mode: str) -> float:
        """A mode's ceiling: its Dataverse bound or the enrichment API's, whichever is lower."""
        return min(self.dataverse_per_s[mode], self.enrichment_per_s)

    @property
    def overall_per_s(self) -> float:
        """What the environment allows at most, any mix of modes (at least the best mode's)."""
        dataverse = self.dataverse_per_s.get(OVERALL, max(self.dataverse_per_s[m] for m in MODES))
        return min(dataverse, self.enrichment_per_s)

    def as_dict(self) -> dict[str, Any]:
        return {"dataverse_per_s": self.dataverse_per_s,
                "enrichment_per_s": self.enrichment_per_s,
                "mode_per_s": {mode: self.mode_per_s(mode) for mode in MODES},
                "overall_per_s": self.overall_per_s}


def dataverse_ceiling(stats: dict[str, Any]) -> dict[str, float]:
    """Records/s per write mode and overall from the emulator's stats (``stats["ceiling"]``)."""
    found = stats["ceiling"]
    return {name: float(found[name]) for name in (*MODES, OVERALL)}


def enrichment_ceiling(stats: dict[str, Any]) -> float:
    """Calls/s the enrichment emulator admits after its burst (``stats["ceiling_per_s"]``)."""
    return float(stats["ceiling_per_s"])


def ceiling_of(stats: dict[str, Any], enrichment_rate_per_s: float) -> Ceiling:
    return Ceiling(dataverse_ceiling(stats), enrichment_rate_per_s)
