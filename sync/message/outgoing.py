"""A message on its way to the batch queue: its body and how long it stays invisible. The
worker's remainder parts are these; the ledger keeps them with the row that counts them until
they are sent (``sync.state.ledger``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send: its JSON text and its visibility delay in whole seconds."""

    body: str
    visibility_s: int
