"""The external peer's row: Microsoft's Python client on the nightly job (bench/msclient.py) in
its own process, against fresh emulators.

The client needs https and ``EntityDefinitions`` metadata from the emulator. ``peer_blocker``
checks both (and that the package is installed); until the emulator offers them the row names
what it waits for instead of figures.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Final

import aiohttp

from bench.ceiling import Ceiling
from bench.figures import Result
from bench.proctree import TreeSampler
from bench.runbaseline import LOG_DIR, emulator_cpu_s, get_json, start_emulators, wait_bounded
from bench.scenarios import RowSpec, Scale
from sync.definition import DEFAULT_DEFINITION
from sync.local.azurite import ROOT
from sync.local.emulators.enrichment import EnrichmentConfig
from sync.local.processes import Children
from sync.local.stack import local_token

HTTPS_OPTION: Final = "--https"
"""The emulator option that serves https with a certificate made at start (if it has one)."""
CA_BUNDLE_KEY: Final = "ca_bundle"
"""Where the emulator's stats name its certificate's file, for ``REQUESTS_CA_BUNDLE`` (else the
bench's own ``REQUESTS_CA_BUNDLE`` is used; without either the certificate is not trusted and
the row waits)."""
METADATA: Final = (
    ("/api/data/v9.2/EntityDefinitions",
     {"$select": "LogicalName,EntitySetName,PrimaryIdAttribute",
      "$filter": "LogicalName eq 'account'"}),
    ("/api/data/v9.2/EntityDefinitions(LogicalName='account')/Attributes/"
     "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
     {"$select": "LogicalName", "$expand": "OptionSet($select=Options)"}),
)
"""What client 1.1.0 asks before it writes to a table: the entity set and primary key
(``_entity_set_from_schema_name``), then the table's choice columns (it retries a 404 five
times, then fails the write)."""
WAITING: Final = "needs emulator https/metadata"
PACKAGE: Final = "PowerPlatform-Dataverse-Client==1.1.0"


def emulator_has_https() -> bool:
    """Whether ``python -m sync emulator dataverse`` offers ``--https``."""
    shown = subprocess.run([sys.executable, "-m", "sync", "emulator", "dataverse", "--help"],
                           cwd=ROOT, capture_output=True, text=True, check=False)
    return HTTPS_OPTION in shown.stdout


async def has_metadata(dataverse_url: str, ca_bundle: str | None) -> bool:
    """Whether the emulator answers, over a certificate the client will trust, the metadata the
    client asks for before it writes."""
    trust = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else True
    headers = {"Authorization": f"Bearer {local_token()}"}
    found: list[Any] = []
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            for path, query in METADATA:
                async with session.get(f"{dataverse_url}{path}", params=query,
                                       ssl=trust) as answer:
                    body = await answer.json() if answer.status == 200 else {}
                found.append(body.get("value") if isinstance(body, dict) else None)
    except (aiohttp.ClientError, ValueError):
        return False
    entity_sets = found[0]
    return (all(isinstance(value, list) for value in found) and bool(entity_sets)
            and "EntitySetName" in entity_sets[0])


def peer_blocker(dataverse_url: str, ca_bundle: str | None) -> str:
    """Why the client cannot run against this emulator; empty when it can."""
    if importlib.util.find_spec("PowerPlatform") is None:
        return f"needs {PACKAGE} installed"
    if not dataverse_url.startswith("https://") or not asyncio.run(
            has_metadata(dataverse_url, ca_bundle)):
        return WAITING
    return ""


def run_peer_row(spec: RowSpec, scale: Scale, ceiling: Ceiling) -> Result:
    records = spec.records
    https = (HTTPS_OPTION,) if emulator_has_https() else ()
    children = Children(LOG_DIR)
    try:
        emulators = start_emulators(children, spec, scale, records, https)
        stats = asyncio.run(get_json(f"{emulators.dataverse_url}/_emulator/stats"))
        ca_bundle = stats.get(CA_BUNDLE_KEY) or os.environ.get("REQUESTS_CA_BUNDLE")
        blocker = peer_blocker(emulators.dataverse_url, ca_bundle)
        with TreeSampler(os.getpid()) as sampler:
            tally = {} if blocker else _run(spec, scale, emulators.dataverse_url,
                                            emulators.enrichment_url, ca_bundle)
    finally:
        children.stop_all()
    result = peer_result(spec, scale, ceiling, records, tally, blocker)
    result.beside_cpu_s = emulator_cpu_s(sampler) if not blocker else {}
    return result


def _run(spec: RowSpec, scale: Scale, dataverse_url: str, enrichment_url: str,
         ca_bundle: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "job.json"
        args = [sys.executable, "-m", "bench.msclient", "--dataverse-url", dataverse_url,
                "--enrichment-url", enrichment_url, "--token", local_token(),
                "--api-key", EnrichmentConfig().api_key, "--json-out", str(out),
                "--seconds", f"{scale.peer_timeout_s - scale.grace_s:g}",
                "--mapping", json.dumps(DEFAULT_DEFINITION["mapping"])]
        env = {**os.environ, **({"REQUESTS_CA_BUNDLE": ca_bundle} if ca_bundle else {})}
        process = subprocess.Popen(args, cwd=ROOT, env=env)
        cpu_s, rss_mib = wait_bounded(process, scale.peer_timeout_s + 30)
        tally: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    return {**tally, "cpu_s": cpu_s, "peak_rss_mib": rss_mib}


def peer_result(spec: RowSpec, scale: Scale, ceiling: Ceiling, records: int,
                tally: dict[str, Any], blocker: str) -> Result:
    result = Result(name=spec.name, kind=spec.kind, scenario=spec.scenario.name, mode=spec.mode,
                    note=spec.note, seeded=records, window_s=scale.window_s,
                    ceiling_per_s=ceiling.mode_per_s(spec.mode),
                    overall_ceiling_per_s=ceiling.overall_per_s, status=blocker)
    if blocker:
        return result
    if "written" not in tally:
        result.status = "the client's job wrote no figures"
        return result
    result.written, result.failed = int(tally["written"]), int(tally["failed"])
    result.unfinished = max(0, records - result.written - result.failed)
    result.timeline = [(float(t), int(n)) for t, n in tally.get("timeline", [])]
    result.elapsed_s = result.timeline[-1][0] if result.timeline else 0.0
    result.throttled_by_code = {k: int(v) for k, v in tally["throttled_by_code"].items()}
    result.cpu_s, result.peak_rss_mib = float(tally["cpu_s"]), float(tally["peak_rss_mib"])
    first = "; ".join(f"{kind}: {message[:80]}" for kind, message in
                      tally.get("first_error", {}).items())
    result.note = f"{result.note}; first failures: {first}" if first else result.note
    return result
