"""Dataverse enrichment sync: plan messages of records, enrich them, write them back within
the limits."""
