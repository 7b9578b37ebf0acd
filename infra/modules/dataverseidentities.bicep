// The identities that sign in to Dataverse, one user-assigned managed identity per name. Each is
// its own Dataverse user (an application user in every environment, docs/deploying.md, "Several
// identities and environments"), so each brings its own service protection budget: one lane per
// identity and environment. They get no Azure role: Dataverse authorises them by their application
// users' security roles, and storage, Key Vault and telemetry stay with the app's own identity.
// Checkov's Bicep parser reads no toObject() or map(), so the objects below are built as JSON text.

@description('Start of every identity\'s name; the identity name follows it after a hyphen.')
param namePrefix string

@description('Names of the identities, as SYNC_ENVIRONMENTS names them (^[a-z][a-z0-9-]{0,31}$, the app\'s rule: ../lanenames.json).')
param names array

@description('Region of the identities.')
param location string

@description('Tags of the identities.')
param tags object

// The names the app accepts (../lanenames.json). Bicep has no regular expressions: a name is
// valid when its length is 1 to maxLength, it starts with one of firstChars, and splitting it at every
// character of chars leaves nothing. A name the app would refuse fails the deployment before
// anything is created: int() of the sentence below cannot convert it, and ARM's error quotes it.
var nameRule = loadJsonContent('../lanenames.json')
var valid = [for name in names: (length(name) >= 1) && (length(name) <= nameRule.maxLength) && contains(nameRule.firstChars, first(name)) && empty(join(split(name, nameRule.chars), ''))]
var checkedNames = [for (name, i) in names: valid[i] ? name : int('Dataverse identity name "${name}" does not match ${nameRule.pattern}')]

resource identities 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = [for name in checkedNames: {
  name: '${namePrefix}-${name}'
  location: location
  tags: tags
}]

// userAssignedIdentities of the function app: {"<resource id>": {}} per identity. A resource's id
// is known before it is deployed, so a variable may loop over it.
var assignments = [for (name, i) in names: '"${identities[i].id}": {}']

output userAssignedIdentities object = json('{${join(assignments, ', ')}}')

// One entry per identity, in the order of names: what an application user is created from.
output identities array = [for (name, i) in names: {
  name: name
  clientId: identities[i].properties.clientId
  principalId: identities[i].properties.principalId
}]

// The members of SYNC_ENVIRONMENTS' "identities" object, "<name>": "<client id>", one per identity.
// Client ids are known only once the identities exist: an output may loop over them, a variable not.
output clientIdMembers array = [for (name, i) in names: '"${name}": "${identities[i].properties.clientId}"']
