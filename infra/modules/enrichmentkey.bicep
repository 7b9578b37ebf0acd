// One version of the enrichment API key in the vault. main.bicep deploys this module only when it
// is given a key (the first deployment, or a deliberate replacement), so other deployments leave
// the stored key, and any version set since with `az keyvault secret set`, as they are.
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

@description('Start of its validity (a utcNow() default in main.bicep).')
param writtenAt string

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
