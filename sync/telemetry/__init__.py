"""Telemetry: OpenTelemetry metrics, spans and events, exported to Application Insights.

The names and attributes in ``names.py`` are a contract (dashboards and alerts query them; the
docs/operations.md lists them); tests hold them fixed.
"""
