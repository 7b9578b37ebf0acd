"""The shapes the enrichment emulator speaks: today's API and the documented shapes of the field.

A shape is where the input travels (query or JSON body, a domain or a website), how a caller
proves who it is (a key in a header or the query, a bearer key, a managed identity's token),
how the answer nests its fields, which status means "no such company", whether a company is
answered at once or first "later" (202, then 200 when asked again), and which rate-limit
headers it sends. Each shape's definition ships in ``examples/enrichment/<name>.json`` (the
tests hold the two together):

- ``today``: ``GET /v1/companies?domain=``, ``x-api-key``, flat, 404 for ``.invalid``;
- ``pdl`` (People Data Labs company enrich): ``GET /v5/company/enrich?website=``,
  ``X-Api-Key``, nested (``location.country``), 404 no match, ``X-RateLimit-*`` headers;
- ``pdl-bulk`` (its bulk endpoint): ``POST /v5/company/enrich/bulk`` with up to 100
  ``{"params": {...}, "metadata": {...}}`` requests, the key in the ``api_key`` query
  parameter, a list of answers each with its own status and the metadata echoed;
- ``clearbit`` (Clearbit-like company find): ``GET /v2/companies/find?domain=``, a bearer key,
  ``metrics.employees``, ``geo.country``, 202 on the first ask of a domain and 200 after;
- ``inhouse`` (an Entra-protected in-house API): ``POST /api/companies/enrich`` with
  ``{"website", "name"}``, a managed identity's token for ``INHOUSE_AUDIENCE``, the answer
  under ``company`` with ``offices[0].country``, 409 no match, ``RateLimit-*`` headers.

Besides ``.invalid`` domains, ``no_match_share`` of the domains (a hash draw, so a run can be
checked) have no company. Pure data and functions.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from sync.local.emulators.enrichment.profiles import profile_for

INHOUSE_AUDIENCE: Final = "api://enrichment-inhouse"


@dataclass(frozen=True, slots=True)
class Shape:
    """How one enrichment API is asked and answers."""

    name: str
    method: str = "GET"
    path: str = "/v1/companies"
    input_in: str = "query"
    """``query`` or ``json`` (the request's body)."""
    input_field: str = "domain"
    auth: str = "header"
    """``header``, ``query``, ``bearer`` or ``entra`` (a token the emulator issued)."""
    auth_name: str = "x-api-key"
    nesting: str = "flat"
    no_match_status: int = 404
    no_match_share: float = 0.0
    later_asks: int = 0
    """Asks of a domain answered 202 before it is answered 200."""
    rate_headers: str = "retry-after"
    """``retry-after``, ``x-ratelimit`` or ``ratelimit``."""
    bulk_path: str | None = None
    bulk_max: int = 100
    extra_field: str | None = None
    """A second input the body must carry (the in-house API's ``name``)."""


SHAPES: Final = {shape.name: shape for shape in (
    Shape("today"),
    Shape("pdl", path="/v5/company/enrich", input_field="website", auth_name="X-Api-Key",
          nesting="pdl", no_match_share=0.02, rate_headers="x-ratelimit"),
    Shape("pdl-bulk", path="/v5/company/enrich", input_field="website",
          auth="query", auth_name="api_key", nesting="pdl", no_match_share=0.02,
          rate_headers="x-ratelimit", bulk_path="/v5/company/enrich/bulk", bulk_max=100),
    Shape("clearbit", path="/v2/companies/find", auth="bearer", auth_name="Authorization",
          nesting="clearbit", no_match_share=0.02, later_asks=1),
    Shape("inhouse", method="POST", path="/api/companies/enrich", input_in="json",
          input_field="website", auth="entra", auth_name="Authorization", nesting="inhouse",
          no_match_status=409, no_match_share=0.02, rate_headers="ratelimit",
          extra_field="name"),
)}
"""Every shape by name."""


def is_no_match(domain: str, share: float) -> bool:
    """Whether the shape knows no company for ``domain``: ``.invalid``, or the hash draw."""
    if domain.endswith(".invalid"):
        return True
    draw = int.from_bytes(hashlib.sha256(f"no-match:{domain}".encode()).digest()[:4], "big")
    return draw / 2**32 < share


def answer_for(shape: Shape, domain: str) -> dict[str, Any]:
    """The shape's answer for ``domain``'s company (today's profile, nested its way)."""
    profile = profile_for(domain)
    name = domain.split(".", maxsplit=1)[0].capitalize()
    if shape.nesting == "pdl":
        return {"status": 200, "name": name.lower(), "website": domain,
                "employee_count": profile["employees"],
                "location": {"country": str(profile["country"]).lower(),
                             "name": f"{profile['country']}"},
                "summary": profile["description"], "likelihood": 9}
    if shape.nesting == "clearbit":
        return {"id": hashlib.sha256(domain.encode()).hexdigest()[:12], "name": name,
                "domain": domain, "metrics": {"employees": profile["employees"]},
                "geo": {"country": profile["country"]}, "description": profile["description"]}
    if shape.nesting == "inhouse":
        return {"company": {"domain": domain, "headcount": profile["employees"],
                            "offices": [{"country": profile["country"], "hq": True}],
                            "summary": profile["description"]}}
    return profile
