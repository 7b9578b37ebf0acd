"""Shared state in Azure Storage: clients, the run ledger, runs, dead letters and their index."""
