"""``sync`` as one command: installed from the repo with its entry point, ``--help`` that imports
no SDK, ``--version``, ``--debug`` with secrets redacted, one error format, settings read as
Core Tools reads them, confirmation on a terminal, a progress line that fits."""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from azure.storage.queue.aio import QueueClient

from sync import cli
from sync.config.settings import StorageSettings
from sync.config.storage_names import POISON_QUEUE
from sync.local.azurite import StorageAccount
from sync.ops.debug import RedactingFormatter, redact, secrets_in
from sync.ops.progress import ProgressLine, fit, progress_text
from sync.ops.target import TargetError, app_settings

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("azure", "aiohttp", "sync.local", "sync.state", "sync.ops.target", "sync.services")


def sync_run(*argv: str, env: dict[str, str] | None = None, cwd: Path = ROOT,
             **kwargs: object) -> subprocess.CompletedProcess[str]:
    """``python -m sync ARGV`` in a fresh process."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "sync", *argv], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=60, check=False,
                          **kwargs)  # type: ignore[call-overload]


def test_help_imports_no_sdk_and_no_command_module() -> None:
    result = sync_run("--help", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if "|" in line]
    assert "sync.cli" in imported
    assert [name for name in imported if name.startswith(HEAVY)] == []
    for name in ("pause", "deadletters", "rollback", "enqueue", "exit codes:", "130"):
        assert name in result.stdout


def test_version_is_the_projects() -> None:
    result = sync_run("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"sync {cli.version()}")
    assert cli.version() == "0.1.0"


@pytest.mark.timeout(180)
def test_the_installed_entry_point_is_sync(tmp_path: Path) -> None:
    """Built from a copy of the repo (nothing written into the checkout), installed into a
    fresh virtual environment offline; ``sync`` runs without the repo on the path."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "requirements.in", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "sync", source / "sync",
                    ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "-w", str(wheels), str(source)],
                   check=True, timeout=120)
    (wheel,) = wheels.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True, timeout=120)
    command = venv / "bin" / "sync"
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    version = subprocess.run([str(command), "--version"], capture_output=True, text=True,
                             cwd=tmp_path, env=environ, timeout=60, check=True)
    assert version.stdout.strip() == "sync 0.1.0"
    helped = subprocess.run([str(command), "--help"], capture_output=True, text=True,
                            cwd=tmp_path, env=environ, timeout=60, check=True)
    assert "usage: sync" in helped.stdout
    assert "not confirmed" in helped.stdout


def test_every_error_has_one_format(tmp_path: Path) -> None:
    environ = {"AzureWebJobsStorage": "", "SYNC_LOCAL_RUN_DIR": str(tmp_path / "none")}
    for argv, code in ((["status", "--local"], 2), (["status", "--watch", "0.1"], 2),
                       (["enqueue", "--file", "missing.jsonl"], 2),
                       (["pause", "--account", "Bad_Name"], 2)):
        result = sync_run(*argv, env=environ, cwd=tmp_path)
        assert result.returncode == code, (argv, result.stderr)
        assert result.stderr.startswith("sync: error: "), (argv, result.stderr)
        assert "Traceback" not in result.stderr


