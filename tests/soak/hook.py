"""The soak's enrichment: a definition's code hook that asks the enrichment emulator, with a
bug on purpose: for a website under ``bug-`` it adds text to a number before asking, as a hook
with a slip would (``sync.work.bugs``: poisoned alone with its type and trace hash)."""

from __future__ import annotations

import os
from typing import Any, Final

import aiohttp

from sync.config.enrichment_templates import domain_of
from sync.failures.errors import RecordFault, ServiceFault

BUG_PREFIX: Final = "bug-"
"""Domains whose record makes the hook raise ``TypeError``."""


async def company(columns: dict[str, Any], session: aiohttp.ClientSession) -> dict[str, Any]:
    """The company of the record's website, as the emulator answers it (``employees``,
    ``country``, ``description``); the emulator's 404 is the record's fault, any other
    refusal the service's."""
    domain = domain_of(str(columns["websiteurl"]))
    if domain.startswith(BUG_PREFIX):
        return {"employees": len(domain) + domain}  # type: ignore[operator]  # the bug
    url = f"{os.environ['ENRICHMENT_URL']}/v1/companies"
    headers = {"x-api-key": os.environ["ENRICHMENT_API_KEY"]}
    async with session.get(url, params={"domain": domain}, headers=headers) as answer:
        if answer.status == 404:
            raise RecordFault("enrichment", 404, "", f"no company for {domain}",
                              reason="not_enrichable")
        if answer.status != 200:
            raise ServiceFault("enrichment", f"{answer.status} from the enrichment API")
        found: dict[str, Any] = await answer.json()
    return found
