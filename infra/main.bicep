// Production deployment of the Dataverse enrichment sync into one resource group:
// a Flex Consumption function app (Linux, Python 3.11) with a user-assigned managed identity for
// storage, Key Vault and Application Insights, and for Dataverse unless dataverseIdentityNames
// names identities of its own (one lane per identity and environment). No shared keys, no
// connection strings.
// With privateNetworking (the default), storage and Key Vault answer only on private endpoints
// in a virtual network the app is integrated with; the site itself admits no caller but the
// operators' addresses (the app has no HTTP trigger).
// Alert rules on runs and a workbook of a run read the app's telemetry in Application Insights.
// How to deploy: docs/deploying.md; how to operate it: docs/operations.md. Checked offline by tests/infra and by
// checkov (`make scan`); each check skipped inside a resource says why there.

targetScope = 'resourceGroup'

@description('Short lowercase name of this deployment (letters, digits, hyphens), part of every resource name.')
@minLength(2)
@maxLength(16)
param environmentName string

@description('Region of every resource; it must offer the Flex Consumption plan.')
param location string = resourceGroup().location

@description('Most instances each function scales out to (the queue worker, in practice): a cost and cold-start choice; the Dataverse DOP hint holds for any count (docs/deploying.md, "Choosing maximumInstanceCount").')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 4

@description('Memory of each instance, in MB.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Dataverse environment URL, e.g. https://contoso.crm.dynamics.com: environment default when dataverseEnvironments is empty.')
param dataverseUrl string

// Lanes: docs/deploying.md, "Several identities and environments". With both arrays empty (the default)
// the app syncs one environment as its own identity, DATAVERSE_URL and DATAVERSE_CLIENT_ID, as
// before, and SYNC_ENVIRONMENTS stays empty; otherwise SYNC_ENVIRONMENTS names every lane.

@description('Names of the identities that sign in to Dataverse, one user-assigned managed identity each, each its own application user in every environment (names: ^[a-z][a-z0-9-]{0,31}$, the app\'s rule: lanenames.json). Empty: the app\'s own identity, named default.')
param dataverseIdentityNames array = []

@description('The Dataverse environments to sync, [{name, url}] (names: ^[a-z][a-z0-9-]{0,31}$, the app\'s rule: lanenames.json); every identity is a user of each. Empty: one environment, default, at dataverseUrl.')
param dataverseEnvironments array = []

@description('dop_scope of every environment in SYNC_ENVIRONMENTS: environment (the DOP hint is one budget shared by the environment\'s identities, an assumption) or identity (each identity gets the whole hint).')
@allowed(['environment', 'identity'])
param dataverseDopScope string = 'environment'

@description('Base URL of the enrichment API.')
param enrichmentUrl string

@secure()
@description('Key of the enrichment API, written to Key Vault (the app setting is a Key Vault reference). Give it on the first deployment, or to replace the key; left empty, a deployment leaves the stored key as it is.')
param enrichmentApiKey string = ''

@description('Days a key version written by this template stays valid; Key Vault warns 30 days before it expires (an Azure Monitor alert).')
@minValue(31)
@maxValue(730)
param enrichmentKeyValidityDays int = 365

@description('Start of the validity of a key version written by this deployment. Leave the default.')
param deployedAt string = utcNow()

@description('Email address of the operators who get the alerts (the enrichment key\'s expiry); empty: the alerts show in Azure Monitor only.')
param alertEmailAddress string = ''

// Alerts on a run (modules/runalerts.bicep): what each means and what to do, docs/operations.md.

@description('Alert rules on runs (poison messages, dead letters, a run past its deadline, a circuit open for long, sustained 429s); false deploys none. The action group, the key-expiry alert and the workbook stay.')
param alertsEnabled bool = true

@description('Poison messages alert: fires when the poison queue holds more than this many messages.')
@minValue(0)
param poisonMessagesThreshold int = 0

@description('Dead letters alert: fires when a completed run dead-lettered more than this many records.')
@minValue(0)
param deadLettersThreshold int = 0

@description('Run deadline alert: fires for a run planned this many hours ago that has not completed (keep it under the time between two runs).')
@minValue(1)
@maxValue(23)
param runDeadlineHours int = 6

@description('Circuit alert: fires when a dependency\'s circuit stays open for this many minutes.')
@allowed([5, 10, 15, 30, 45, 60])
param circuitOpenMinutes int = 15

