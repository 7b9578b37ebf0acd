"""The local stack's Dataverse environments: one Web API emulator each, the hosts' settings
that reach them, and the checks after the run, environment by environment."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from sync.config.table_definition import SyncDefinition, parse_definition
from sync.local.dryrunlocal import dry_run_definition
from sync.local.lanes import DEFAULT, Layout, lane_settings
from sync.local.processes import Children
from sync.local.verify import Verification, emulator_stats, verify

URL_WAIT_S: Final = 60.0
SEED_OPTION: Final = "--seed"


def emulator_name(environment: str) -> str:
    """The process (and log) name of an environment's emulator: today's name for one."""
    return "dataverse-emulator" if environment == DEFAULT else f"dataverse-emulator-{environment}"


def emulator_args(environment_number: int, records: int, extra: tuple[str, ...]) -> list[str]:
    """``python -m sync emulator dataverse`` options of the ``environment_number``-th (from 1)
    environment: the same configuration for all, each its own data (its own seed, so record
    ids differ between environments), unless ``extra`` names a seed itself."""
    seed = [] if environment_number == 1 else [SEED_OPTION, str(environment_number)]
    return ["emulator", "dataverse", "--records", str(records), *seed, *extra]


def start_dataverse(children: Children, layout: Layout, records: int,
                    extra: tuple[str, ...]) -> dict[str, str]:
    """Start one emulator per environment, each seeded; answer environment -> URL."""
    urls: dict[str, str] = {}
    for number, name in enumerate(layout.environment_names, 1):
        _, urls[name] = children.start(emulator_name(name), emulator_args(number, records, extra),
                                       wait_for_url_s=URL_WAIT_S)
    return urls


def opaque_token() -> str:
    """A made-up token that is not a JWT: the emulator keys its user by a hash of the whole
    token, so each identity's ``<token>-<identity>`` is a user of its own (a JWT's user is its
    ``oid`` claim, the same whatever is appended)."""
    return f"local-{secrets.token_hex(16)}"


def base_definition(environ: Mapping[str, str], dry_run: bool) -> dict[str, Any]:
    """Every definition's fields: the environment's ``SYNC_DEFINITION`` (JSON or ``@path``;
    the default accounts definition when unset), with ``dry_run`` set when asked."""
    if dry_run:
        found: dict[str, Any] = json.loads(dry_run_definition(environ))
        return found
    return asdict(parse_definition(environ.get("SYNC_DEFINITION") or None))


def dataverse_settings(layout: Layout, urls: Mapping[str, str], environ: Mapping[str, str],
                       dry_run: bool) -> dict[str, str]:
    """The hosts' settings that reach the environments: ``DATAVERSE_URL`` for one lane (and
    ``SYNC_DEFINITION`` for a dry run), else ``SYNC_ENVIRONMENTS`` and ``SYNC_DEFINITIONS``
    (the stack then leaves ``DATAVERSE_URL`` and ``SYNC_DEFINITION`` out)."""
    if layout.single:
        settings = {"DATAVERSE_URL": urls[DEFAULT]}
        if dry_run:
            settings["SYNC_DEFINITION"] = dry_run_definition(environ)
        return settings
    return lane_settings(layout, urls, base_definition(environ, dry_run))


def host_environment(base: Mapping[str, str], layout: Layout, urls: Mapping[str, str],
                     dry_run: bool) -> dict[str, str]:
    """``base`` (the process environment and the stack's settings) with the Dataverse
    settings of ``layout``; a static token of its own unless one is given."""
    env = dict(base)
    if layout.single:
        env.setdefault("DATAVERSE_STATIC_TOKEN", local_token())
    else:
        env.setdefault("DATAVERSE_STATIC_TOKEN", opaque_token())
        for replaced in ("DATAVERSE_URL", "SYNC_DEFINITION", "DATAVERSE_CLIENT_ID"):
            env.pop(replaced, None)
    env.update(dataverse_settings(layout, urls, base, dry_run))
    return env


def local_token() -> str:
    """An unsigned JWT naming a made-up application user: what the emulators accept."""
    def part(data: dict[str, str]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    claims = {"oid": str(uuid.uuid4()), "sub": "sync-local", "aud": "local-emulator"}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@dataclass(frozen=True, slots=True)
class Checked:
    """What one environment's emulator says after the run."""

    environment: str
    stats: dict[str, Any]
    verification: Verification | None


async def check_environments(urls: Mapping[str, str], definition: SyncDefinition,
                             dead_letters: set[str], *, verify_records: bool,
                             shape: str = "today") -> list[Checked]:
    """Each environment's stats and (``verify_records``) its records: every one enriched (as
    the enrichment emulator's ``shape`` answers) or dead-lettered, none created."""
    found = []
    for name, url in urls.items():
        stats = await emulator_stats(url)
        check = (await verify(url, definition, dead_letters, stats, shape) if verify_records
                 else None)
        found.append(Checked(name, stats, check))
    return found


def combined(checks: list[Checked]) -> Verification | None:
    """The environments' verifications added up (None when none was verified)."""
    verified = [c.verification for c in checks if c.verification is not None]
    if not verified:
        return None
    total = Verification()
    for each in verified:
        total.add(each)
    return total


def check_line(check: Verification) -> str:
    """``2,000/2,000 enriched, 0 dead-lettered, 0 unaccounted, 0 created`` (and ``N
    cancelled,`` before the unaccounted when a cancel stopped some)."""
    cancelled = f"{check.cancelled:,} cancelled, " if check.cancelled else ""
    return (f"{check.enriched:,}/{check.records:,} enriched, {check.dead_lettered:,} "
            f"dead-lettered, {cancelled}{check.unaccounted_count:,} unaccounted, "
            f"{check.created:,} created")
