"""The external peer's row: the emulator served over https names its certificate and answers
the metadata Microsoft's client asks before it writes; a row that cannot run says why; the job's
tally becomes a row with the client's failures counted."""

from __future__ import annotations

from pathlib import Path

from bench.ceiling import Ceiling
from bench.msclient import JobTally, _failed
from bench.runpeer import NO_CA, ca_bundle_in, has_metadata, peer_blocker, peer_result
from bench.scenarios import QUICK_SCALE, plan_rows
from sync.local.emulators.webapi import EmulatorConfig, start_emulator

CEILING = Ceiling({"single": 40.0, "batch": 80.0, "bulk": 800.0}, 5000.0)
PEER = next(row for row in plan_rows(QUICK_SCALE, peer=True) if row.kind == "peer")


async def test_an_http_emulator_is_not_enough_for_microsofts_client(dataverse_url: str) -> None:
    assert dataverse_url.startswith("http://")
    assert not await has_metadata(dataverse_url.replace("http://", "https://"), None)


async def test_the_https_emulator_answers_the_metadata_the_client_asks() -> None:
    running = await start_emulator(EmulatorConfig(records=3), https=True)
    try:
        assert running.url.startswith("https://")
        assert running.ca_path is not None
        assert await has_metadata(running.url, str(running.ca_path))
    finally:
        await running.close()


def test_the_certificate_is_read_from_the_emulators_output(tmp_path: Path) -> None:
    log = tmp_path / "dataverse.log"
    log.write_text("Dataverse Web API emulator listening on https://127.0.0.1:5 (2 servers)\n"
                   "Trust its certificate: REQUESTS_CA_BUNDLE=/run/emulator-tls/ca.pem\n")
    assert ca_bundle_in(log) == "/run/emulator-tls/ca.pem"
    assert ca_bundle_in(tmp_path / "silent.log", timeout_s=0.0) is None


def test_a_row_that_cannot_run_says_why_and_has_no_figures() -> None:
    assert peer_blocker("https://127.0.0.1:9", None) == NO_CA
    row = peer_result(PEER, QUICK_SCALE, CEILING, 600, {}, NO_CA)
    assert (row.status, row.written, row.ceiling_per_s) == (NO_CA, 0, 800.0)


def test_a_job_tally_becomes_a_row_with_failures_and_429s() -> None:
    tally = {"written": 200, "failed": 300, "throttled_by_code": {"0x80072321": 3},
             "first_error": {"429": "Combined execution time of incoming requests exceeded"},
             "timeline": [[0.0, 0], [4.0, 200]], "cpu_s": 1.5, "peak_rss_mib": 90.0}
    row = peer_result(PEER, QUICK_SCALE, CEILING, 600, tally, "")
    assert (row.written, row.failed, row.unfinished) == (200, 300, 100)
    assert row.facets == {"exec-time": 3}
    assert (row.elapsed_s, row.cpu_s, row.status) == (4.0, 1.5, "")
    assert row.note.endswith("first failures: 429: Combined execution time of incoming requests "
                             "exceeded")
    assert peer_result(PEER, QUICK_SCALE, CEILING, 600, {}, "").status.startswith("the client")


class _HttpError(Exception):
    """The shape of the client's HttpError: a status and the service's error code."""

    def __init__(self, status_code: int, code: str) -> None:
        super().__init__(code)
        self.status_code, self.details = status_code, {"service_error_code": code}


def test_a_failed_chunk_fails_its_records_and_a_429_is_counted_by_its_code() -> None:
    tally = JobTally()
    _failed(tally, _HttpError(429, "0x80072321"), 100)
    _failed(tally, _HttpError(400, "0x80040203"), 100)
    _failed(tally, ConnectionError("reset"), 100)
    assert tally.failed == 300
    assert tally.throttled_by_code == {"0x80072321": 1}
    assert tally.failures_by_status == {"429": 1, "400": 1, "ConnectionError": 1}
    assert "lock" not in tally.as_json()
