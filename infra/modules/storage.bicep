// The storage account of the host and of the app: shared keys off, Entra ID only.
// Holds the deployment package container, the app's queues and tables, the three data roles
// of the app's managed identity and the two of each operator, scoped to this account and nothing
// wider. Writes and deletes on the queues and tables (and reads, with readLogs) are logged to
// the Log Analytics workspace.

@description('Name of the storage account (3 to 24 lowercase letters and digits).')
param name string

@description('Region of the account.')
param location string

@description('Tags of every resource.')
param tags object

@description('Blob container the Flex Consumption plan deploys the app package from.')
param deploymentContainerName string

@description('Principal id of the app\'s user-assigned managed identity.')
param principalId string

@description('Principal ids of the operators: Storage Queue Data Contributor and Storage Table Data Contributor each, for sync status and the repair commands.')
param operatorPrincipalIds array = []

@description('What operatorPrincipalIds are.')
@allowed(['User', 'Group', 'ServicePrincipal'])
param operatorPrincipalType string = 'User'

@description('Resource id of the Log Analytics workspace the queue and table logs go to.')
param workspaceId string

@description('Log reads (StorageRead) too, not only writes and deletes.')
param readLogs bool = false

@description('Replication of the account: ZRS keeps three copies in three availability zones, where the region has them.')
@allowed(['Standard_LRS', 'Standard_ZRS'])
param skuName string = 'Standard_LRS'

@description('Private networking (main.bicep, privateNetworking): reachable through private endpoints, the public endpoint closed but for operatorIpAddresses.')
param privateNetworking bool

@description('Public IPv4 addresses or CIDR ranges the firewall admits (main.bicep passes them only with privateNetworking).')
param operatorIpAddresses array = []

@description('Disabled: private endpoints only. Enabled: the public endpoint too, within the firewall (main.bicep decides).')
@allowed(['Enabled', 'Disabled'])
param publicNetworkAccess string

// With private networking the firewall denies by default, with no trusted-service bypass, and
// admits the operators' addresses alone (an IP rule applies only while publicNetworkAccess is
// Enabled, which is why main.bicep keeps it on when there are any).
var ipRules = [for address in operatorIpAddresses: {
  value: address
  action: 'Allow'
}]

// Built-in roles (MicrosoftDocs azure-docs, role-based-access-control/built-in-roles.md).
var queueDataContributorRole = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var tableDataContributorRole = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'

// The log categories of a queue or table service sent to the workspace.
var logCategories = readLogs ? ['StorageRead', 'StorageWrite', 'StorageDelete'] : ['StorageWrite', 'StorageDelete']
var logs = [for category in logCategories: {
  category: category
  enabled: true
}]

// The same names as sync/config/storage_names.py (QUEUES and TABLES); tests/infra checks that they agree.
var queueNames = ['sync-batches', 'sync-batches-poison', 'sync-deadletter', 'sync-plan']
var tableNames = ['SyncLedger', 'SyncState', 'SyncDeadLetters', 'SyncPoison', 'SyncReports', 'SyncBeforeImages', 'SyncEnrichmentCache']

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: defaultAction is Deny with the privateNetworking parameter (main.bicep, on by default) and Allow without it, a condition checkov does not evaluate; tests/infra/test_networking.py::test_storage_and_key_vault_firewalls checks both settings
  // checkov:skip=CKV_AZURE_206: replication is the skuName parameter, which main.bicep sets to Standard_ZRS with zoneRedundant (Standard_LRS keeps three copies in one datacenter); tests/infra/test_hardening.py::test_zone_redundancy_is_one_switch checks it
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    allowBlobPublicAccess: false
    supportsHttpsTrafficOnly: true
    allowCrossTenantReplication: false
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: privateNetworking ? 'None' : 'AzureServices'
      ipRules: ipRules
      virtualNetworkRules: []
    }
    accessTier: 'Hot'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queueName in queueNames: {
  parent: queueService
  name: queueName
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [for tableName in tableNames: {
  parent: tableService
  name: tableName
}]

// Storage Blob Data Owner: the host keeps its leases, timer schedule and keys in blobs, and
// the platform reads the deployment package with this identity.
resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Storage Queue Data Contributor: the queue trigger, the planner, re-enqueues and dead letters.
resource queueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, queueDataContributorRole)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', queueDataContributorRole)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// Storage Table Data Contributor: the run ledger and the shared state (DOP hint, gate, leases).
resource tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, tableDataContributorRole)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', tableDataContributorRole)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The operators: the queue and table roles the runbook's commands need, and no blob role (the
// commands read no blob; the host's blobs stay the app's).
resource operatorQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for operator in operatorPrincipalIds: {
  name: guid(account.id, operator, queueDataContributorRole)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', queueDataContributorRole)
    principalId: operator
    principalType: operatorPrincipalType
  }
}]

resource operatorTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for operator in operatorPrincipalIds: {
  name: guid(account.id, operator, tableDataContributorRole)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', tableDataContributorRole)
    principalId: operator
    principalType: operatorPrincipalType
  }
}]

// Who wrote or deleted which message or entity (a purge, a replay, the app), per service.
resource queueLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'queue-logs-to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: workspaceId
    logs: logs
  }
}

resource tableLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'table-logs-to-log-analytics'
  scope: tableService
  properties: {
    workspaceId: workspaceId
    logs: logs
  }
}

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table
