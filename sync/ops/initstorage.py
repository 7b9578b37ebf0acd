"""``python -m sync init-storage``: create the app's queues and tables where missing.

Idempotent: what exists is left as it is. The Core Tools path runs it before ``func start``
(the host does not create the queues its triggers listen on); the Bicep creates the same ones
in Azure, so there it only checks that they are there.
"""

from __future__ import annotations

import argparse
import asyncio

from azure.core.exceptions import AzureError

from sync.config.storage_names import QUEUES, TABLES
from sync.ops.target import (
    QUEUE_ROLE,
    TABLE_ROLE,
    add_target_arguments,
    explain,
    storage_for,
)
from sync.state.storage import ensure_resources


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """``--account NAME``, ``--local`` or the environment's ``AzureWebJobsStorage``."""
    add_target_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """Create what is missing; say what the account now holds."""
    try:
        asyncio.run(ensure_resources(storage_for(args)))
    except AzureError as error:
        url = str(getattr(getattr(getattr(error, "response", None), "request", None), "url",
                          ""))
        role = TABLE_ROLE if ".table." in url or "Tables" in url else QUEUE_ROLE
        raise explain(error, "the storage account", role) from None
    print(f"queues {', '.join(QUEUES)} and tables {', '.join(TABLES)} are in place")
    return 0
