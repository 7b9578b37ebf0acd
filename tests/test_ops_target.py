"""How operator commands find their storage account, and what they say when they cannot."""

from __future__ import annotations

import argparse
import stat
from pathlib import Path

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from sync.ops.target import (
    QUEUE_ROLE,
    TargetError,
    add_target_arguments,
    explain,
    forget_local_target,
    local_dataverse,
    local_environments,
    save_local_target,
    storage_for,
)

CONNECTION = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=c2VjcmV0;QueueEndpoint=x"


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_target_arguments(parser)
    return parser.parse_args(list(argv))


def test_an_account_name_means_identity_endpoints_in_azure(tmp_path: Path) -> None:
    storage = storage_for(_args("--account", "syncprod01"), {}, tmp_path / "none.json")
    assert storage.connection_string is None
    assert storage.queue_url == "https://syncprod01.queue.core.windows.net"
    assert storage.table_url == "https://syncprod01.table.core.windows.net"


def test_a_name_that_cannot_be_an_account_is_refused() -> None:
    with pytest.raises(TargetError, match="not a storage account name"):
        storage_for(_args("--account", "Sync_Prod"), {})


def test_local_reads_what_the_running_stack_saved_and_keeps_it_private(tmp_path: Path) -> None:
    saved = tmp_path / "storage.json"
    save_local_target(CONNECTION, saved)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert storage_for(_args("--local"), {}, saved).connection_string == CONNECTION
    forget_local_target(saved)
    with pytest.raises(TargetError, match="no local stack is running"):
        storage_for(_args("--local"), {}, saved)


def test_local_dataverse_is_what_the_running_stack_saved(tmp_path: Path) -> None:
    saved = tmp_path / "storage.json"
    save_local_target(CONNECTION, saved)
    with pytest.raises(TargetError, match="no local stack is running"):
        local_dataverse(saved)
    dataverse = {"DATAVERSE_URL": "http://127.0.0.1:9", "DATAVERSE_STATIC_TOKEN": "t"}
    save_local_target(CONNECTION, saved, dataverse=dataverse)
    assert local_dataverse(saved) == dataverse
    assert storage_for(_args("--local"), {}, saved).connection_string == CONNECTION


def test_without_a_choice_the_environment_settings_are_used(tmp_path: Path) -> None:
    storage = storage_for(_args(), {"AzureWebJobsStorage": CONNECTION}, tmp_path / "n.json")
    assert storage.connection_string == CONNECTION


def test_without_any_storage_the_error_says_how_to_name_one(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="--account NAME") as raised:
        storage_for(_args(), {}, tmp_path / "n.json")
    assert "AzureWebJobsStorage" in str(raised.value)


@pytest.mark.parametrize(("error", "expected"), [
    (ClientAuthenticationError("no token"), "az login"),
    (ResourceNotFoundError("gone"), "init-storage"),
    (ServiceRequestError("dns"), "cannot reach"),
])
def test_sdk_errors_become_instructions(error: Exception, expected: str) -> None:
    assert expected in str(explain(error, "queue sync-batches", QUEUE_ROLE))


def test_a_refusal_names_the_role_the_identity_needs() -> None:
    refused = HttpResponseError("AuthorizationPermissionMismatch")
    refused.status_code = 403
    message = str(explain(refused, "queue sync-batches", QUEUE_ROLE))
    assert f"'{QUEUE_ROLE}'" in message


def test_local_environments_are_every_environment_the_stack_saved(tmp_path: Path) -> None:
    saved = tmp_path / "storage.json"
    assert local_environments(saved) == {}
    urls = {"env1": "http://127.0.0.1:5001", "env2": "http://127.0.0.1:5002"}
    save_local_target(CONNECTION, saved, dataverse={"DATAVERSE_URL": urls["env1"]},
                      environments=urls)
    assert local_environments(saved) == urls
    assert local_dataverse(saved) == {"DATAVERSE_URL": urls["env1"]}
