// Private endpoints of the private-networking option: the storage account's blob, queue and table
// services (the host, the deployment package, the app's queues and tables) and the Key Vault
// (the enrichment key's reference). Each endpoint registers its address in the private DNS zone
// its public name resolves through (privatelink.*): a zone of its own, linked to the network
// (privatednszone.bicep), or an existing central one, so the app reaches the usual host names
// (st....blob.core.windows.net) at private addresses and nothing in its settings changes.

@description('Region of the private endpoints (the network\'s).')
param location string

@description('Tags of every resource.')
param tags object

@description('Resource id of the virtual network the created DNS zones are linked to.')
param vnetId string

@description('Resource id of the subnet the private endpoints take their addresses from.')
param subnetId string

@description('Resource id of the storage account.')
param storageAccountId string

@description('Resource id of the Key Vault.')
param keyVaultId string

@description('Existing private DNS zones by sub-resource, {blob, queue, table, vault}: resource ids; a sub-resource left out gets a zone of its own.')
param existingZoneIds object = {}

// Zone names from the cloud the deployment runs in (MicrosoftDocs azure-docs, private-link/
// private-endpoint-dns.md): privatelink.<service>.<storage suffix> for storage, and for Key Vault
// privatelink.vaultcore.<the domain after vault. in the vault DNS suffix>, e.g. azure.net in
// Azure's public cloud, azure.cn in Azure China, usgovcloudapi.net in Azure Government.
// groupId is the sub-resource each endpoint connects to.
var storageSuffix = environment().suffixes.storage
var vaultDomain = skip(environment().suffixes.keyvaultDns, length('.vault.'))
var targets = [
  {
    groupId: 'blob'
    zone: 'privatelink.blob.${storageSuffix}'
    resourceId: storageAccountId
  }
  {
    groupId: 'queue'
    zone: 'privatelink.queue.${storageSuffix}'
    resourceId: storageAccountId
  }
  {
    groupId: 'table'
    zone: 'privatelink.table.${storageSuffix}'
    resourceId: storageAccountId
  }
  {
    groupId: 'vault'
    zone: 'privatelink.vaultcore.${vaultDomain}'
    resourceId: keyVaultId
  }
]

module zones 'privatednszone.bicep' = [for target in targets: {
  name: 'private-dns-${target.groupId}'
  params: {
    name: target.zone
    existingZoneId: contains(existingZoneIds, target.groupId) ? existingZoneIds[target.groupId] : ''
    vnetId: vnetId
    linkName: 'link-${target.groupId}'
    tags: tags
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
          privateDnsZoneId: zones[i].outputs.id
        }
      }
    ]
  }
}]
