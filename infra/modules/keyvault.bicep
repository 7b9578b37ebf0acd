// A Key Vault in RBAC mode holding the enrichment API key. The app reads it through a Key Vault
// reference with its user-assigned identity, which may read this one secret and nothing else.

@description('Name of the vault (3 to 24 letters, digits and hyphens).')
param name string

@description('Region of the vault.')
param location string

@description('Tags of every resource.')
param tags object

@description('Name of the secret that holds the enrichment API key.')
param secretName string

@secure()
@description('The enrichment API key.')
param secretValue string

@description('Principal id of the app\'s user-assigned managed identity.')
param principalId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
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
    softDeleteRetentionInDays: 7
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
  }
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: secretName
  properties: {
    value: secretValue
    contentType: 'text/plain'
  }
}

// Key Vault Secrets User on the secret itself: the narrowest scope a Key Vault reference needs.
resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(secret.id, principalId, '4633458b-17de-408a-b874-0445c86b69e6')
  scope: secret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '4633458b-17de-408a-b874-0445c86b69e6')
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
// Versionless, so a new version of the secret reaches the app without a redeployment.
output referenceUri string = secret.properties.secretUri
