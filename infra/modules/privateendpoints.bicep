// Private endpoints of the private-networking option: the storage account's blob, queue and table
// services (the host, the deployment package, the app's queues and tables) and the Key Vault
// (the enrichment key's reference). Each gets the private DNS zone its public name resolves
// through (privatelink.*), linked to the network, so the app reaches the usual host names
// (st....blob.core.windows.net) at private addresses and nothing in its settings changes.

@description('Region of the private endpoints (the network\'s).')
param location string

@description('Tags of every resource.')
param tags object

@description('Resource id of the virtual network the DNS zones are linked to.')
param vnetId string

@description('Resource id of the subnet the private endpoints take their addresses from.')
param subnetId string

@description('Resource id of the storage account.')
param storageAccountId string

@description('Resource id of the Key Vault.')
param keyVaultId string

// Azure public cloud zone names (MicrosoftDocs azure-docs, private-link/
// private-endpoint-dns.md); groupId is the sub-resource each endpoint connects to.
var targets = [
  {
    groupId: 'blob'
    zone: 'privatelink.blob.core.windows.net'
    resourceId: storageAccountId
  }
  {
    groupId: 'queue'
    zone: 'privatelink.queue.core.windows.net'
    resourceId: storageAccountId
  }
  {
    groupId: 'table'
    zone: 'privatelink.table.core.windows.net'
    resourceId: storageAccountId
  }
  {
    groupId: 'vault'
    zone: 'privatelink.vaultcore.azure.net'
    resourceId: keyVaultId
  }
]

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [for target in targets: {
  name: target.zone
  location: 'global'
  tags: tags
}]

resource zoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [for (target, i) in targets: {
  parent: zones[i]
  name: 'link-${target.groupId}'
  location: 'global'
  tags: tags
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnetId
    }
  }
}]

resource endpoints 'Microsoft.Network/privateEndpoints@2024-05-01' = [for target in targets: {
  name: 'pe-${last(split(target.resourceId, '/'))}-${target.groupId}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: target.groupId
        properties: {
          privateLinkServiceId: target.resourceId
          groupIds: [
            target.groupId
          ]
        }
      }
    ]
  }
}]

// The zone group writes the endpoint's A record into its zone and keeps it there.
resource zoneGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = [for (target, i) in targets: {
  parent: endpoints[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: target.groupId
        properties: {
          privateDnsZoneId: zones[i].id
        }
      }
    ]
  }
}]
