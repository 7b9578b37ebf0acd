"""``make bench``: the product against what users write today, on the same data and limits."""
