"""Planning a run: which definitions are due, paging their tables into messages, checkpoints."""
