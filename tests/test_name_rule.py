"""One name rule for environments, identities and definitions wherever the app reads a name:
the settings, a message's lane, the operator commands. ``sync.config.lanes.NAME`` is the rule;
tests/infra/test_names.py holds the Bicep's equal to it."""

from __future__ import annotations

import json

import pytest

from sync.config.lanes import check_name
from sync.failures.errors import ConfigError, ContractError
from sync.message.contract import decode_message
from sync.ops.known import check_definition_name
from sync.ops.outcome import CommandError

GUID = "00000000-0000-0000-0000-000000000001"


def message_with_lane(name: str) -> bytes:
    return json.dumps({"version": 4, "batch_id": "b-1", "definition": "default",
                       "lane": {"environment": name, "identity": "default"},
                       "records": [{"id": GUID, "input": "https://x.example"}]}).encode()


@pytest.mark.parametrize(("name", "accepted"), [
    pytest.param("env-1", True, id="lower-case-digits-dash"),
    pytest.param("a" * 32, True, id="32-characters"),
    pytest.param("a" * 33, False, id="33-characters"),
    pytest.param("Env1", False, id="upper-case"),
    pytest.param("env_1", False, id="underscore"),
    pytest.param("1env", False, id="starts-with-a-digit"),
    pytest.param("env1\n", False, id="a-trailing-newline"),
    pytest.param("", False, id="empty"),
])
def test_the_settings_a_message_and_a_command_agree(name: str, accepted: bool) -> None:
    verdicts = []
    for check, refusal in ((lambda: check_name(name, "s"), ConfigError),
                           (lambda: decode_message(message_with_lane(name)), ContractError),
                           (lambda: check_definition_name(name), CommandError)):
        try:
            check()
            verdicts.append(True)
        except refusal:
            verdicts.append(False)
    assert verdicts == [accepted] * 3