@description('Throttling alert: fires when Dataverse answers more than this many 429s per minute, on average over throttledWindowMinutes.')
@minValue(1)
param throttledPerMinuteThreshold int = 30

@description('Throttling alert: the window the 429 rate is averaged over, in minutes.')
@allowed([5, 10, 15, 30, 45, 60])
param throttledWindowMinutes int = 15

@description('Nothing-ran alert: fires when no run was planned for this many hours (the timer or the planner is dead). Keep it above the time between two runs, with an hour or two to spare.')
@minValue(2)
@maxValue(48)
param noRunHours int = 26

@description('Failed invocations alert: fires when more than this many function invocations failed in 15 minutes.')
@minValue(0)
param failedInvocationsThreshold int = 0

@description('Exceptions alert: fires when the app logged more than this many exceptions of one type in 15 minutes.')
@minValue(0)
param exceptionsThreshold int = 0

@description('Unexpected errors alert: fires when more than this many unexpected errors (bugs) of one type and trace stopped messages in 15 minutes.')
@minValue(0)
param unexpectedErrorsThreshold int = 0

// Networking and resilience. docs/deploying.md says what each costs.

@description('Private networking: a virtual network the app is integrated with (its outbound traffic, Key Vault references and the deployment package included), private endpoints and DNS zones for storage (blob, queue, table) and Key Vault, their public network access off. true suits production; false leaves them public (Entra ID only) for trials.')
param privateNetworking bool = true

@description('Operators\' public IPv4 addresses or CIDR ranges. The function app\'s endpoints (the site and its scm/deployment endpoint) admit them alone, in every networking mode. With privateNetworking, the storage and Key Vault firewalls admit them too where operatorStorageAccess and operatorKeyVaultAccess say so. Empty: nothing is open to the internet, and code is deployed from inside the network.')
param operatorIpAddresses array = []

@description('With privateNetworking and operatorIpAddresses: the storage account admits the operators\' addresses (sync status, the repair commands).')
param operatorStorageAccess bool = true

@description('With privateNetworking and operatorIpAddresses: the Key Vault admits the operators\' addresses (az keyvault commands; the runbook\'s key rotation goes through the resource manager and needs no opening).')
param operatorKeyVaultAccess bool = false

@description('Principal ids (object ids) of the operators who run sync status and the repair commands: each gets Storage Queue Data Contributor and Storage Table Data Contributor on the storage account, nothing else.')
param operatorPrincipalIds array = []

@description('What operatorPrincipalIds are: users, groups or service principals (one kind per deployment).')
@allowed(['User', 'Group', 'ServicePrincipal'])
param operatorPrincipalType string = 'User'

@description('With privateNetworking: resource ids of existing private DNS zones to register the private endpoints in, {blob, queue, table, vault} (an enterprise landing zone\'s central zones). A sub-resource left out gets a zone of its own in this resource group, linked to the network.')
param privateDnsZoneIds object = {}

@description('With privateNetworking: a NAT gateway with one static public IP on the integration subnet, the app\'s only egress address (output egressIpAddress), for Dataverse\'s IP firewall and the enrichment API\'s allow-list.')
param staticEgressIp bool = false

@description('With privateNetworking: address space of the virtual network; pick one that does not overlap a network you will peer it with.')
param vnetAddressPrefix string = '10.42.0.0/16'

@description('With privateNetworking: the subnet the app integrates with (one address per instance: keep it larger than maximumInstanceCount).')
param integrationSubnetPrefix string = '10.42.0.0/24'

@description('With privateNetworking: the subnet of the four private endpoints.')
param privateEndpointSubnetPrefix string = '10.42.1.0/27'

@description('Zone redundancy, where the region offers it: the plan spreads instances over availability zones and the storage account is zone-redundant (ZRS).')
param zoneRedundant bool = false

@description('Days a deleted Key Vault (and a deleted secret version) stays recoverable. Key Vault fixes it when the vault is created: an existing vault keeps its own (7 for vaults this template created before it took this parameter; pass that value to redeploy them).')
@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteRetentionDays int = 90

@description('Storage read logs (StorageRead of the queues and tables) in Log Analytics besides writes and deletes: every poll and state read of every instance, so a cost to choose.')
param storageReadLogs bool = false

// Tunable app settings. Their defaults are the code's (sync/config/settings.py); tests/infra checks it.
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

