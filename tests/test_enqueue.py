"""``python -m sync enqueue`` checks what it builds before it sends: a batch prefix that would
make invalid batch ids, or a message the worker would refuse, sends nothing (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from azure.storage.queue.aio import QueueClient

from sync.config.settings import StorageSettings
from sync.config.storage_names import BATCH_QUEUE
from sync.failures.errors import ContractError
from sync.local.azurite import StorageAccount
from sync.local.enqueue import MAX_PREFIX_CHARS, check_messages, check_prefix
from sync.message.contract import Message, RecordRef

ROOT = Path(__file__).parents[1]


def enqueue(account: StorageAccount, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "AzureWebJobsStorage": account.connection_string}
    return subprocess.run([sys.executable, "-m", "sync", "enqueue", "--file", str(path), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def some_records(path: Path, count: int = 3) -> Path:
    path.write_text("".join(json.dumps({"id": str(uuid.uuid4()),
                                        "input": f"https://www.c{n}.example"}) + "\n"
                            for n in range(count)))
    return path


@pytest.mark.parametrize(("prefix", "says"), [
    pytest.param("p" * (MAX_PREFIX_CHARS + 4), "it has 125", id="125-characters"),
    pytest.param("nightly/accounts", "it holds '/'", id="a-slash"),
    pytest.param("two words", "it holds ' '", id="a-space"),
])
async def test_a_prefix_that_makes_invalid_batch_ids_sends_nothing(
        storage: StorageSettings, account: StorageAccount, tmp_path: Path, prefix: str,
        says: str) -> None:
    done = enqueue(account, some_records(tmp_path / "in.jsonl"), "--batch-prefix", prefix)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--batch-prefix must be 1-121 characters of A-Z a-z 0-9 . _ : -" in done.stderr
    assert says in done.stderr
    assert "nothing was sent" in done.stderr
    assert "sent" not in done.stdout
    async with QueueClient.from_connection_string(str(storage.connection_string),
                                                  BATCH_QUEUE) as queue:
        assert await queue.peek_messages(max_messages=10) == []


async def test_the_longest_prefix_is_sent(storage: StorageSettings, account: StorageAccount,
                                          tmp_path: Path) -> None:
    done = enqueue(account, some_records(tmp_path / "in.jsonl"),
                   "--batch-prefix", "p" * MAX_PREFIX_CHARS)
    assert done.returncode == 0, done.stderr
    assert "sent 3 records in 1 messages" in done.stdout


def test_every_message_is_checked_against_the_contract() -> None:
    record = RecordRef(str(uuid.uuid4()), "https://www.contoso.com")
    check_messages([Message("ok-000001", (record,))])
    with pytest.raises(ContractError, match="message bad/000001: batch_id must be"):
        check_messages([Message("ok-000001", (record,)), Message("bad/000001", (record,))])
    with pytest.raises(ContractError, match="input must be"):
        check_messages([Message("long-000001", (RecordRef(record.id, "x" * 5000),))])
    check_prefix("nightly.accounts:2026-11-22_a")
