"""The enrichment emulator's configuration and its state behind the routes: the rate limit and
the headers that announce it, the credits, the asks per domain, the tokens it issued."""

from __future__ import annotations

import math
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

from sync.local.emulators.enrichment.bound import Admissions, TokenBucket
from sync.local.emulators.enrichment.shapes import SHAPES, Shape
from sync.local.emulators.webapi.faults import FaultBook, Rule

API_KEY_HEADER: Final = "x-api-key"
IDENTITY_PATH: Final = "/msi/token"
"""The App Service managed identity endpoint the emulator also serves (``identity.py``)."""


@dataclass(frozen=True, slots=True)
class EnrichmentConfig:
    """Settings of the enrichment emulator."""

    api_key: str = field(default="local-enrichment-key", repr=False)
    rate_per_s: float = 500.0
    burst: int = 500
    latency_ms: float = 5.0
    seed: int = 1
    """Seed of the fault rules' rates."""
    fault_rules: tuple[Rule, ...] = ()
    """Fault rules in force from the start (more can be added at run time)."""
    shape: str = "today"
    """How it is asked and answers (``shapes.SHAPES``)."""
    out_of_credits_after: int | None = None
    """Answer 402 to every call once this many companies were asked; None: never."""
    identity_header: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)
    """What callers of the managed identity endpoint send in ``X-IDENTITY-HEADER``."""

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; one of {', '.join(SHAPES)}")


@dataclass
class Enrichment:
    """The emulator's state behind the routes."""

    config: EnrichmentConfig
    rules: FaultBook
    counts: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    buckets: list[TokenBucket] = field(default_factory=list)
    admissions: Admissions = field(default_factory=Admissions)
    asks: Counter[str] = field(default_factory=Counter)
    """Asks per domain (a shape that answers "later" first counts them)."""
    tokens: dict[str, str] = field(default_factory=dict)
    """Tokens the identity endpoint issued -> their audience."""

    @property
    def shape(self) -> Shape:
        return SHAPES[self.config.shape]

    def bucket(self, now_s: float) -> TokenBucket:
        if not self.buckets:
            self.buckets.append(TokenBucket(self.config.rate_per_s, self.config.burst, now_s))
        return self.buckets[0]

    def limit(self, now_s: float) -> float:
        """A call reaches the rate limit at ``now_s``: 0.0 when admitted, else the seconds
        until a token."""
        self.admissions.reached(now_s)
        wait_s = self.bucket(now_s).take(now_s)
        if wait_s == 0:
            self.admissions.admit(now_s)
        return wait_s

    def rate_headers(self, now_s: float, wait_s: float = 0.0) -> dict[str, str]:
        """The shape's rate-limit headers: on a 429 (``wait_s``) and on an answer."""
        style = self.shape.rate_headers
        if style == "retry-after":
            return {"Retry-After": str(max(1, math.ceil(wait_s)))} if wait_s else {}
        family = "X-RateLimit" if style == "x-ratelimit" else "RateLimit"
        tokens = 0.0 if wait_s else self.bucket(now_s).tokens(now_s)
        reset_s = wait_s or (self.config.burst - tokens) / self.config.rate_per_s
        return {f"{family}-Limit": str(self.config.burst),
                f"{family}-Remaining": str(math.floor(tokens)),
                f"{family}-Reset": str(max(1, math.ceil(reset_s)))}

    def out_of_credits(self, inputs: int = 1) -> bool:
        """Whether a call of ``inputs`` companies finds the credits spent; if not, it spends
        them now (before its answer: calls in flight cannot overrun the credits)."""
        most = self.config.out_of_credits_after
        if most is None:
            return False
        if self.counts["credits"] + inputs > most:
            return True
        self.counts["credits"] += inputs
        return False

    def stats_json(self) -> dict[str, Any]:
        """The answers by status, the faults, what was served (the 200s), the calls and the
        inputs they carried, the distinct domains answered and the asks for a domain already
        asked (``asked_again``: a paid call made twice), the limit and the run's bound
        (``bound.py``)."""
        rate_per_s, burst = self.config.rate_per_s, self.config.burst
        return {**self.counts, "faults": dict(self.faults), "served": self.counts["200"],
                "domains": len(self.asks),
                "asked_again": sum(count - 1 for count in self.asks.values()),
                "shape": self.config.shape,
                "limit": {"rate_per_s": rate_per_s, "burst": burst,
                          "buckets": len(self.buckets)},
                "ceiling_per_s": rate_per_s, "run": self.admissions.as_json(rate_per_s, burst)}

    def injected(self, rule: Rule) -> Rule:
        self.faults[rule.name] += 1
        return rule


ENRICHMENT_STATE: Final = web.AppKey("enrichment", Enrichment)
