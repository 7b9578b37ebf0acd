// One version of the enrichment API key in the vault. main.bicep deploys this module only when it
// is given a key (the first deployment, or a deliberate replacement), so other deployments leave
// the stored key, and any version set since, as they are. Deployed on its own it rotates the key
// through the resource manager, with no redeployment and no access to the vault's (private)
// endpoint: docs/deploying.md, "Rotating the enrichment key".
// The version expires after validityDays; keyvault.bicep alerts 30 days before that.

@description('Name of the vault (keyvault.bicep).')
param vaultName string

@description('Name of the secret.')
param secretName string

@secure()
@description('The enrichment API key.')
param value string

@description('Days this version stays valid.')
@minValue(31)
@maxValue(730)
param validityDays int

@description('Start of its validity: the deployment\'s time. Leave the default.')
param writtenAt string = utcNow()

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: secretName
  properties: {
    value: value
    contentType: 'text/plain'
    attributes: {
      enabled: true
      exp: dateTimeToEpoch(dateTimeAdd(writtenAt, 'P${validityDays}D'))
    }
  }
}
