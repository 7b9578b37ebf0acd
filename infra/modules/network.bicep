// The virtual network of the private-networking option (main.bicep, privateNetworking):
// one subnet delegated to Microsoft.App/environments, which is what Flex Consumption integrates
// with (not Microsoft.Web/serverFarms), and one for the private endpoints of storage and Key Vault.
// With staticEgress, a NAT gateway with one static public IP on the integration subnet: every
// connection the app opens to the internet (Dataverse, the enrichment API) leaves from that IP.

@description('Name of the virtual network.')
param name string

@description('Region of the network; Flex Consumption integrates only with a network in its own region.')
param location string

@description('Tags of every resource.')
param tags object

@description('Address space of the network.')
param addressPrefix string

@description('Address range of the subnet the app integrates with, inside addressPrefix: one address per instance, so at least maximumInstanceCount plus a few.')
param integrationSubnetPrefix string

@description('Address range of the private endpoints\' subnet, inside addressPrefix (four endpoints).')
param privateEndpointSubnetPrefix string

@description('A NAT gateway with a static public IP on the integration subnet.')
param staticEgress bool

resource egressIp 'Microsoft.Network/publicIPAddresses@2024-05-01' = if (staticEgress) {
  name: 'pip-${name}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Regional'
  }
  properties: {
    publicIPAddressVersion: 'IPv4'
    publicIPAllocationMethod: 'Static'
    idleTimeoutInMinutes: 4
  }
}

resource natGateway 'Microsoft.Network/natGateways@2024-05-01' = if (staticEgress) {
  name: 'ng-${name}'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    idleTimeoutInMinutes: 4
    publicIpAddresses: [
      {
        id: egressIp.id
      }
    ]
  }
}

// No inbound rule of its own: the defaults admit only traffic from inside the network, and the
// app and the private endpoints need nothing else. Attached so a rule can be added in one place.
resource subnetNsg 'Microsoft.Network/networkSecurityGroups@2024-05-01' = {
  name: 'nsg-${name}'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'integration'
        properties: {
          addressPrefix: integrationSubnetPrefix
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
          networkSecurityGroup: {
            id: subnetNsg.id
          }
          natGateway: staticEgress ? {
            id: natGateway.id
          } : null
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
          networkSecurityGroup: {
            id: subnetNsg.id
          }
        }
      }
    ]
  }
}

output id string = vnet.id
output integrationSubnetId string = vnet.properties.subnets[0].id
output privateEndpointSubnetId string = vnet.properties.subnets[1].id
output egressIpAddress string = staticEgress ? egressIp.properties.ipAddress : ''
