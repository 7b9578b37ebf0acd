// A Key Vault in RBAC mode for the enrichment API key (the secret itself: enrichmentkey.bicep,
// written once). The app reads it through a versionless Key Vault reference with its
// user-assigned identity, so a new version reaches the app without a redeployment.
// A version with an expiry makes Key Vault announce it 30 days ahead (SecretNearExpiry); an Event
// Grid subscription turns that into an Azure Monitor alert. An expired secret still resolves
// (Key Vault's get works outside the nbf/exp window), so the expiry warns and never stops the app
// from loading.
// Every read of the secret (the platform resolving the reference, an operator) is in the vault's
// audit log (AuditEvent), sent to the Log Analytics workspace.

@description('Name of the vault (3 to 24 letters, digits and hyphens).')
param name string

@description('Region of the vault.')
param location string

@description('Tags of every resource.')
param tags object

@description('Name of the secret that holds the enrichment API key.')
param secretName string

@description('Private networking (main.bicep, privateNetworking): reachable through a private endpoint, the public endpoint closed but for operatorIpAddresses.')
param privateNetworking bool

@description('Public IPv4 addresses or CIDR ranges the firewall admits (main.bicep passes them only with privateNetworking).')
param operatorIpAddresses array = []

@description('Disabled: private endpoints only. Enabled: the public endpoint too, within the firewall (main.bicep decides).')
@allowed(['Enabled', 'Disabled'])
param publicNetworkAccess string

@description('Days a deleted vault or secret version stays recoverable (7 to 90); fixed when the vault is created.')
@minValue(7)
@maxValue(90)
param softDeleteRetentionDays int = 90

@description('Resource id of the action group the expiry alerts notify.')
param actionGroupId string

@description('Resource id of the Log Analytics workspace the audit log goes to.')
param workspaceId string

@description('Principal id of the app\'s user-assigned managed identity.')
param principalId string

// With private networking the firewall denies by default and admits the operators' addresses
// alone. The bypass lets trusted Azure services (the resource manager writing the secret at
// deployment among them) through.
var ipRules = [for address in operatorIpAddresses: {
  value: address
}]

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: defaultAction is Deny with the privateNetworking parameter (main.bicep, on by default) and Allow without it, a condition checkov does not evaluate; tests/infra/test_networking.py::test_storage_and_key_vault_firewalls checks both settings
  // checkov:skip=CKV_AZURE_189: publicNetworkAccess is a parameter, Disabled with privateNetworking unless operatorKeyVaultAccess opens it to operatorIpAddresses (main.bicep), a condition checkov cannot read; tests/infra/test_networking.py::test_storage_and_key_vault_firewalls checks every combination
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionDays
    enablePurgeProtection: true
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
      ipRules: ipRules
      virtualNetworkRules: []
    }
  }
}

// Key Vault Secrets User on the vault, which holds this one secret and nothing else: the secret
// may not exist yet when the template runs (it is written once, and not by every deployment).
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, '4633458b-17de-408a-b874-0445c86b69e6')
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

// The audit log: who read, wrote or listed what, with the caller's identity and address.
resource auditLog 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        category: 'AuditEvent'
        enabled: true
      }
    ]
  }
}

// Key Vault's events, for the expiry alert below.
resource events 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: 'evgt-${name}'
  location: location
  tags: tags
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

// SecretNearExpiry (30 days before exp) and SecretExpired of this secret become Azure Monitor
// alerts to the action group. Azure Monitor alerts accept CloudEvents only.
resource expiryAlert 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: events
  name: 'enrichment-key-expiry'
  properties: {
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    filter: {
      includedEventTypes: [
        'Microsoft.KeyVault.SecretNearExpiry'
        'Microsoft.KeyVault.SecretExpired'
      ]
      subjectBeginsWith: secretName
      subjectEndsWith: secretName
    }
    destination: {
      endpointType: 'MonitorAlert'
      properties: {
        severity: 'Sev2'
        description: 'The enrichment API key in ${name} expires within 30 days (or has expired): set a new version with an expiry (docs/deploying.md, "Rotating the enrichment key").'
        actionGroups: [
          actionGroupId
        ]
      }
    }
  }
}

output id string = vault.id
output name string = vault.name
// Versionless, so a new version of the secret reaches the app without a redeployment. Built from
// the vault's URI because the secret is not declared on every deployment.
output referenceUri string = '${vault.properties.vaultUri}secrets/${secretName}'
