// Production deployment of the Dataverse enrichment sync into one resource group:
// a Flex Consumption function app (Linux, Python 3.11) with a user-assigned managed identity for
// storage, Dataverse, Key Vault and Application Insights. No shared keys, no connection strings.
// How to deploy: README.md, "Deploying to Azure". Checked offline by tests/infra.

targetScope = 'resourceGroup'

@description('Short lowercase name of this deployment (letters, digits, hyphens), part of every resource name.')
@minLength(2)
@maxLength(16)
param environmentName string

@description('Region of every resource; it must offer the Flex Consumption plan.')
param location string = resourceGroup().location

@description('Most instances each function scales out to (the queue worker, in practice). Size it against the Dataverse DOP hint: README.md, "Deploying to Azure".')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 4

@description('Memory of each instance, in MB.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Dataverse environment URL, e.g. https://contoso.crm.dynamics.com.')
param dataverseUrl string

@description('Base URL of the enrichment API.')
param enrichmentUrl string

@secure()
@description('Key of the enrichment API. Stored in Key Vault; the app setting is a Key Vault reference.')
param enrichmentApiKey string

// Tunable app settings. Their defaults are the code's (sync/settings.py); tests/infra checks it.
// They are strings because app settings are: the app validates them at start-up.

@description('SYNC_SCHEDULE: six-field NCRONTAB schedule of the planner, in UTC.')
param syncSchedule string = '0 0 2 * * *'

@description('DATAVERSE_TIMEOUT_S: timeout of one Dataverse request, in seconds.')
param dataverseTimeoutS string = '30'

@description('DATAVERSE_MAX_CONCURRENCY: cap on one instance\'s concurrent Dataverse requests; its share of the DOP hint decides below it.')
param dataverseMaxConcurrency string = '52'

@description('DATAVERSE_KEEP_AFFINITY: true pins to one web server; false spreads requests over all of them.')
param dataverseKeepAffinity string = 'false'

@description('ENRICHMENT_TIMEOUT_S: timeout of one enrichment call, in seconds.')
param enrichmentTimeoutS string = '10'

@description('SYNC_DEFINITION: what to sync, as JSON or @path to a JSON file in the app; empty for the default (sync/settings.py).')
param syncDefinition string = ''

@description('SYNC_PLAN_BUDGET_S: how long one planner invocation pages before it hands on to a continuation message, in seconds.')
param syncPlanBudgetS string = '120'

@description('SYNC_PAGE_SIZE: records per page read.')
param syncPageSize string = '5000'

@description('SYNC_BATCH_SIZE: records per batch message.')
param syncBatchSize string = '100'

@description('SYNC_MAX_RETRIES: retries inside one invocation after a service fault; then the records go back on the queue, never to dead letters.')
param syncMaxRetries string = '3'

@description('SYNC_CIRCUIT_THRESHOLD: consecutive service faults of one dependency that open its circuit for the cluster.')
param syncCircuitThreshold string = '8'

@description('SYNC_CIRCUIT_OPEN_S: how long a circuit first stays open, in seconds; each further opening doubles it.')
param syncCircuitOpenS string = '5'

@description('SYNC_CIRCUIT_MAX_OPEN_S: the longest a circuit stays open, in seconds.')
param syncCircuitMaxOpenS string = '300'

@description('SYNC_RECORD_PROBES: deliveries on which a record meets an ambiguous fault while its siblings succeed before it is dead-lettered.')
param syncRecordProbes string = '3'

@description('SYNC_WRITE_MODE: single (PATCH per record), batch ($batch) or bulk (UpdateMultiple).')
param syncWriteMode string = 'bulk'

@description('SYNC_BATCH_OPERATIONS: operations per $batch request in batch mode.')
param syncBatchOperations string = '10'

@description('SYNC_BULK_TARGETS: targets per UpdateMultiple request in bulk mode.')
param syncBulkTargets string = '100'

@description('SYNC_MAX_WAIT_S: longest wait for the throttle gate inside an invocation, in seconds.')
param syncMaxWaitS string = '2'

@description('SYNC_STATE_REFRESH_S: how often an instance reads the shared state, in seconds.')
param syncStateRefreshS string = '1'

@description('SYNC_LEASE_S: lifetime of an instance\'s lease, in seconds.')
param syncLeaseS string = '15'

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
}
var deploymentContainerName = 'app-package'

// One identity for everything the app reaches: storage, Dataverse, Key Vault, App Insights.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${environmentName}-${token}'
  location: location
  tags: tags
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'st${token}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    principalId: identity.properties.principalId
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: 'log-${environmentName}-${token}'
    appInsightsName: 'appi-${environmentName}-${token}'
    location: location
    tags: tags
    principalId: identity.properties.principalId
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: 'kv-${token}'
    location: location
    tags: tags
    secretName: 'enrichment-api-key'
    secretValue: enrichmentApiKey
    principalId: identity.properties.principalId
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${environmentName}-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-${environmentName}-${token}'
  location: location
  tags: {
    'azd-env-name': environmentName
    'azd-service-name': 'sync'
  }
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.outputs.blobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Every setting the code reads in Azure (sync/settings.py AZURE_SETTING_NAMES) and every setting
// the host reads (sync/hostsettings.py HOST_SETTING_NAMES), and nothing else: tests/infra checks
// both directions. The module outputs used here make these settings wait for the role assignments.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: {
    AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
    AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
    AzureWebJobsStorage__tableServiceUri: storage.outputs.tableEndpoint
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identity.properties.clientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
    DATAVERSE_URL: dataverseUrl
    DATAVERSE_CLIENT_ID: identity.properties.clientId
    DATAVERSE_TIMEOUT_S: dataverseTimeoutS
    DATAVERSE_MAX_CONCURRENCY: dataverseMaxConcurrency
    DATAVERSE_KEEP_AFFINITY: dataverseKeepAffinity
    ENRICHMENT_URL: enrichmentUrl
    ENRICHMENT_API_KEY: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.referenceUri})'
    ENRICHMENT_TIMEOUT_S: enrichmentTimeoutS
    SYNC_SCHEDULE: syncSchedule
    SYNC_DEFINITION: syncDefinition
    SYNC_PLAN_BUDGET_S: syncPlanBudgetS
    SYNC_PAGE_SIZE: syncPageSize
    SYNC_BATCH_SIZE: syncBatchSize
    SYNC_MAX_RETRIES: syncMaxRetries
    SYNC_CIRCUIT_THRESHOLD: syncCircuitThreshold
    SYNC_CIRCUIT_OPEN_S: syncCircuitOpenS
    SYNC_CIRCUIT_MAX_OPEN_S: syncCircuitMaxOpenS
    SYNC_RECORD_PROBES: syncRecordProbes
    SYNC_WRITE_MODE: syncWriteMode
    SYNC_BATCH_OPERATIONS: syncBatchOperations
    SYNC_BULK_TARGETS: syncBulkTargets
    SYNC_MAX_WAIT_S: syncMaxWaitS
    SYNC_STATE_REFRESH_S: syncStateRefreshS
    SYNC_LEASE_S: syncLeaseS
  }
}

output functionAppName string = functionApp.name
output identityClientId string = identity.properties.clientId
output identityPrincipalId string = identity.properties.principalId
output storageAccountName string = storage.outputs.name
output keyVaultName string = keyVault.outputs.name
output appInsightsName string = monitoring.outputs.appInsightsName
