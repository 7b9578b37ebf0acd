"""The company profile the enrichment emulator serves for a domain: pure, so a run can be
verified."""

from __future__ import annotations

import hashlib
from typing import Final

_COUNTRIES: Final = ("Norway", "Germany", "Japan", "Brazil", "Canada", "Kenya", "India", "Chile")
_SECTORS: Final = ("software", "logistics", "retail", "energy", "health care", "manufacturing")


def profile_for(domain: str) -> dict[str, object]:
    """The profile the emulator serves for ``domain``; pure, so a run can be verified."""
    digest = hashlib.sha256(domain.encode("utf-8")).digest()
    name = domain.split(".", maxsplit=1)[0].capitalize()
    sector = _SECTORS[digest[2] % len(_SECTORS)]
    return {"domain": domain,
            "employees": 1 + int.from_bytes(digest[:2], "big") % 50_000,
            "country": _COUNTRIES[digest[3] % len(_COUNTRIES)],
            "description": f"{name}: {sector} company ({domain})"}