@description('SYNC_DEFINITION: what to sync, as JSON or @path to a JSON file in the app; empty for the default (sync/config/settings.py).')
param syncDefinition string = ''

@description('SYNC_DEFINITIONS: named sync definitions, as JSON or @path to a JSON file in the app; empty for one definition, default, from SYNC_DEFINITION (set one of the two).')
param syncDefinitions string = ''

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

@description('SYNC_PAUSE_DELAY_S: how long records of a paused definition or run (or waiting for a canary) stay invisible on the queue, in seconds.')
param syncPauseDelayS string = '60'

@description('SYNC_LEASE_S: lifetime of an instance\'s lease, in seconds.')
param syncLeaseS string = '15'

@description('SYNC_QUEUE_METRICS_SCHEDULE: six-field NCRONTAB schedule of the queue depth and age sampling, in UTC.')
param syncQueueMetricsSchedule string = '0 * * * * *'

@description('SYNC_DEADLETTER_RETENTION_DAYS: days a dead letter or poison message (personal data) is kept, on the queue and in its index.')
param syncDeadletterRetentionDays string = '30'

@description('SYNC_ROLLBACK_RETENTION_DAYS: days the values a run replaced (its before-images) are kept for sync rollback.')
param syncRollbackRetentionDays string = '14'

@description('SYNC_STATE_RETENTION_DAYS: days a run\'s rows (ledger, index, canary, report, flags) are kept after it started.')
param syncStateRetentionDays string = '30'

@description('SYNC_CLOCK_SKEW_S: how far instances\' clocks may differ, in seconds (expiries compared across instances allow it).')
param syncClockSkewS string = '5'

@description('SYNC_MESSAGE_DEADLINE_S: how long one message may run before its unfinished records go back on the queue (below functionTimeout less DATAVERSE_TIMEOUT_S).')
param syncMessageDeadlineS string = '480'

@description('SYNC_BUG_ATTEMPTS: deliveries an unexpected error may stop a message\'s records before they go to the poison queue.')
param syncBugAttempts string = '3'

@description('SYNC_SYSTEMATIC_RECORDS: records of a definition refused the same way that are at most dead-lettered before its circuit opens.')
param syncSystematicRecords string = '25'

@description('SYNC_SYSTEMATIC_SHARE: the share of a definition\'s records tried that the same refusal must reach to open its circuit.')
param syncSystematicShare string = '0.2'

@description('SYNC_SYSTEMATIC_WINDOW_S: the window over which refusals of one definition are counted, in seconds.')
param syncSystematicWindowS string = '600'

var token = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
}
var deploymentContainerName = 'app-package'
var enrichmentKeySecretName = 'enrichment-api-key'
// Operator addresses open a firewall only with private networking (without it, storage and Key
// Vault are public), and each resource only when its switch says so.
var storageOperatorIps = (privateNetworking && operatorStorageAccess) ? operatorIpAddresses : []
var keyVaultOperatorIps = (privateNetworking && operatorKeyVaultAccess) ? operatorIpAddresses : []
// Private endpoints only, unless operators need the public endpoint (within the firewall), or
// private networking is off.
var storagePublicNetworkAccess = (privateNetworking && empty(storageOperatorIps)) ? 'Disabled' : 'Enabled'
var keyVaultPublicNetworkAccess = (privateNetworking && empty(keyVaultOperatorIps)) ? 'Disabled' : 'Enabled'
// The site's access restrictions: operators' addresses allowed, everyone else denied (the default
// action). A restriction takes CIDR notation, so a plain address becomes a /32.
var siteOperatorRules = [for (address, i) in operatorIpAddresses: {
  name: 'operator-${i}'
  action: 'Allow'
  priority: 100 + i
  ipAddress: contains(address, '/') ? address : '${address}/32'
}]

// The app's identity: storage, Key Vault, App Insights, and Dataverse when dataverseIdentityNames
// is empty.
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${environmentName}-${token}'
  location: location
  tags: tags
}

// The Dataverse identities, none by default. They hold no Azure role (modules/dataverseidentities.bicep).
module dataverseIdentities 'modules/dataverseidentities.bicep' = {
  name: 'dataverse-identities'
  params: {
    namePrefix: 'id-${environmentName}-${token}'
    names: dataverseIdentityNames
    location: location
    tags: tags
  }
}

