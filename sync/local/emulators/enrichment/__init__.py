"""An enrichment API emulator: deterministic company profiles per domain, its own rate limit,
and faults on demand.

In its default shape (``--shape``: ``shapes.py`` lists the others: People Data Labs, its bulk
endpoint, Clearbit-like, an Entra-protected in-house API), ``GET /v1/companies?domain=contoso.com``
with header ``x-api-key`` answers::

    {"domain": "contoso.com", "employees": 1234, "country": "Norway",
     "description": "Contoso: software company ..."}

The same domain always gets the same profile (``profile_for``), so a run can be checked. Domains
under ``.invalid`` answer 404 (a permanent error). Over ``rate_per_s`` (token bucket of ``burst``)
it answers 429 with ``Retry-After`` in seconds. ``GET /_emulator/stats`` (never limited nor
counted) counts answers by status (and the injected faults under ``faults``), the calls
``served`` (200s), the ``domains`` answered and the asks ``asked_again`` for a domain already
asked, the ``limit`` (``rate_per_s``, ``burst``), the steady ``ceiling_per_s``
and the ``run`` so far: ``elapsed_s`` from the first call to the last admitted one, the calls
``admitted`` and ``bound_calls``, the most a bucket admits in that time (``bound.py``);
``/_emulator/faults`` adds, lists and clears fault rules (``faults.py``), as does the
``--fault`` option. ``probes.py`` holds the greedy and oracle clients that prove the bound.
"""

from __future__ import annotations

from sync.local.emulators.enrichment.app import (
    API_KEY_HEADER,
    EnrichmentConfig,
    create_app,
    start_enrichment,
)
from sync.local.emulators.enrichment.bound import TokenBucket, run_bound_calls
from sync.local.emulators.enrichment.cli import configure_parser, main
from sync.local.emulators.enrichment.profiles import profile_for
from sync.local.emulators.enrichment.shapes import SHAPES, Shape, answer_for, is_no_match

__all__ = ["API_KEY_HEADER", "SHAPES", "EnrichmentConfig", "Shape", "TokenBucket",
           "answer_for", "configure_parser", "create_app", "is_no_match", "main", "profile_for",
           "run_bound_calls", "start_enrichment"]
