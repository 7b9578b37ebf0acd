"""``/_emulator/faults`` for any emulator: POST adds a rule (or a list of rules), GET lists the
rules in force, DELETE clears them all. Never throttled, never counted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from sync.local.emulators.webapi.fault_parsing import RuleError, parse_rule
from sync.local.emulators.webapi.faults import FaultBook, Rule

BookOf = Callable[[web.Application], FaultBook]


def add_fault_routes(app: web.Application, book_of: BookOf) -> None:
    """Serve the fault rules of the book ``book_of(app)`` answers."""

    async def add(request: web.Request) -> web.Response:
        book = book_of(request.app)
        try:
            data: Any = await request.json()
        except ValueError:
            return _refused("send a JSON object (a rule) or a list of rules")
        items = data if isinstance(data, list) else [data]
        try:
            rules = [_parsed(item, book, n if isinstance(data, list) else None)
                     for n, item in enumerate(items)]
        except RuleError as error:
            return _refused(str(error))
        added = [book.add(rule).id for rule in rules]
        return web.json_response({"added": added, "rules": book.listing()})

    async def listing(request: web.Request) -> web.Response:
        return web.json_response({"rules": book_of(request.app).listing()})

    async def clear(request: web.Request) -> web.Response:
        return web.json_response({"cleared": book_of(request.app).clear()})

    app.router.add_post("/_emulator/faults", add)
    app.router.add_get("/_emulator/faults", listing)
    app.router.add_delete("/_emulator/faults", clear)


def _parsed(item: Any, book: FaultBook, index: int | None) -> Rule:
    try:
        return parse_rule(item, book.dialect)
    except RuleError as error:
        raise RuleError(f"rules[{index}]: {error}" if index is not None else str(error)) \
            from None


def _refused(reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=400)
