"""Each shipped example definition asks the enrichment emulator speaking its provider's shape,
over real HTTP on loopback (no call leaves the machine): People Data Labs (GET with a website,
X-Api-Key, 404 no match, 402 out of credits, X-RateLimit), its bulk endpoint (a key in the
query, answers matched back by key), Clearbit-like (a bearer key, 202 then 200) and an
Entra-protected in-house API (a managed identity's token through azure-identity, a JSON body of
two columns, 409 no match, RateLimit headers). Azure AD cannot run here: the emulator's managed
identity endpoint stands in for it, as Azure's does on a function app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.core.credentials import AccessToken
from azure.identity.aio import ManagedIdentityCredential

from sync.clients.auth import CredentialToken
from sync.clients.enrichment import EnrichmentClient, Later
from sync.config.table_definition import SyncDefinition, parse_definition
from sync.failures.errors import ConfigFault, RecordFault, ServiceFault, Throttled
from sync.local.emulators.enrichment import SHAPES, EnrichmentConfig, is_no_match
from sync.local.emulators.enrichment.app import start_enrichment
from sync.local.emulators.enrichment.state import IDENTITY_PATH
from sync.local.verify import expected_columns

EXAMPLES = Path(__file__).parents[1] / "examples" / "enrichment"
KEY = EnrichmentConfig().api_key
WEBSITES = [f"https://www.cedar{n}.example" for n in range(40)]
NO_MATCH = next(w for w in WEBSITES if is_no_match(w.removeprefix("https://www."), 0.02))
MATCHES = [w for w in WEBSITES if w != NO_MATCH]
Served = Callable[..., Any]


def definition(shape: str) -> SyncDefinition:
    return parse_definition(f"@{EXAMPLES / shape}.json")


IDENTITY_HEADER = "identity-header-for-test"


@pytest.fixture
async def served(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    """Starts the emulator in a shape and answers a client of that shape's example (for the
    in-house shape with azure-identity's ManagedIdentityCredential, as on a function app:
    IDENTITY_ENDPOINT and IDENTITY_HEADER name the emulator's stand-in for Azure AD)."""
    runners: list[Any] = []
    clients: list[EnrichmentClient] = []
    async with aiohttp.ClientSession() as session:

        async def serve(shape: str, *, tokens: Any = None, on_spent: Any = None,
                        **config: Any) -> EnrichmentClient:
            runner, url = await start_enrichment(EnrichmentConfig(
                shape=shape, latency_ms=0, identity_header=IDENTITY_HEADER, **config))
            runners.append(runner)
            table = definition(shape)
            spec = table.enrichment_spec
            if spec.auth.type == "managed_identity" and tokens is None:
                monkeypatch.setenv("IDENTITY_ENDPOINT", f"{url}{IDENTITY_PATH}")
                monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
                tokens = CredentialToken(ManagedIdentityCredential(), "", scope=spec.auth.scope,
                                         service="the enrichment API")
            client = EnrichmentClient(session, url, lambda: KEY, 5.0, spec=spec,
                                      mapping=table.mapping, tokens=tokens, on_spent=on_spent)
            clients.append(client)
            return client

        yield serve
        for client in clients:
            await client.close()
    for runner in runners:
        await runner.cleanup()


def expected(shape: str, website: str) -> dict[str, Any] | None:
    return expected_columns(website, definition(shape), shape)


def test_at_least_three_shapes_ship_besides_todays_each_with_its_example() -> None:
    shipped = {path.stem for path in EXAMPLES.glob("*.json")}
    assert shipped == set(SHAPES) - {"today"}
    assert len(shipped) >= 3


async def test_pdl_answers_nested_fields_and_404_is_no_match(served: Served) -> None:
    client = await served("pdl")
    for website in MATCHES[:3]:
        assert await client.ask({"websiteurl": website}) == expected("pdl", website)
    with pytest.raises(RecordFault) as caught:
        await client.ask({"websiteurl": NO_MATCH})
    assert (caught.value.status, caught.value.reason) == (404, "not_enrichable")


async def test_pdl_out_of_credits_after_n_calls_is_a_configuration_fault(
        served: Served) -> None:
    client = await served("pdl", out_of_credits_after=2)
    for website in MATCHES[:2]:
        await client.ask({"websiteurl": website})
    with pytest.raises(ConfigFault, match="402 on GET /v5/company/enrich: out of credits"):
        await client.ask({"websiteurl": MATCHES[2]})


