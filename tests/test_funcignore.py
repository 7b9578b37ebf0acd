"""What the deployment package holds: .funcignore (gitignore syntax, as Core Tools and azd read
it) applied to the repository's files and to the local state a checkout accumulates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pathspec
import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCAL_STATE = [  # made by running things locally, never committed
    "local.settings.json", ".azure/prod/.env", ".azure/config.json", ".local-run/storage.json",
    ".local-run/host-1.log", ".azurite/__azurite_db_queue__.json",
    "__azurite_db_table__.json", "__queuestorage__/x", ".venv/bin/python",
    ".venv-checkov/bin/checkov", "node_modules/azurite/package.json",
    "sync/__pycache__/worker.cpython-311.pyc", ".mypy_cache/3.11/x.json",
    ".pytest_cache/v/cache/nodeids", ".ruff_cache/CACHEDIR.TAG", ".env", ".coverage",
    "htmlcov/index.html", ".vscode/settings.json", "bench/results/run.json",
]
SHIPPED = ["function_app.py", "host.json", "requirements.txt"]


def ignored() -> pathspec.PathSpec:
    lines = (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
    return pathspec.GitIgnoreSpec.from_lines(lines)


def tracked() -> list[str]:
    listing = subprocess.run(["git", "ls-files"], cwd=ROOT, check=True,  # noqa: S607
                             capture_output=True, text=True).stdout
    return listing.splitlines()


def package() -> set[str]:
    spec = ignored()
    return {path for path in tracked() + LOCAL_STATE if not spec.match_file(path)}


def test_the_package_holds_the_app_and_its_code() -> None:
    kept = package()
    assert set(SHIPPED) <= kept
    code = {p for p in tracked() if p.startswith("sync/") and not p.startswith("sync/local/")}
    assert code
    assert code <= kept


@pytest.mark.parametrize("path", LOCAL_STATE)
def test_local_state_stays_out(path: str) -> None:
    assert ignored().match_file(path), f"{path} would be deployed"


def test_only_the_app_ships() -> None:
    outside = sorted(p for p in package() if p not in SHIPPED and not p.startswith("sync/"))
    assert outside == []


def test_every_module_the_app_loads_ships() -> None:
    """function_app.py imported as the worker does: each sync module it loads is packaged."""
    env = {**os.environ, "AzureWebJobsStorage": "UseDevelopmentStorage=true",
           "DATAVERSE_URL": "https://contoso.crm.dynamics.com",
           "ENRICHMENT_URL": "https://enrich.example.com", "ENRICHMENT_API_KEY": "k"}
    script = ("import json, sys, function_app; print(json.dumps(sorted(m.__file__ for m in "
              "list(sys.modules.values()) if m.__name__.startswith('sync') and "
              "getattr(m, '__file__', None))))")
    answer = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, check=True,
                            capture_output=True, text=True)
    loaded = {str(Path(f).relative_to(ROOT)) for f in json.loads(answer.stdout)}
    assert loaded
    assert loaded <= package()
