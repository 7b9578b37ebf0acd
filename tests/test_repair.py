"""The repair commands against Azurite and the emulators: dead letters made by the real worker
are listed, filtered, shown, replayed once and then written; poison from the worker (an
envelope) and from the host (the raw message) is indexed and replayed when it passes the
contract; expired entries go; bad input gets a sentence and exit 2."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from typing import Any

import pytest
from azure.storage.queue.aio import QueueClient

from sync import cli
from sync.clock import SYSTEM_CLOCK, Clock, ManualClock
from sync.config.settings import StorageSettings
from sync.config.storage_names import (
    BATCH_QUEUE,
    DEAD_LETTER_QUEUE,
    DEAD_LETTER_TABLE,
    POISON_QUEUE,
)
from sync.local.azurite import StorageAccount
from sync.message.contract import Message, RecordRef, decode_message
from sync.ops import deadletters, poison, repaircli
from sync.ops.repair import STALE_CLAIM_S
from sync.services import Services
from sync.state.ledger_rows import message_key
from sync.state.letter_index import DAY_S
from sync.state.storage import queue_client, table_client
from sync.work import worker
from tests.test_failure_model import FAILURE_SETTINGS
from tests.test_worker import (
    FAST,
    GHOST,
    Make,
    check_all_written,
    emulator,
    refs,
    work_until_done,
)

PROBE_ONCE = {**FAILURE_SETTINGS, "SYNC_RECORD_PROBES": "1", "SYNC_WRITE_MODE": "single"}


async def run(*argv: str, clock: Clock = SYSTEM_CLOCK) -> tuple[int, str]:
    """One repair command, as ``python -m sync`` parses it; its exit code and stdout."""
    args = cli.build_parser().parse_args(list(argv))
    kind: Any = deadletters.DeadLetters() if args.command == "deadletters" else poison.Poison()
    out = io.StringIO()
    code = await repaircli.execute(args, kind, always_scan=args.command == "poison",
                                   clock=clock, out=out)
    return code, out.getvalue()


async def listed(*argv: str, clock: Clock = SYSTEM_CLOCK) -> list[dict[str, Any]]:
    code, text = await run(*argv, "--json", clock=clock)
    assert code == 0, text
    return [] if text.startswith("no ") else list(json.loads(text))


async def bodies(storage: StorageSettings, name: str) -> list[str]:
    async with QueueClient.from_connection_string(str(storage.connection_string), name) as q:
        return [base64.b64decode(m.content).decode() for m in
                await q.peek_messages(max_messages=32)]


def ghost(n: int) -> RecordRef:
    return RecordRef(GHOST[:-1] + str(n), f"https://www.ghost{n}.example")


async def process(services: Services, batch_id: str, records: list[RecordRef]) -> None:
    await worker.process_message(services, Message(batch_id, tuple(records))
                                 .to_json().encode())


@pytest.mark.emulator(records=20, **FAST)
async def test_dead_letters_of_the_worker_are_listed_filtered_and_shown(
        make_services: Make) -> None:
    services = await make_services()
    good = await refs(services, 4)
    await process(services, "run-a-p0-1", [good[0], ghost(1), good[1], ghost(2)])
    await process(services, "run-b-p3-7", [ghost(3), good[2]])
    everything = await listed("deadletters", "list")
    assert sorted(r["RecordId"] for r in everything) == [ghost(n).id for n in (1, 2, 3)]
    assert {r["Reason"] for r in everything} == {"record_missing"}
    assert [r["RecordId"] for r in await listed("deadletters", "list", "--run", "run-b")] == \
        [ghost(3).id]
    assert len(await listed("deadletters", "list", "--run", "run-a", "--run", "run-b")) == 3
    assert await listed("deadletters", "list", "--reason", "conflict") == []
    assert len(await listed("deadletters", "list", "--since", "2020-01-01")) == 3
    assert await listed("deadletters", "list", "--since", "2999-01-01") == []
    shown = await listed("deadletters", "show", "--id", ghost(2).id.upper())
    assert len(shown) == 1
    row = shown[0]
    assert (row["PartitionKey"], row["BatchId"], row["Status"]) == ("run-a", "run-a-p0-1", 404)
    assert row["Input"] == ghost(2).input
    assert row["State"] == "dead"
    assert row["Code"] == "0x80040217"
    assert "Does Not Exist" in row["Message"]
    code, text = await run("deadletters", "list")
    assert code == 0
    assert text.splitlines()[-1] == "3 dead letters"
    code, text = await run("deadletters", "list", "--reason", "conflict")
    assert (code, text.strip()) == (0, "no dead letters match (--reason conflict)")


@pytest.mark.emulator(records=20, **FAST)
async def test_a_redelivered_dead_letter_overwrites_its_row(make_services: Make) -> None:
    """A delivery carried out before (its ledger row written) is settled and dead-letters
    nothing more; one whose host died after the dead letter and before the ledger row is
    carried out again, and its dead letter overwrites the row instead of adding one."""
    services = await make_services()
    for _ in range(2):
        await process(services, "run-a-p0-1", [ghost(1)])
    assert len(await bodies(services.settings.storage, DEAD_LETTER_QUEUE)) == 1
    await services.storage.ledger.delete_entity(*message_key("run-a-p0-1", 0))
    await process(services, "run-a-p0-1", [ghost(1)])
    assert len(await bodies(services.settings.storage, DEAD_LETTER_QUEUE)) == 2
    assert len(await listed("deadletters", "list")) == 1


@pytest.mark.emulator(records=20, **FAST)
async def test_replay_sends_once_and_the_replayed_record_is_written(
        make_services: Make) -> None:
    services = await make_services(**PROBE_ONCE)
    storage = services.settings.storage
    records = await refs(services, 20)
    owned = records[7]
    await emulator(services, "faults", "POST", {"preset": "403-record-access",
                                                "record_ids": [owned.id]})
    message = Message("run-n-p0-1", tuple(records))
    await services.storage.batches.send_message(message.to_json())
    await work_until_done(services, len(records))
    assert [r["Reason"] for r in await listed("deadletters", "list")] == \
        ["suspected_record_fault"]
    await emulator(services, "faults", "DELETE")

    code, text = await run("deadletters", "replay", "--dry-run")
    assert (code, text.splitlines()[0]) == (0, "would replay 1 dead letters in 1 messages "
                                               "(dry run: nothing changed)")
    assert await bodies(storage, BATCH_QUEUE) == []

    code, text = await run("deadletters", "replay", "--run", "run-n")
    assert (code, text.splitlines()[0]) == (0, "replayed 1 dead letters in 1 messages; deleted "
                                               "1 messages from sync-deadletter")
    code, text = await run("deadletters", "replay")
    assert "replayed 0 dead letters" in text
    assert "1 skipped: already replayed" in text
    sent = await bodies(storage, BATCH_QUEUE)
    assert len(sent) == 1, "a second replay enqueues nothing"
    assert await bodies(storage, DEAD_LETTER_QUEUE) == []
    message = decode_message(sent[0].encode())
    assert message.batch_id.startswith("run-n:replay-")
    (record,) = message.records
    assert (record.id, record.input) == (owned.id, owned.input)
    assert record.history is not None
    assert record.history.strikes >= 1
    assert record.history.last_fault.startswith("replay 1 of suspected_record_fault: 403")
    assert (await listed("deadletters", "show"))[0]["State"] == "replayed"

    counts = await worker.process_message(services, sent[0].encode())
    assert (counts.written, counts.dead_lettered) == (1, 0)
    await check_all_written(services, {r.id for r in records})


@pytest.mark.emulator(records=20, **FAST)
async def test_a_replay_that_fails_again_is_dead_again(make_services: Make) -> None:
    services = await make_services()
    await process(services, "run-g-p0-1", [ghost(1)])
    await run("deadletters", "replay")
    (sent,) = await bodies(services.settings.storage, BATCH_QUEUE)
    counts = await worker.process_message(services, sent.encode())
    assert counts.dead_lettered == 1
    (row,) = await listed("deadletters", "show")
    assert (row["PartitionKey"], row["State"], row["Replays"]) == ("run-g", "dead", 1)


@pytest.mark.emulator(records=20, **FAST)
async def test_purge_dry_run_changes_nothing_then_purge_deletes_rows_and_messages(
        make_services: Make) -> None:
    services = await make_services()
    await process(services, "run-p-p0-1", [ghost(1), ghost(2)])
    code, text = await run("deadletters", "purge", "--dry-run", "--id", ghost(1).id)
    assert (code, text.strip()) == (0, "would delete 1 dead letters (dry run: nothing changed)")
    assert len(await listed("deadletters", "list")) == 2
    assert len(await bodies(services.settings.storage, DEAD_LETTER_QUEUE)) == 2
    assert await run("deadletters", "purge", "--id", ghost(1).id) == (3, ""), \
        "no terminal to ask, no --yes: nothing is deleted"
    assert len(await listed("deadletters", "list")) == 2
    code, text = await run("deadletters", "purge", "--id", ghost(1).id, "--yes")
    assert text.strip() == ("deleted 1 dead letters from the index and 1 messages from "
                            "sync-deadletter")
    assert [r["RecordId"] for r in await listed("deadletters", "list")] == [ghost(2).id]
    (left,) = await bodies(services.settings.storage, DEAD_LETTER_QUEUE)
    assert json.loads(left)["record"]["id"] == ghost(2).id


@pytest.mark.emulator(records=20, **FAST)
async def test_entries_expire_after_the_retention(make_services: Make) -> None:
    services = await make_services(SYNC_DEADLETTER_RETENTION_DAYS="2")
    await process(services, "run-e-p0-1", [ghost(1)])
    async with queue_client(services.settings.storage, DEAD_LETTER_QUEUE, None) as queue:
        (message,) = await queue.peek_messages()
    assert message.expires_on is not None
    assert message.inserted_on is not None
    assert (message.expires_on - message.inserted_on).total_seconds() == pytest.approx(
        2 * DAY_S, abs=5)
    tomorrow = ManualClock(wall_start_s=time.time() + DAY_S)
    assert len(await listed("deadletters", "list", clock=tomorrow)) == 1
    later = ManualClock(wall_start_s=time.time() + 2 * DAY_S + 60)
    assert await listed("deadletters", "list", clock=later) == []
    async with table_client(services.settings.storage, DEAD_LETTER_TABLE, None) as table:
        assert [e async for e in table.list_entities()] == [], "the sweep deleted the row"


@pytest.mark.emulator(records=20, **FAST)
async def test_poison_from_the_worker_and_the_host_is_listed_and_replayed(
        make_services: Make) -> None:
    services = await make_services()
    storage = services.settings.storage
    await worker.process_queue_message(services, b"this is not base64!")
    await worker.process_message(services, b'{"version": 2, "batch_id": "run-q-p0-1", '
                                           b'"records": []}')
    good = Message("run-h-p1-2", tuple(await refs(services, 2)))
    async with queue_client(storage, POISON_QUEUE, None) as poison_queue:  # as the host does
        await poison_queue.send_message(good.to_json())

    entries = await listed("poison", "list")
    assert sorted((e["Source"], e["PartitionKey"]) for e in entries) == [
        ("host", "run-h"), ("worker", "no-run"), ("worker", "run-q")]
    assert len(await listed("poison", "list", "--reason", "delivery_limit")) == 1
    (host_entry,) = await listed("poison", "show", "--run", "run-h")
    assert host_entry["Body"] == good.to_json()

    code, text = await run("poison", "replay")
    lines = text.splitlines()
    assert (code, lines[0]) == (0, "replayed 1 poison messages in 1 messages; deleted 1 "
                                   "messages from sync-batches-poison")
    assert sum("stays: it still breaks the contract" in line for line in lines) == 2
    assert "records must be a non-empty list" in text
    assert await bodies(storage, BATCH_QUEUE) == [good.to_json()]
    code, text = await run("poison", "replay")
    assert "replayed 0 poison messages" in text
    assert await bodies(storage, BATCH_QUEUE) == [good.to_json()]
    assert len(await bodies(storage, POISON_QUEUE)) == 2, "the worker's entries stay"
    assert len(await listed("poison", "list")) == 3, "listing again adds no duplicate"


@pytest.mark.parametrize(("argv", "says"), [
    (["--since", "yesterday"], "--since 'yesterday' is not a date"),
    (["--run", "a/b"], "cannot be a key in the index"),
    (["--account", "Not_An_Account"], "is not a storage account name"),
])
async def test_bad_input_is_a_sentence_and_exit_2(
        storage: StorageSettings, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], argv: list[str], says: str) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", str(storage.connection_string))
    code, text = await run("deadletters", "list", *argv)
    assert (code, text) == (2, "")
    assert says in capsys.readouterr().err


async def test_a_missing_table_points_to_init_storage(
        account: StorageAccount, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", account.connection_string)
    code, _ = await run("deadletters", "list")
    err = capsys.readouterr().err
    assert code == 2
    assert "python -m sync init-storage" in err
    assert "AccountKey" not in err
    assert "Traceback" not in err


async def test_no_target_is_a_sentence(monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("AzureWebJobsStorage", raising=False)
    code, _ = await run("poison", "list")
    assert code == 2
    assert "--account NAME" in capsys.readouterr().err


@pytest.mark.emulator(records=20, **FAST)
async def test_two_replays_at_once_send_each_record_once(make_services: Make) -> None:
    services = await make_services()
    await process(services, "run-c-p0-1", [ghost(1), ghost(2), ghost(3)])
    results = await asyncio.gather(run("deadletters", "replay"), run("deadletters", "replay"))
    assert [code for code, _ in results] == [0, 0]
    sent = [decode_message(body.encode())
            for body in await bodies(services.settings.storage, BATCH_QUEUE)]
    assert sorted(r.id for m in sent for r in m.records) == [ghost(n).id for n in (1, 2, 3)]


@pytest.mark.emulator(records=20, **FAST)
async def test_a_replay_that_died_is_finished_by_the_next_with_its_batch_id(
        make_services: Make) -> None:
    services = await make_services()
    await process(services, "run-d-p0-1", [ghost(1), ghost(2)])
    now_s = time.time()
    async with table_client(services.settings.storage, DEAD_LETTER_TABLE, None) as table:
        for record, since_s in ((ghost(1), now_s - STALE_CLAIM_S - 1), (ghost(2), now_s)):
            await table.update_entity({"PartitionKey": "run-d", "RowKey": record.id,
                                       "State": "replaying", "ReplayingSince": since_s,
                                       "ReplayBatch": "run-d:replay-died", "Replays": 1})
    code, text = await run("deadletters", "replay")
    assert code == 0
    assert text.splitlines() == [
        "replayed 1 dead letters in 1 messages; deleted 1 messages from sync-deadletter",
        "1 skipped: being replayed by another command"]
    (sent,) = await bodies(services.settings.storage, BATCH_QUEUE)
    message = decode_message(sent.encode())
    assert message.batch_id == "run-d:replay-died"
    assert [r.id for r in message.records] == [ghost(1).id]
    assert message.records[0].history is not None
    assert message.records[0].history.last_fault.startswith("replay 1 of record_missing")


@pytest.mark.emulator(records=20, **FAST)
async def test_scan_indexes_a_dead_letter_whose_row_is_missing(make_services: Make) -> None:
    services = await make_services()
    await process(services, "run-s-p0-1", [ghost(1)])
    async with table_client(services.settings.storage, DEAD_LETTER_TABLE, None) as table:
        await table.delete_entity("run-s", ghost(1).id)
    assert await listed("deadletters", "list") == []
    (row,) = await listed("deadletters", "list", "--scan")
    assert (row["PartitionKey"], row["RecordId"], row["State"]) == ("run-s", ghost(1).id, "dead")
    assert len(await bodies(services.settings.storage, DEAD_LETTER_QUEUE)) == 1, "still there"


async def test_an_empty_poison_queue_says_so(storage: StorageSettings,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AzureWebJobsStorage", str(storage.connection_string))
    assert await run("poison", "list") == (0, "no poison messages match\n")
    assert await run("poison", "replay", "--since", "2026-01-01") == (
        0, "no poison messages match (--since 2026-01-01)\n")


@pytest.mark.emulator(records=20, **FAST)
async def test_a_replayed_message_the_host_poisons_again_can_be_replayed_again(
        make_services: Make) -> None:
    services = await make_services()
    good = Message("run-r-p0-1", tuple(await refs(services, 1)))
    async with queue_client(services.settings.storage, POISON_QUEUE, None) as poison_queue:
        await poison_queue.send_message(good.to_json())
        assert "replayed 1 poison" in (await run("poison", "replay"))[1]
        await poison_queue.send_message(good.to_json())  # it failed again
    (entry,) = await listed("poison", "list")
    assert entry["State"] == "dead"
    assert "replayed 1 poison" in (await run("poison", "replay"))[1]
    assert await bodies(services.settings.storage, BATCH_QUEUE) == [good.to_json()] * 2
