"""Microsoft's Python client (``PowerPlatform-Dataverse-Client`` 1.1.0) as its users write the
nightly job: read the accounts, enrich each, write ``UpdateMultiple`` chunks of 100 from 8
threads; no retry (the client does not retry 429s), so a failed chunk's records fail.

Run as ``python -m bench.msclient ...`` in its own process (the bench does this); it trusts the
emulator's certificate through ``REQUESTS_CA_BUNDLE``. It stops taking chunks after
``--seconds``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import requests

from sync.clients.enrichment import domain_of

THREADS: Final = 8
CHUNK: Final = 100
TABLE: Final = "account"
SAMPLE_EVERY_S: Final = 0.5


@dataclass
class JobTally:
    """What the nightly job did; written by several threads under ``lock``."""

    written: int = 0
    failed: int = 0
    throttled_by_code: Counter[str] = field(default_factory=Counter)
    failures_by_status: Counter[str] = field(default_factory=Counter)
    first_error: dict[str, str] = field(default_factory=dict)
    """The first message of each kind of failure, for the report."""
    timeline: list[tuple[float, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_json(self) -> dict[str, Any]:
        with self.lock:
            return {"written": self.written, "failed": self.failed,
                    "throttled_by_code": dict(self.throttled_by_code),
                    "failures_by_status": dict(self.failures_by_status),
                    "first_error": dict(self.first_error),
                    "timeline": list(self.timeline)}


class StaticCredential:
    """An azure-core ``TokenCredential`` that answers one fixed token."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *_scopes: str, **_kwargs: Any) -> Any:
        credentials = importlib.import_module("azure.core.credentials")
        return credentials.AccessToken(self.token, int(time.time()) + 3600)


@dataclass(frozen=True, slots=True)
class Job:
    """Where the nightly job reads, enriches and writes."""

    dataverse_url: str
    enrichment_url: str
    token: str
    api_key: str
    mapping: dict[str, str]
    seconds: float


def run_job(job: Job) -> JobTally:
    """The nightly job, bounded by ``job.seconds``."""
    module = importlib.import_module("PowerPlatform.Dataverse.client")
    client = module.DataverseClient(job.dataverse_url, StaticCredential(job.token))
    rows = list(client.records.list(TABLE, select=["accountid", "websiteurl"]))
    records = [(str(row["accountid"]), domain_of(str(row["websiteurl"]))) for row in rows]
    chunks = [records[n:n + CHUNK] for n in range(0, len(records), CHUNK)]
    tally, started_s = JobTally(), time.monotonic()
    done = threading.Event()
    sampler = threading.Thread(target=_sample, args=(tally, started_s, done), daemon=True)
    sampler.start()
    with ThreadPoolExecutor(THREADS) as pool:
        for chunk in chunks:
            pool.submit(_chunk, client, job, tally, chunk, started_s)
    done.set()
    sampler.join()
    tally.timeline.append((round(time.monotonic() - started_s, 2), tally.written))
    return tally


def _chunk(client: Any, job: Job, tally: JobTally, chunk: list[tuple[str, str]],
           started_s: float) -> None:
    if time.monotonic() - started_s > job.seconds:
        return
    changes = [_enrich(job, domain) for _, domain in chunk]
    try:
        client.records.update(TABLE, [record_id for record_id, _ in chunk], changes)
    except Exception as error:
        _failed(tally, error, len(chunk))
        return
    with tally.lock:
        tally.written += len(chunk)


def _enrich(job: Job, domain: str) -> dict[str, Any]:
    answer = requests.get(f"{job.enrichment_url}/v1/companies", params={"domain": domain},
                          headers={"x-api-key": job.api_key}, timeout=30)
    profile = answer.json() if answer.ok else {}
    return {column: profile.get(source) for column, source in job.mapping.items()}


def _failed(tally: JobTally, error: Exception, records: int) -> None:
    status = getattr(error, "status_code", None)
    details = getattr(error, "details", None) or {}
    with tally.lock:
        tally.failed += records
        kind = str(status or type(error).__name__)
        tally.failures_by_status[kind] += 1
        tally.first_error.setdefault(kind, str(error)[:300])
        if status == 429:
            tally.throttled_by_code[str(details.get("service_error_code", "429"))] += 1


def _sample(tally: JobTally, started_s: float, done: threading.Event) -> None:
    while not done.wait(SAMPLE_EVERY_S):
        tally.timeline.append((round(time.monotonic() - started_s, 2), tally.written))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.msclient", description=__doc__)
    for option in ("--dataverse-url", "--enrichment-url", "--token", "--api-key",
                   "--json-out", "--mapping"):
        parser.add_argument(option, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args(argv)
    job = Job(args.dataverse_url, args.enrichment_url, args.token, args.api_key,
              json.loads(args.mapping), args.seconds)
    Path(args.json_out).write_text(json.dumps(run_job(job).as_json()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
