"""The admin view of a table's rows (``GET /_emulator/records``), without a copy of the table
per request: a page of rows after a key (``top``, ``after``), or every row; either streamed a
chunk at a time, so the emulator holds at most one chunk of rows beyond the table.

Rows are read in key order by position after the last key sent (``Table.index_after``), so
writes that land between two chunks never move the read: a row written meanwhile is sent as it
is when its chunk is read, a row created before the read's position is not sent."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Final

from aiohttp import web

from sync.local.emulators.webapi.store import Row, Table

PAGE_MAX_ROWS: Final = 5000
"""The most rows one page holds (``top``), as the Web API's own page."""
CHUNK_ROWS: Final = 250
"""Rows serialised at a time when every row is streamed (``json.dumps`` holds a few times
the text's size while it works: about 1 MB at this size)."""


class PageError(ValueError):
    """A ``top`` or ``after`` the view cannot serve."""


def rows_after(table: Table, after: str | None, top: int) -> tuple[list[Row], str | None]:
    """Up to ``top`` rows in key order after ``after`` (from the first row when None), and the
    key to ask the next page after; None when no row follows."""
    start = table.index_after(after)
    ids = table.sorted_ids[start:start + top]
    more = start + len(ids) < len(table.sorted_ids)
    return [table.rows[record_id] for record_id in ids], (ids[-1] if more and ids else None)


def page_query(query: Mapping[str, str]) -> tuple[int, str | None] | None:
    """``(top, after)`` of a paged read; None for a read of every row. Raises ``PageError``."""
    if "top" not in query:
        if "after" in query:
            raise PageError("after needs top")
        return None
    text = query["top"]
    if not text.isdigit() or not 0 < int(text) <= PAGE_MAX_ROWS:
        raise PageError(f"top must be a whole number from 1 to {PAGE_MAX_ROWS}")
    return int(text), query.get("after") or None


async def stream_rows(request: web.Request, table: Table, top: int | None = None,
                      after: str | None = None) -> web.StreamResponse:
    """The answer of ``json_pieces``, each piece written as it is made."""
    response = web.StreamResponse(headers={"Content-Type": "application/json; charset=utf-8"})
    await response.prepare(request)
    for piece in json_pieces(table, top, after):
        await response.write(piece)
    await response.write_eof()
    return response


def json_pieces(table: Table, top: int | None, after: str | None) -> Iterator[bytes]:
    """``{"value": [rows]}`` in key order after ``after``: every row (``top`` None), or at most
    ``top`` rows and, when more follow, ``"after"``: the key to ask the next page after.
    ``CHUNK_ROWS`` rows a piece, each read from the table when it is asked for."""
    yield b'{"value": ['
    left = math.inf if top is None else top
    separator = b""
    while left > 0:
        rows, after = rows_after(table, after, int(min(CHUNK_ROWS, left)))
        if rows:
            yield separator + json.dumps(rows)[1:-1].encode()
            separator = b", "
        left -= len(rows)
        if after is None:
            break
    more = f', "after": {json.dumps(after)}' if after is not None else ""
    yield f"]{more}}}".encode()
