"""The request budget: the governor, the shared DOP slots and gate, the governed call, lanes."""
