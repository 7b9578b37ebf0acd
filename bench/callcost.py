"""What one HTTP call costs the client's CPU: the figures of the floor measurement
(``bench/floor.py``) and how the report words them. Pure: the runner fills a ``Floor``.

The product makes one enrichment call per record, so what a bare aiohttp client spends on one
GET is a floor under the product's CPU per record (target 3, ``bench/targets.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

BARE: Final = "aiohttp"
"""A bare aiohttp client: one ClientSession, keep-alive, a GET and its body read."""
PRODUCT: Final = "product"
"""The product's enrichment call: ``EnrichmentClient.profile`` through
``sync.clients.http.exchange``, its answer judged and parsed (no governor, no retries)."""
CLIENTS: Final = (BARE, PRODUCT)


@dataclass(frozen=True, slots=True)
class CallCost:
    """One client at one concurrency: the calls it made and its process's CPU for them."""

    client: str
    concurrency: int
    requests: int
    cpu_s: float
    elapsed_s: float

    @property
    def cpu_ms_per_call(self) -> float:
        return 1000 * self.cpu_s / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_ms_per_call": self.cpu_ms_per_call}


@dataclass(frozen=True, slots=True)
class Floor:
    """Every client at every concurrency measured."""

    costs: tuple[CallCost, ...]

    def of(self, client: str) -> list[CallCost]:
        """``client``'s figures, lowest concurrency first."""
        return sorted((c for c in self.costs if c.client == client),
                      key=lambda c: c.concurrency)

    @property
    def floor_ms(self) -> float:
        """The least CPU a bare aiohttp call cost at any concurrency (ms)."""
        return min((c.cpu_ms_per_call for c in self.of(BARE)), default=0.0)

    def line(self) -> str:
        """``HTTP client floor: 0.201/0.195 ms CPU per call (aiohttp, concurrency 16/64); the
        product's enrichment call: 0.262/0.250 ms``."""
        bare, product = self.of(BARE), self.of(PRODUCT)
        concurrencies = "/".join(str(c.concurrency) for c in bare)
        text = (f"HTTP client floor: {_per_call(bare)} ms CPU per call (aiohttp, concurrency "
                f"{concurrencies})")
        return f"{text}; the product's enrichment call: {_per_call(product)} ms" if product \
            else text

    def note(self) -> str:
        """What the floor means for target 3, for its verdict."""
        return (f"one enrichment call per record costs at least {self.floor_ms:.2f} ms: "
                "the HTTP client floor")

    def as_dict(self) -> dict[str, Any]:
        return {"floor_ms": self.floor_ms, "costs": [c.as_dict() for c in self.costs]}


def _per_call(costs: list[CallCost]) -> str:
    return "/".join(f"{c.cpu_ms_per_call:.3f}" for c in costs)
