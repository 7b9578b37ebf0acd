"""The local stack: Azurite, the emulators and a host runner. Not deployed (see .funcignore)."""
