"""What the observable gauges read from a process's services: DOP in use against the hint, and
each dependency's circuit state."""

from __future__ import annotations

from sync.services import Services
from sync.telemetry import metrics


def watched_of(services: Services) -> metrics.Watched:
    """The live state of ``services`` as the gauges read it at each collection."""
    governor, dataverse = services.governor, services.dataverse
    circuits = {dep.name: (lambda circuit=dep.circuit: circuit.state)
                for dep in (services.dataverse_dep, services.enrichment_dep)}
    return metrics.Watched(dop_in_use=lambda: governor.in_flight,
                           dop_hint=lambda: dataverse.dop_hint, circuits=circuits)


def watch_services(services: Services) -> None:
    """Let the gauges read ``services`` until ``unwatch_services``."""
    metrics.watch(id(services), watched_of(services))


def unwatch_services(services: Services) -> None:
    metrics.unwatch(id(services))
