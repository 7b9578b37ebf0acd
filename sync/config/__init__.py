"""Configuration: the app settings, the sync definitions, lanes, schedules and resource names."""