async def test_pdl_429_waits_what_x_ratelimit_reset_says(served: Served) -> None:
    client = await served("pdl", rate_per_s=0.5, burst=1)
    await client.ask({"websiteurl": MATCHES[0]})
    with pytest.raises(Throttled) as caught:
        await client.ask({"websiteurl": MATCHES[1]})
    assert caught.value.retry_after_s == 2.0  # X-RateLimit-Reset: one token at 0.5/s


async def test_a_spent_window_is_announced_before_any_429(served: Served) -> None:
    spent: list[float] = []
    client = await served("pdl", rate_per_s=0.5, burst=2, on_spent=spent.append)
    await client.ask({"websiteurl": MATCHES[0]})
    assert spent == []
    await client.ask({"websiteurl": MATCHES[1]})
    assert spent == [4.0]  # remaining 0; the bucket is full again in 2 / 0.5 s


async def test_pdl_bulk_matches_answers_back_by_key(served: Served) -> None:
    client = await served("pdl-bulk")
    websites = [*MATCHES[:4], NO_MATCH]
    outcomes = await client.ask_many([{"websiteurl": w} for w in reversed(websites)])
    assert outcomes[1:] == [expected("pdl-bulk", w) for w in reversed(MATCHES[:4])]
    assert isinstance(outcomes[0], RecordFault)
    assert outcomes[0].reason == "not_enrichable"
    assert client.bulk_size == 100


async def test_pdl_bulk_key_travels_in_the_query(served: Served) -> None:
    client = await served("pdl-bulk", api_key="another-key")
    with pytest.raises(ServiceFault, match="401"):
        await client.ask_many([{"websiteurl": MATCHES[0]}])


async def test_clearbit_answers_202_then_200(served: Served) -> None:
    client = await served("clearbit")
    assert await client.ask({"websiteurl": MATCHES[0]}) == Later(30.0, 202)
    assert await client.ask({"websiteurl": MATCHES[0]}) == expected("clearbit", MATCHES[0])


async def test_clearbit_takes_the_key_as_a_bearer_token(served: Served) -> None:
    client = await served("clearbit", api_key="rotated")
    with pytest.raises(ServiceFault, match="401 Unauthorized"):
        await client.ask({"websiteurl": MATCHES[0]})


async def test_inhouse_takes_a_managed_identitys_token_for_its_scope(
        served: Served) -> None:
    client = await served("inhouse")
    columns = {"websiteurl": MATCHES[0], "name": "Cedar 0 Ltd"}
    assert await client.ask(columns) == expected("inhouse", MATCHES[0])
    with pytest.raises(RecordFault) as caught:
        await client.ask({"websiteurl": NO_MATCH, "name": "x"})
    assert (caught.value.status, caught.value.reason) == (409, "not_enrichable")


def test_inhouse_needs_both_of_its_columns() -> None:
    client = EnrichmentClient(None, "http://127.0.0.1:9", lambda: "", 1.0,  # type: ignore[arg-type]
                              spec=definition("inhouse").enrichment_spec)
    with pytest.raises(RecordFault, match="no value in column name"):
        client.inputs({"websiteurl": MATCHES[0]})


class StrangerCredential:
    """A token for another audience: the in-house API refuses it, whatever is renewed."""

    def __init__(self) -> None:
        self.asked = 0

    async def get_token(self, *scopes: str, **_: Any) -> Any:
        self.asked += 1
        return AccessToken(f"not-issued-{self.asked}", 4_000_000_000)

    async def close(self) -> None:
        return None


async def test_inhouse_refuses_a_token_it_did_not_issue_after_one_renewal(
        served: Served) -> None:
    credential = StrangerCredential()
    tokens = CredentialToken(credential, "", scope="api://enrichment-inhouse/.default")  # type: ignore[arg-type]
    client = await served("inhouse", tokens=tokens)
    with pytest.raises(ServiceFault, match="401"):
        await client.ask({"websiteurl": MATCHES[0], "name": "Cedar"})
    assert credential.asked == 2


async def test_inhouse_announces_its_window_in_ratelimit_headers(served: Served) -> None:
    spent: list[float] = []
    client = await served("inhouse", rate_per_s=1, burst=2, on_spent=spent.append)
    for number in range(2):
        await client.ask({"websiteurl": MATCHES[number], "name": "Cedar"})
    assert spent == [2.0]
    with pytest.raises(Throttled) as caught:
        await client.ask({"websiteurl": MATCHES[2], "name": "Cedar"})
    assert caught.value.retry_after_s == 1.0  # RateLimit-Reset: one token at 1/s
