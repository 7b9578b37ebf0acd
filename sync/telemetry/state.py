"""What the observable gauges read from a process's services: DOP in use against the hint, and
each dependency's circuit state."""

from __future__ import annotations

from sync.services import Services
from sync.telemetry import metrics


def watched_of(services: Services) -> metrics.Watched:
    """The live state of ``services`` as the gauges read it at each collection: requests in
    flight over every lane, the largest hint any lane saw, each circuit (a lane's Dataverse
    circuit named ``dataverse`` for the single lane, ``dataverse:<env>/<identity>`` else)."""
    lanes = list(services.lanes.values())
    dependencies = [(lane.dependency.name if lane.key.is_default
                     else f"{lane.dependency.name}:{lane.key}", lane.dependency)
                    for lane in lanes]
    dependencies += [(e.dependency.name, e.dependency) for e in services.enrichers.values()]
    circuits = {name: (lambda circuit=dep.circuit: circuit.state)
                for name, dep in dependencies}

    def hint() -> int | None:
        return max((h for lane in lanes if (h := lane.dataverse.dop_hint) is not None),
                   default=None)

    return metrics.Watched(dop_in_use=lambda: sum(lane.governor.in_flight for lane in lanes),
                           dop_hint=hint, circuits=circuits)


def watch_services(services: Services) -> None:
    """Let the gauges read ``services`` until ``unwatch_services``."""
    metrics.watch(id(services), watched_of(services))


def unwatch_services(services: Services) -> None:
    metrics.unwatch(id(services))
