"""``python -m sync init-storage`` on a fresh Azurite account: it creates every queue and table
the app uses, a second run changes nothing, and a bad target is a sentence, not a traceback."""

from __future__ import annotations

import pytest
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from sync import cli
from sync.config.storage_names import QUEUES, TABLES
from sync.local.azurite import StorageAccount


def inventory(connection_string: str) -> tuple[set[str], set[str]]:
    with QueueServiceClient.from_connection_string(connection_string) as queues, \
            TableServiceClient.from_connection_string(connection_string) as tables:
        return ({str(q.name) for q in queues.list_queues()},
                {str(t.name) for t in tables.list_tables()})


def test_init_storage_creates_everything_once(account: StorageAccount,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", account.connection_string)
    assert inventory(account.connection_string) == (set(), set())
    assert cli.main(["init-storage"]) == 0
    assert inventory(account.connection_string) == (set(QUEUES), set(TABLES))
    assert cli.main(["init-storage"]) == 0, "a second run finds everything in place"
    assert inventory(account.connection_string) == (set(QUEUES), set(TABLES))
    out = capsys.readouterr().out
    assert out.count("are in place") == 2
    assert "AccountKey" not in out


@pytest.mark.parametrize(("argv", "says"), [
    (["--account", "UPPER"], "is not a storage account name"),
    ([], "set AzureWebJobsStorage"),
])
def test_init_storage_without_a_usable_target_says_why(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        argv: list[str], says: str) -> None:
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    assert cli.main(["init-storage", *argv]) == 2
    err = capsys.readouterr().err
    assert says in err
    assert "Traceback" not in err
