"""Dataverse enrichment sync: plan batches, enrich records, write them back within the limits."""
