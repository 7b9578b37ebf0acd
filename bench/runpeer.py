"""The external peer's row: Microsoft's Python client on the nightly job (bench/msclient.py) in
its own process, against fresh emulators, the Dataverse one served over https (``--https``: a
certificate authority made at start, trusted through ``REQUESTS_CA_BUNDLE``).

``peer_blocker`` checks first that the package is installed, that the emulator named its
certificate and that it answers the metadata the client asks for; a row that cannot run says
which instead of showing figures.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import aiohttp

from bench.ceiling import Ceiling
from bench.figures import Result
from bench.proctree import TreeSampler
from bench.runbaseline import (
    LOG_DIR,
    WAIT_POLL_S,
    emulator_cpu_s,
    start_emulators,
    wait_bounded,
)
from bench.scenarios import RowSpec, Scale
from sync.config.table_definition import DEFAULT_DEFINITION
from sync.local.azurite import ROOT
from sync.local.emulators.enrichment import EnrichmentConfig
from sync.local.processes import Children
from sync.local.stack import local_token

HTTPS_OPTION: Final = "--https"
"""The emulator option that serves https behind a certificate authority made at start."""
CA_LINE: Final = re.compile(r"REQUESTS_CA_BUNDLE=(\S+)")
"""How the emulator names that authority's certificate on its output (one line after its URL)."""
CA_WAIT_S: Final = 10.0
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
times, then fails the write). ``has_metadata`` checks the emulator answers these before the row
runs, so a row that fails on metadata says so instead of counting 60,000 failed records."""
NO_METADATA: Final = "the emulator does not answer the client's metadata requests"
NO_CA: Final = "the emulator printed no certificate to trust"
PACKAGE: Final = "PowerPlatform-Dataverse-Client==1.1.0"
LOCAL_HOSTS: Final = "127.0.0.1,localhost"


def ca_bundle_in(log_path: Path, timeout_s: float = CA_WAIT_S) -> str | None:
    """The certificate file the emulator's output (its log) names, waiting up to
    ``timeout_s`` for the line; None when it never appears."""
    deadline_s = time.monotonic() + timeout_s
    while True:
        text = log_path.read_text() if log_path.exists() else ""
        found = CA_LINE.search(text)
        if found:
            return found.group(1)
        if time.monotonic() >= deadline_s:
            return None
        time.sleep(WAIT_POLL_S)


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
    if not ca_bundle:
        return NO_CA
    if not dataverse_url.startswith("https://") or not asyncio.run(
            has_metadata(dataverse_url, ca_bundle)):
        return NO_METADATA
    return ""


def run_peer_row(spec: RowSpec, scale: Scale, ceiling: Ceiling) -> Result:
    records = spec.records
    children = Children(LOG_DIR)
    try:
        emulators = start_emulators(children, spec, scale, records, (HTTPS_OPTION,))
        ca_bundle = ca_bundle_in(emulators.dataverse_log)
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
        env = {**os.environ, "NO_PROXY": LOCAL_HOSTS, "no_proxy": LOCAL_HOSTS,
               **({"REQUESTS_CA_BUNDLE": ca_bundle} if ca_bundle else {})}
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