def test_local_settings_values_are_read_unless_the_environment_sets_them(
        tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text(json.dumps(
        {"IsEncrypted": False, "Values": {"A": "file", "B": "file", "C": "file"}}))
    merged = app_settings({"A": "env", "B": "", "D": "env"}, tmp_path)
    assert merged == {"A": "env", "B": "file", "C": "file", "D": "env"}
    (tmp_path / "local.settings.json").write_text(json.dumps({"IsEncrypted": True,
                                                              "Values": {}}))
    with pytest.raises(TargetError, match="func settings decrypt"):
        app_settings({}, tmp_path)
    assert app_settings({"A": "env"}, tmp_path / "elsewhere") == {"A": "env"}


async def test_a_command_finds_its_storage_in_local_settings(account: StorageAccount,
                                                             tmp_path: Path) -> None:
    (tmp_path / "local.settings.json").write_text(json.dumps(
        {"IsEncrypted": False, "Values": {"AzureWebJobsStorage": account.connection_string}}))
    result = sync_run("init-storage", env={"AzureWebJobsStorage": ""}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "are in place" in result.stdout


def test_redaction_masks_keys_signatures_tokens_and_secret_settings() -> None:
    key = "c2VjcmV0LWtleS1vZi10aGUtYWNjb3VudA=="
    environ = {"AzureWebJobsStorage": f"DefaultEndpointsProtocol=http;AccountName=a;"
                                      f"AccountKey={key};", "ENRICHMENT_API_KEY": "k-123456",
               "ENRICHMENT_API_KEY_CONTACTS": "other-key-9", "SYNC_BATCH_SIZE": "100000"}
    secrets = secrets_in(environ)
    assert "100000" not in secrets
    lines = [f"connecting with AccountKey={key}; and more",
             "GET https://a.blob/x?sv=2024&sig=abcDEF%2B123&se=1",
             "Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi.payload.sig",
             'token answer {"access_token": "eyJhbGciOi", "expires_in": 3599}',
             "key k-123456 and other-key-9 in a message"]
    masked = [redact(line, secrets) for line in lines]
    for secret in (key, "abcDEF", "eyJ0eXAi", "eyJhbGciOi", "k-123456", "other-key-9"):
        assert all(secret not in line for line in masked), secret
    assert masked[1] == "GET https://a.blob/x?sv=2024&sig=***&se=1"
    record = logging.LogRecord("azure.core", logging.DEBUG, __file__, 1,
                               "headers: %s", ({"x-api-key": "k-123456"},), None)
    assert "k-123456" not in RedactingFormatter(secrets).format(record)


async def test_debug_shows_the_sdks_requests_and_never_the_key(
        storage: StorageSettings, account: StorageAccount, tmp_path: Path) -> None:
    token = "static-token-0123456789"
    result = sync_run("--debug", "status", cwd=tmp_path,
                      env={"AzureWebJobsStorage": account.connection_string,
                           "DATAVERSE_STATIC_TOKEN": token})
    assert result.returncode == 1, result.stderr
    assert "azure.core.pipeline.policies.http_logging_policy" in result.stderr
    assert "Request URL" in result.stderr
    key = account.connection_string.split("AccountKey=")[1].split(";")[0]
    assert key not in result.stderr + result.stdout
    assert token not in result.stderr + result.stdout
    assert "sync: error: no runs yet" in result.stderr
    quiet = sync_run("status", cwd=tmp_path, env={"AzureWebJobsStorage":
                                                  account.connection_string})
    assert "http_logging_policy" not in quiet.stderr


async def test_purge_asks_on_a_terminal_and_does_what_the_answer_says(
        storage: StorageSettings, tmp_path: Path) -> None:
    async with QueueClient.from_connection_string(str(storage.connection_string),
                                                  POISON_QUEUE) as queue:
        await queue.send_message("a raw message the host gave up on")
    environ = {"AzureWebJobsStorage": str(storage.connection_string)}
    for answer, code in ((b"n\n", 3), (b"y\n", 0)):
        primary, secondary = pty.openpty()
        try:
            os.write(primary, answer)
            result = sync_run("poison", "purge", env=environ, cwd=tmp_path, stdin=secondary)
        finally:
            os.close(primary)
            os.close(secondary)
        assert result.returncode == code, result.stderr
        assert "This deletes 1 poison messages (every one: no filter was given)" in result.stderr
        assert "Go on? [y/N]" in result.stderr
    assert "deleted 1 poison messages from the index and 1 messages" in result.stdout
    gone = sync_run("poison", "list", env=environ, cwd=tmp_path)
    assert "no poison messages match" in gone.stdout


class Terminal(io.StringIO):
    """What a terminal receives (the line is drawn only on one)."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("columns", "text", "shown"), [
    pytest.param(80, "x" * 100, "x" * 78 + "…", id="cut-to-one-column-less"),
    pytest.param(80, "x" * 79, "x" * 79, id="exactly-fits"),
    pytest.param(1, "abc", "…", id="a-tiny-terminal"),
])
def test_a_progress_line_never_wraps(columns: int, text: str, shown: str) -> None:
    assert fit(text, columns) == shown
    assert len(fit(text, columns)) <= max(columns - 1, 1)


def test_progress_is_drawn_in_place_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "30")
    screen, pipe = Terminal(), io.StringIO()
    for out in (screen, pipe):
        line = ProgressLine("replaying dead letters: messages", 4, out=out)
        line.update(4)
        line.close()
    assert pipe.getvalue() == ""
    drawn = screen.getvalue().split("\r\x1b[K")
    assert drawn == ["", "replaying dead letters: mess…", ""]
    assert progress_text("reading", 7, None) == "reading: 7"
