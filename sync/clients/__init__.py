"""Clients of the outside services: HTTP plumbing, auth, the Dataverse Web API, enrichment."""
