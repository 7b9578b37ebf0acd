"""In-repo emulators of the services the sync talks to, served over real HTTP on loopback."""
