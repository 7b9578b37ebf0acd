"""``python -m sync local --environments M --identities N``: the lanes' settings and figures.

M Web API emulators stand for M Dataverse environments (``env1..envM``, each its own port and
store); N identities (``id1..idN``) sync each of them. The hosts get ``SYNC_ENVIRONMENTS``
(every identity's client id ``null``) and ``SYNC_DEFINITIONS`` (one definition per environment,
named as it, the fields of ``SYNC_DEFINITION`` plus ``environment``). Identity ``X`` sends
``<DATAVERSE_STATIC_TOKEN>-X``, so the emulator (which keys its limits by the token's user,
``servers.user_of``) sees each identity as its own user. M = N = 1 is today's single lane
(``default``/``default``): no lane setting at all.

Pure functions: the stack starts the processes and reads the emulators' stats.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sync.config.lanes import identity_token
from sync.local.emulators.webapi.servers import user_of
from sync.local.emulators.webapi.stats import FACETS

DEFAULT: Final = "default"


@dataclass(frozen=True, slots=True)
class Layout:
    """How many environments and identities a local run has."""

    environments: int = 1
    identities: int = 1

    def __post_init__(self) -> None:
        if self.environments < 1 or self.identities < 1:
            raise ValueError("--environments and --identities must be at least 1")

    @property
    def single(self) -> bool:
        """One environment, one identity: today's run, no lane settings."""
        return self.environments == 1 and self.identities == 1

    @property
    def environment_names(self) -> tuple[str, ...]:
        if self.single:
            return (DEFAULT,)
        return tuple(f"env{n}" for n in range(1, self.environments + 1))

    @property
    def identity_names(self) -> tuple[str, ...]:
        if self.single:
            return (DEFAULT,)
        return tuple(f"id{n}" for n in range(1, self.identities + 1))


def lane_settings(layout: Layout, urls: Mapping[str, str],
                  definition: Mapping[str, Any]) -> dict[str, str]:
    """``SYNC_ENVIRONMENTS`` and ``SYNC_DEFINITIONS`` for ``urls`` (environment -> its
    emulator's URL), each definition ``definition`` in its environment; empty for one lane."""
    if layout.single:
        return {}
    identities = dict.fromkeys(layout.identity_names)
    environments = {name: {"url": urls[name], "identities": identities}
                    for name in layout.environment_names}
    definitions = {name: {**definition, "environment": name}
                   for name in layout.environment_names}
    return {"SYNC_ENVIRONMENTS": json.dumps(environments),
            "SYNC_DEFINITIONS": json.dumps(definitions)}


def users_of_identities(layout: Layout, token: str) -> dict[str, str]:
    """The emulator's user id (``servers.user_of``) of each identity's token -> the identity."""
    found: dict[str, str] = {}
    for identity in layout.identity_names:
        user = user_of(f"Bearer {identity_token(token, identity)}")
        if user is not None:
            found[user] = identity
    return found


@dataclass(frozen=True, slots=True)
class LaneFigures:
    """What one emulator counted for one identity's user."""

    environment: str
    identity: str
    written: int
    requests: int
    throttled_by_facet: dict[str, int]
    peak_concurrency: int
    rate_per_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"environment": self.environment, "identity": self.identity,
                "written": self.written, "requests": self.requests,
                "throttled_by_facet": self.throttled_by_facet,
                "peak_concurrency": self.peak_concurrency,
                "rate_per_s": round(self.rate_per_s, 3)}


@dataclass(frozen=True, slots=True)
class EnvironmentFigures:
    """One environment's lanes and the limits each user has there."""

    environment: str
    lanes: list[LaneFigures]
    limits: dict[str, float] = field(default_factory=dict)


def lane_figures(environment: str, stats: Mapping[str, Any], users: Mapping[str, str],
                 elapsed_s: float) -> EnvironmentFigures:
    """The lanes of ``environment`` from its emulator's ``/_emulator/stats``: one per identity
    in ``users`` (user id -> identity), in identity order, an idle identity with zeros."""
    counted: Mapping[str, Any] = stats.get("users", {})
    lanes = []
    for user, identity in sorted(users.items(), key=lambda item: item[1]):
        figures = counted.get(user, {})
        written = int(figures.get("written", 0))
        lanes.append(LaneFigures(
            environment=environment, identity=identity, written=written,
            requests=int(figures.get("requests", 0)),
            throttled_by_facet={facet: int(n) for facet, n in
                                figures.get("throttled_by_facet", {}).items()},
            peak_concurrency=int(figures.get("peak_concurrency", 0)),
            rate_per_s=written / elapsed_s if elapsed_s > 0 else 0.0))
    limits = {str(k): float(v) for k, v in stats.get("limits", {}).items()}
    return EnvironmentFigures(environment, lanes, limits)


def lane_lines(environments: list[EnvironmentFigures]) -> list[str]:
    """The summary's lane section: a line per lane, the limits under each environment."""
    if not environments:
        return []
    lines = ["", "Lanes (environment/identity: records written, records/s over the run, "
                 "429s by facet, peak requests in flight)"]
    for found in environments:
        lines += [lane_line(lane) for lane in found.lanes]
        if found.limits:
            lines.append(f"    {limits_line(found.limits)}")
    return lines


def lane_line(lane: LaneFigures) -> str:
    """``  env1/id1      1,000 written     50.0 rec/s  429s requests 2, execution 0, ...``"""
    facets = ", ".join(f"{facet} {lane.throttled_by_facet.get(facet, 0):,}" for facet in FACETS)
    name = f"{lane.environment}/{lane.identity}"
    return (f"  {name:<16} {lane.written:>9,} written {lane.rate_per_s:>8.1f} rec/s  "
            f"429s {facets}  peak {lane.peak_concurrency} in flight  "
            f"{lane.requests:,} requests")


def limits_line(limits: Mapping[str, float]) -> str:
    """Each user's limits on each web server of the environment."""
    servers = int(limits.get("servers", 1))
    return (f"each user, on each of {servers} server(s): {int(limits['max_requests']):,} "
            f"requests and {limits['max_exec_ms']:,.0f} ms of execution per "
            f"{limits['window_s']:g} s window, {int(limits['max_concurrent'])} in flight "
            f"(so at most {int(limits['max_concurrent']) * servers} in flight in all)")
