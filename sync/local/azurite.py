"""Azurite from the project's node_modules, on free loopback ports, in a temporary folder.

Each run makes up its own storage accounts and keys (``AZURITE_ACCOUNTS``), so no key is ever
written down, and tests can take a fresh account each for full isolation.

Azurite answers SIGTERM by closing its listeners and then waits for every open client
connection to end, however long that takes; its data is thrown away with its folder. So a stop
is SIGTERM, ``SERVICE_STOP_S`` at most, then SIGKILL: it ends at once either way.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sync.local.processes import SERVICE_STOP_S, Children, signals_deferred, stop_processes

ROOT: Final = Path(__file__).resolve().parents[2]
AZURITE_BIN: Final = ROOT / "node_modules" / ".bin" / "azurite"
_LISTENING: Final = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at "
                               r"http://127\.0\.0\.1:(\d+)")
START_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class StorageAccount:
    """One Azurite account: its name, key and endpoints."""

    name: str
    key: str = field(repr=False)
    ports: dict[str, int]

    def endpoint(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}/{self.name}"

    @property
    def connection_string(self) -> str:
        """The full connection string with the ports this Azurite chose."""
        return (f"DefaultEndpointsProtocol=http;AccountName={self.name};AccountKey={self.key};"
                f"BlobEndpoint={self.endpoint('Blob')};QueueEndpoint={self.endpoint('Queue')};"
                f"TableEndpoint={self.endpoint('Table')};")


class Azurite:
    """A running Azurite; ``stop`` ends it and removes its folder."""

    def __init__(self, process: subprocess.Popen[str], folder: Path,
                 accounts: list[StorageAccount]) -> None:
        self.process = process
        self.folder = folder
        self.accounts = accounts

    def stop(self) -> None:
        stop_processes([self.process], SERVICE_STOP_S)
        if self.process.stdout is not None:
            self.process.stdout.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def azurite_command(folder: Path, ports: Mapping[str, int] | None = None) -> list[str]:
    """Azurite's command line: its data in ``folder``, on loopback, on ``ports`` by service
    (``Blob``, ``Queue``, ``Table``; free ones when None), without telemetry."""
    port = {name: str((ports or {}).get(name, 0)) for name in ("Blob", "Queue", "Table")}
    return [str(AZURITE_BIN), "--location", str(folder), "--blobHost", "127.0.0.1",
            "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1", "--blobPort", port["Blob"],
            "--queuePort", port["Queue"], "--tablePort", port["Table"],
            "--skipApiVersionCheck", "--loose", "--disableProductStyleUrl",
            "--disableTelemetry"]


def start_azurite(account_count: int = 1, children: Children | None = None) -> Azurite:
    """Start Azurite with ``account_count`` fresh accounts; wait until all three services listen.

    Given ``children``, Azurite is recorded there the moment it starts, so a stop signal during
    its start-up stops it too.
    """
    if not AZURITE_BIN.exists():
        raise FileNotFoundError(f"{AZURITE_BIN} is missing: run `npm ci` (make does it)")
    names_keys = [(f"sync{n:03d}", _new_key()) for n in range(account_count)]
    folder = Path(tempfile.mkdtemp(prefix="azurite-"))
    env = {**os.environ,
           "AZURITE_ACCOUNTS": ";".join(f"{name}:{key}" for name, key in names_keys)}
    with signals_deferred():
        process = subprocess.Popen(
            azurite_command(folder),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
            start_new_session=True)
        if children is not None:
            children.adopt("azurite", process, folder)
            children.cleanups.append(lambda: shutil.rmtree(folder, ignore_errors=True))
    try:
        ports = _wait_for_ports(process)
    except BaseException:  # a stop signal too: Azurite is stopped before it is handed out
        stop_processes([process], SERVICE_STOP_S)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    accounts = [StorageAccount(name, key, ports) for name, key in names_keys]
    return Azurite(process, folder, accounts)


def _new_key() -> str:
    return base64.b64encode(secrets.token_bytes(64)).decode("ascii")


def _wait_for_ports(process: subprocess.Popen[str]) -> dict[str, int]:
    ports: dict[str, int] = {}
    deadline_s = time.monotonic() + START_TIMEOUT_S
    assert process.stdout is not None  # noqa: S101 (Popen was given stdout=PIPE)
    while len(ports) < 3:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"Azurite exited early with code {process.wait()}")
        match = _LISTENING.search(line)
        if match:
            ports[match.group(1)] = int(match.group(2))
        if time.monotonic() > deadline_s:
            raise TimeoutError("Azurite did not start listening in time")
    _drain(process)
    return ports


def _drain(process: subprocess.Popen[str]) -> None:
    """Keep reading Azurite's output in the background so its pipe never fills."""
    stream = process.stdout
    if stream is not None:
        threading.Thread(target=lambda: [None for _ in stream], daemon=True).start()
