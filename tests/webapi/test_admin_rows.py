"""The admin view of the rows (``GET /_emulator/records``): every row streamed, or a page of
rows after a key; neither answer holds a copy of the table while it is sent."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from sync.local.emulators.webapi.rows_view import CHUNK_ROWS, PAGE_MAX_ROWS
from tests.webapi.conftest import FAST, Client


async def admin_rows(client: Client, **params: str) -> tuple[int, Any]:
    async with client.session.get(f"{client.url}/_emulator/records",
                                  params={"entityset": "accounts", **params}) as answer:
        return answer.status, await answer.json()


async def paged(client: Client, top: int) -> list[list[dict[str, Any]]]:
    """Every page of ``top`` rows, following ``after`` (bounded)."""
    pages: list[list[dict[str, Any]]] = []
    after: dict[str, str] = {}
    for _ in range(100):
        status, body = await admin_rows(client, top=str(top), **after)
        assert status == 200, body
        pages.append(body["value"])
        if "after" not in body:
            return pages
        after = {"after": body["after"]}
    pytest.fail("the pages never ended")


async def test_pages_in_key_order_hold_every_row_once(client: Client) -> None:
    await client.configure(records=12, **FAST)
    pages = await paged(client, 5)
    assert [len(page) for page in pages] == [5, 5, 2]
    rows = [row for page in pages for row in page]
    assert rows == await client.rows()
    ids = [row["accountid"] for row in rows]
    assert ids == sorted(set(ids))


async def test_a_page_that_reaches_the_end_names_no_next(client: Client) -> None:
    await client.configure(records=4, **FAST)
    assert [len(page) for page in await paged(client, 4)] == [4]
    await client.configure(records=0, **FAST)
    assert await paged(client, 4) == [[]]


async def test_every_row_is_streamed_over_several_chunks(client: Client) -> None:
    records = 2 * CHUNK_ROWS + 7
    await client.configure(records=records, **FAST)
    rows = await client.rows()
    ids = [row["accountid"] for row in rows]
    assert len(ids) == records
    assert ids == sorted(set(ids))
    assert rows == [row for page in await paged(client, PAGE_MAX_ROWS) for row in page]


async def test_a_row_written_between_two_pages_is_read_as_written(client: Client) -> None:
    await client.configure(records=10, **FAST)
    _, first = await admin_rows(client, top="5")
    later = (await client.rows())[7]["accountid"]
    assert (await client.patch(later, {"description": "edited"})).status == 204
    _, second = await admin_rows(client, top="5", after=first["after"])
    assert [row["description"] for row in second["value"]
            if row["accountid"] == later] == ["edited"]
    assert len({row["accountid"] for row in first["value"] + second["value"]}) == 10


@pytest.mark.parametrize("params", [
    {"top": "0"}, {"top": str(PAGE_MAX_ROWS + 1)}, {"top": "five"}, {"after": "x"},
], ids=["no rows", "more than a page", "not a number", "after without top"])
async def test_a_page_it_cannot_serve_is_refused(client: Client, params: dict[str, str]) -> None:
    await client.configure(records=3, **FAST)
    status, body = await admin_rows(client, **params)
    assert status == 400
    assert body["error"]


async def test_streaming_every_row_holds_no_copy_of_the_table(client: Client) -> None:
    """The answer's peak memory is a small share of what the table's rows take: a chunk of
    rows at a time, never the whole table serialised at once."""
    tracemalloc.start()
    try:
        before_b = tracemalloc.get_traced_memory()[0]
        await client.configure(records=20_000, **FAST)
        table_b = tracemalloc.get_traced_memory()[0] - before_b
        tracemalloc.reset_peak()
        start_b = tracemalloc.get_traced_memory()[0]
        sent_b = 0
        async with client.session.get(f"{client.url}/_emulator/records") as answer:
            async for chunk in answer.content.iter_chunked(1 << 16):
                sent_b += len(chunk)
        peak_b = tracemalloc.get_traced_memory()[1] - start_b
    finally:
        tracemalloc.stop()
    assert sent_b > 20_000 * 300  # every row was sent
    assert peak_b < table_b / 10, (peak_b, table_b)