// SYNC_ENVIRONMENTS: {"<env>": {"url": ..., "identities": {"<name>": "<client id>"}, "dop_scope": ...}}
// with every identity in every environment. The client ids exist only at deployment, and a
// variable cannot loop over such values: each environment holds a placeholder that the app
// setting replaces with the identities (checkov's parser reads no toObject() to say it otherwise).
var environments = empty(dataverseEnvironments) ? [
  {
    name: 'default'
    url: dataverseUrl
  }
] : dataverseEnvironments
// Environment names the app would refuse fail the deployment before anything is created, as the
// identity names do in modules/dataverseidentities.bicep (lanenames.json says how).
var laneNameRule = loadJsonContent('lanenames.json')
var environmentNameValid = [for environment in environments: (length(environment.name) >= 1) && (length(environment.name) <= laneNameRule.maxLength) && contains(laneNameRule.firstChars, first(environment.name)) && empty(join(split(environment.name, laneNameRule.chars), ''))]
var checkedEnvironments = [for (environment, i) in environments: environmentNameValid[i] ? environment : int('Dataverse environment name "${environment.name}" does not match ${laneNameRule.pattern}')]
var identitiesPlaceholder = '<identities>'
var environmentMembers = [for environment in checkedEnvironments: '"${environment.name}": {"url": "${environment.url}", "identities": ${identitiesPlaceholder}, "dop_scope": "${dataverseDopScope}"}']
var lanesConfigured = !(empty(dataverseIdentityNames) && empty(dataverseEnvironments))
var identityMembers = empty(dataverseIdentityNames) ? [
  '"default": "${identity.properties.clientId}"'
] : dataverseIdentities.outputs.clientIdMembers
var syncEnvironments = lanesConfigured ? replace('{${join(environmentMembers, ', ')}}', identitiesPlaceholder, '{${join(identityMembers, ', ')}}') : ''

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'st${token}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    skuName: zoneRedundant ? 'Standard_ZRS' : 'Standard_LRS'
    privateNetworking: privateNetworking
    publicNetworkAccess: storagePublicNetworkAccess
    operatorIpAddresses: storageOperatorIps
    principalId: identity.properties.principalId
    operatorPrincipalIds: operatorPrincipalIds
    operatorPrincipalType: operatorPrincipalType
    workspaceId: monitoring.outputs.workspaceId
    readLogs: storageReadLogs
  }
}

module network 'modules/network.bicep' = if (privateNetworking) {
  name: 'network'
  params: {
    name: 'vnet-${environmentName}-${token}'
    location: location
    tags: tags
    addressPrefix: vnetAddressPrefix
    integrationSubnetPrefix: integrationSubnetPrefix
    privateEndpointSubnetPrefix: privateEndpointSubnetPrefix
    staticEgress: staticEgressIp
  }
}

module privateEndpoints 'modules/privateendpoints.bicep' = if (privateNetworking) {
  name: 'private-endpoints'
  params: {
    location: location
    tags: tags
    vnetId: network.outputs.id
    subnetId: network.outputs.privateEndpointSubnetId
    storageAccountId: storage.outputs.id
    keyVaultId: keyVault.outputs.id
    existingZoneIds: privateDnsZoneIds
  }
}

