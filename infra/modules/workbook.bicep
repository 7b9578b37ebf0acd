// The Azure Monitor workbook of a run: throughput, 429s by facet, requests in flight against the
// DOP hint, queue depth and age, dead letters by reason. Its definition is
// infra/workbooks/run.json (edit it in the portal's Advanced Editor and paste it back); its
// queries name only the contract names of sync/telemetry/names.py (tests/infra/test_alerts.py).

@description('Region of the workbook.')
param location string

@description('Tags of every resource.')
param tags object

@description('Resource id of the Application Insights component the workbook reads.')
param appInsightsId string

@description('Name shown in the portal.')
param displayName string

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // A workbook's name is a GUID; this one is stable per component, so redeploying updates it.
  name: guid(appInsightsId, 'run-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: toLower(appInsightsId)
    version: 'Notebook/1.0'
    serializedData: loadTextContent('../workbooks/run.json')
  }
}

output id string = workbook.id
