// One private DNS zone of the private-networking option, or none: with an existing zone (an
// enterprise landing zone's central zone, given as its resource id) this creates nothing and
// hands that zone on; otherwise it creates the zone in this resource group and links it to the
// network, so the network resolves the service's name to its private endpoint.

@description('Name of the zone (privatelink.<service suffix of this cloud>).')
param name string

@description('Resource id of an existing zone to use instead; empty: create one.')
param existingZoneId string = ''

@description('Resource id of the virtual network a created zone is linked to.')
param vnetId string

@description('Name of the link (the sub-resource it serves).')
param linkName string

@description('Tags of every resource.')
param tags object

resource zone 'Microsoft.Network/privateDnsZones@2024-06-01' = if (empty(existingZoneId)) {
  name: name
  location: 'global'
  tags: tags
}

resource link 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = if (empty(existingZoneId)) {
  parent: zone
  name: linkName
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnetId
    }
  }
}

// The zone the endpoint registers its record in. A zone group that reads this output waits for
// the whole module, the link included: its record is written where the network resolves.
output id string = empty(existingZoneId) ? zone.id : existingZoneId
