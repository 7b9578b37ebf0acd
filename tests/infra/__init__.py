"""Offline checks of the Bicep in infra/: parsed with pycep-parser, no Azure and no Bicep CLI."""
