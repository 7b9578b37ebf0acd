"""Operator commands: status, repair, storage set-up; run against Azurite or Azure."""
