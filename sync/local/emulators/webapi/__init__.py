"""A Dataverse Web API emulator that behaves as the service protection limits are documented.

Several web servers behind one endpoint (the ``ARRAffinity`` cookie pins a client to one);
per user and per server sliding windows on request count, execution time and concurrency, with
the real 429 codes, messages and ``Retry-After``; ``x-ms-dop-hint`` and the
``x-ms-ratelimit-*`` headers; collections with ``$select``, ``$filter``, ``$top``, paging and
change tracking; PATCH/POST/DELETE by id or alternate key with ``If-Match`` (``*`` or an ETag)
and ``If-None-Match``; ``$batch`` with atomic changesets and ``$n`` references;
``CreateMultiple``/``UpdateMultiple``/``UpsertMultiple``; faults on demand; a time scale.
Query options it does not implement (``$orderby``, ``$expand``, ``$count``...) answer 501
rather than being ignored.

Admin endpoints (no auth, never throttled, never counted):

- ``GET /_emulator/stats``: requests per server, 429s by code, announced Retry-After seconds,
  faults, peak concurrency per user (over every server) and per server, the 429s after the
  first window,
  records created/updated/deleted, the DOP hint, and ``ceiling``: records/s per write mode
  (``single``, ``batch``, ``bulk``) and ``overall``; ``users``: per user (the token's subject,
  ``servers.user_of``) requests admitted, records written, 429s by facet (``requests``,
  ``execution``, ``concurrency``) and peak concurrency; ``limits``: each user's limits per
  server and the servers; ``in_flight_vs_hint``: the requests in flight each admission found,
  per server and per user, against the hint in force then (``hint_watch.py``);
- ``GET /_emulator/records?entityset=accounts``: ``{"value": [every row]}``, streamed; with
  ``&top=N`` (at most 5,000) and ``&after=KEY``, a page of rows in key order and, when more
  follow, ``"after"``: the key to ask the next page after (``rows_view.py``);
- ``PATCH /_emulator/config``: change ``dop_hint``, the fault rates, costs or limits at run time;
- ``POST /_emulator/reset-stats``: every counter back to zero (records included);
- ``POST|GET|DELETE /_emulator/faults``: add, list, clear fault rules (``faults.py``).

Table metadata (``EntityDefinitions``) as Microsoft's Python client asks for it, and https
(``start_emulator(..., https=True)``) with a throwaway certificate authority.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from sync.clock import SYSTEM_CLOCK, Clock
from sync.local.emulators.webapi.app import create_app
from sync.local.emulators.webapi.config import EmulatorConfig
from sync.local.emulators.webapi.tls import make_certificates

__all__ = ["EmulatorConfig", "RunningEmulator", "create_app", "start_emulator"]


@dataclass
class RunningEmulator:
    """A served emulator: its org URL (the Web API is at ``{url}/api/data/v9.2/``) and, over
    https, the throwaway CA a client must trust (``REQUESTS_CA_BUNDLE``)."""

    url: str
    runner: web.AppRunner
    ca_path: Path | None = None

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_emulator(config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0,
                         clock: Clock = SYSTEM_CLOCK, *, https: bool = False) -> RunningEmulator:
    """Serve the emulator on ``host:port`` (0 picks a free port); limits and fault windows on
    ``clock``; with ``https``, behind a certificate made now for localhost and 127.0.0.1."""
    runner = web.AppRunner(create_app(config, clock), access_log=None)
    await runner.setup()
    certificates = make_certificates() if https else None
    context = certificates.server_context() if certificates else None
    await web.TCPSite(runner, host, port, ssl_context=context).start()
    bound = runner.addresses[0]
    scheme = "https" if https else "http"
    return RunningEmulator(url=f"{scheme}://{bound[0]}:{bound[1]}", runner=runner,
                           ca_path=certificates.ca_path if certificates else None)
