"""The enrichment API's client: a definition's spec turned into requests (``calls``), answers
judged (``answers``), rate-limit headers read (``limits``), and the client that asks
(``client``)."""

from sync.clients.enrichment.answers import ItemOutcome, Later, Outcome, columns_of
from sync.clients.enrichment.client import EnrichmentClient, default_spec
from sync.config.enrichment_templates import SERVICE, domain_of

__all__ = ["SERVICE", "EnrichmentClient", "ItemOutcome", "Later", "Outcome", "columns_from",
           "columns_of", "default_spec", "domain_of"]


def columns_from(profile: dict[str, object], mapping: dict[str, str]) -> dict[str, object]:
    """The Dataverse columns to write for a profile of today's API; ``mapping`` is column ->
    profile field."""
    return {column: profile.get(source) for column, source in mapping.items()}
