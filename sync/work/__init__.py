"""Carrying out one message: its holds, enrichment, writes in every mode, and its settlement."""
