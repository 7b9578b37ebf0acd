"""Lanes: one Dataverse identity in one environment, each with its own token, client, governor,
throttle gate, circuit and leases (``sync.lanes.lane``), configured by ``SYNC_ENVIRONMENTS``
(``sync.lanes.config``) and chosen per message (``sync.lanes.routing``)."""