module alerts 'modules/actiongroup.bicep' = {
  name: 'action-group'
  params: {
    name: 'ag-${environmentName}-${token}'
    tags: tags
    emailAddress: alertEmailAddress
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

module runAlerts 'modules/runalerts.bicep' = if (alertsEnabled) {
  name: 'run-alerts'
  params: {
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
    actionGroupId: alerts.outputs.id
    poisonMessagesThreshold: poisonMessagesThreshold
    deadLettersThreshold: deadLettersThreshold
    runDeadlineHours: runDeadlineHours
    circuitOpenMinutes: circuitOpenMinutes
    throttledPerMinuteThreshold: throttledPerMinuteThreshold
    throttledWindowMinutes: throttledWindowMinutes
    noRunHours: noRunHours
    failedInvocationsThreshold: failedInvocationsThreshold
    exceptionsThreshold: exceptionsThreshold
    unexpectedErrorsThreshold: unexpectedErrorsThreshold
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  params: {
    location: location
    tags: tags
    appInsightsId: monitoring.outputs.appInsightsId
    displayName: 'Sync runs (${environmentName})'
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: 'kv-${token}'
    location: location
    tags: tags
    secretName: enrichmentKeySecretName
    privateNetworking: privateNetworking
    publicNetworkAccess: keyVaultPublicNetworkAccess
    operatorIpAddresses: keyVaultOperatorIps
    softDeleteRetentionDays: keyVaultSoftDeleteRetentionDays
    actionGroupId: alerts.outputs.id
    principalId: identity.properties.principalId
    workspaceId: monitoring.outputs.workspaceId
  }
}

// Written only when a key is given, so a deployment without one keeps the stored key.
module enrichmentKey 'modules/enrichmentkey.bicep' = if (!empty(enrichmentApiKey)) {
  name: 'enrichment-key'
  params: {
    vaultName: keyVault.outputs.name
    secretName: enrichmentKeySecretName
    value: enrichmentApiKey
    validityDays: enrichmentKeyValidityDays
    writtenAt: deployedAt
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: set by the zoneRedundant parameter, off by default because not every Flex Consumption region has availability zones; tests/infra/test_hardening.py::test_zone_redundancy_is_one_switch checks it reaches the plan and the storage SKU
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
    zoneRedundant: zoneRedundant
  }
}

// The network: Flex Consumption integrates with the subnet delegated to Microsoft.App/environments
// and takes no routing property (vnetRouteAllEnabled, vnetContentShareEnabled and the
// WEBSITE_VNET_ROUTE_ALL and WEBSITE_CONTENTOVERVNET settings are not used for networking in Flex
// Consumption). What keeps the traffic in the network is the integration itself with the DNS of
// the network: the privatelink zones resolve storage and Key Vault to their private endpoints,
// whose public access is off, so the host, the deployment package and the app's queues and tables
// are reached there, and the platform resolves the Key Vault reference through the integration
// when the vault refuses the public route.
resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17: no HTTP triggers (function_app.py has a timer and a queue trigger): no inbound requests to ask a client certificate of
  // checkov:skip=CKV_AZURE_222: public network access stays on so operators can deploy code and call the admin API from their addresses; the access restrictions deny every other caller by default, tests/infra/test_hardening.py::test_the_site_admits_only_operator_addresses checks it
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero on the queue's length; always-ready instances would bill all day for a nightly batch, and the messages of a lost instance become visible on the queue again for another
  // checkov:skip=CKV_AZURE_213: a health check probes an HTTP path and the app serves none (no HTTP triggers); an instance that fails leaves its queue messages to reappear and be retried
  // checkov:skip=CKV_AZURE_78: ftpsState is refused on Flex Consumption (FTPS is not supported there); FTP publishing is off through the ftp credentials policy below, tests/infra/test_hardening.py::test_basic_publishing_credentials_are_off checks it
  // checkov:skip=CKV_AZURE_18: no HTTP triggers, so no HTTP version to raise; http20Enabled is left out as no setting of Flex Consumption's, tests/infra/test_hardening.py::test_https_only_tls_1_2_and_no_setting_flex_consumption_refuses checks it
  // checkov:skip=CKV_AZURE_67: the same check for function apps: no HTTP triggers and no http20Enabled on Flex Consumption, tests/infra/test_hardening.py::test_https_only_tls_1_2_and_no_setting_flex_consumption_refuses checks it
  name: 'func-${environmentName}-${token}'
  location: location
  tags: {
    'azd-env-name': environmentName
    'azd-service-name': 'sync'
  }
  kind: 'functionapp,linux'
  // The private endpoints and their DNS records exist before the first start (the network
  // section above): no instance tries storage or the vault on a public endpoint that is off.
  dependsOn: [
    privateEndpoints
  ]
  identity: {
    type: 'UserAssigned'
    // The app's identity and each Dataverse identity.
    userAssignedIdentities: union({
      '${identity.id}': {}
    }, dataverseIdentities.outputs.userAssignedIdentities)
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id
    // Flex Consumption's network integration; no routing property (the network section above).
    virtualNetworkSubnetId: privateNetworking ? network.outputs.integrationSubnetId : null
    siteConfig: {
      minTlsVersion: '1.2'
      // No HTTP trigger: the site and its scm (deployment) endpoint admit the operators' addresses
      // and deny everyone else.
      ipSecurityRestrictionsDefaultAction: 'Deny'
      ipSecurityRestrictions: siteOperatorRules
      scmIpSecurityRestrictionsDefaultAction: 'Deny'
      scmIpSecurityRestrictionsUseMain: false
      scmIpSecurityRestrictions: siteOperatorRules
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

// No basic (user name and password) publishing: deployments sign in with Entra ID.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: functionApp
  name: 'scm'
  properties: {
    allow: false
  }
}

// Every setting the code reads in Azure (sync/config/settings.py AZURE_SETTING_NAMES) and every setting
// the host reads (sync/config/host_settings.py HOST_SETTING_NAMES), and nothing else: tests/infra checks
// both directions. The module outputs used here make these settings wait for the role assignments.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // These checks read the site's web, logs and auth configuration; this resource is its app settings.
  // checkov:skip=CKV_AZURE_13: no HTTP triggers: no inbound requests to authenticate
  // checkov:skip=CKV_AZURE_63: no HTTP triggers: no HTTP requests to log; the functions log to Application Insights (APPLICATIONINSIGHTS_CONNECTION_STRING below)
  // checkov:skip=CKV_AZURE_65: no HTTP triggers: no HTTP error pages to detail; errors are logged to Application Insights
  // checkov:skip=CKV_AZURE_66: no HTTP triggers: no failed HTTP requests to trace
  // checkov:skip=CKV_AZURE_80: a Python 3.11 app (functionAppConfig.runtime): no .NET Framework version to keep current
  // checkov:skip=CKV_AZURE_88: Flex Consumption has no Azure Files content share: it runs the package in the blob container of functionAppConfig.deployment
  // checkov:skip=CKV_AZURE_222: app settings have no public network access of their own; the site's is on functionApp
  parent: functionApp
  name: 'appsettings'
  // The key is written, and the private endpoints and their records exist, before the app
  // restarts on its settings and resolves the reference.
  dependsOn: [
    enrichmentKey
    privateEndpoints
  ]
  properties: {
    AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
    AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
    AzureWebJobsStorage__tableServiceUri: storage.outputs.tableEndpoint
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identity.properties.clientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
    // Read only while SYNC_ENVIRONMENTS is empty.
    DATAVERSE_URL: dataverseUrl
    DATAVERSE_CLIENT_ID: identity.properties.clientId
    SYNC_ENVIRONMENTS: syncEnvironments
    DATAVERSE_TIMEOUT_S: dataverseTimeoutS
    DATAVERSE_MAX_CONCURRENCY: dataverseMaxConcurrency
    DATAVERSE_KEEP_AFFINITY: dataverseKeepAffinity
    ENRICHMENT_URL: enrichmentUrl
    ENRICHMENT_API_KEY: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.referenceUri})'
    ENRICHMENT_TIMEOUT_S: enrichmentTimeoutS
    SYNC_SCHEDULE: syncSchedule
    SYNC_DEFINITION: syncDefinition
    SYNC_DEFINITIONS: syncDefinitions
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
    SYNC_PAUSE_DELAY_S: syncPauseDelayS
    SYNC_LEASE_S: syncLeaseS
    SYNC_QUEUE_METRICS_SCHEDULE: syncQueueMetricsSchedule
    SYNC_DEADLETTER_RETENTION_DAYS: syncDeadletterRetentionDays
    SYNC_ROLLBACK_RETENTION_DAYS: syncRollbackRetentionDays
    SYNC_STATE_RETENTION_DAYS: syncStateRetentionDays
    SYNC_CLOCK_SKEW_S: syncClockSkewS
    SYNC_MESSAGE_DEADLINE_S: syncMessageDeadlineS
    SYNC_BUG_ATTEMPTS: syncBugAttempts
    SYNC_SYSTEMATIC_RECORDS: syncSystematicRecords
    SYNC_SYSTEMATIC_SHARE: syncSystematicShare
    SYNC_SYSTEMATIC_WINDOW_S: syncSystematicWindowS
  }
}

output functionAppName string = functionApp.name
output identityClientId string = identity.properties.clientId
output identityPrincipalId string = identity.properties.principalId
// Every identity that signs in to Dataverse, [{name, clientId, principalId}]: create one
// application user of each in every environment (docs/deploying.md, "Several identities and environments").
output dataverseIdentities array = empty(dataverseIdentityNames) ? [
  {
    name: 'default'
    clientId: identity.properties.clientId
    principalId: identity.properties.principalId
  }
] : dataverseIdentities.outputs.identities
output storageAccountName string = storage.outputs.name
output keyVaultName string = keyVault.outputs.name
output appInsightsName string = monitoring.outputs.appInsightsName
// The app's one address on the internet with staticEgressIp; empty without it.
output egressIpAddress string = (privateNetworking && staticEgressIp) ? network.outputs.egressIpAddress : ''
