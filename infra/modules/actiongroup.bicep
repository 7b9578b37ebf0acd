// Where operational alerts go: one action group, with an email receiver when an address is given.
// Without one the alerts still fire and show in Azure Monitor (Alerts), and receivers can be
// added to this group later.

@description('Name of the action group.')
param name string

@description('Tags of every resource.')
param tags object

@description('Email address the alerts go to; empty for none.')
param emailAddress string

resource group 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: name
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'dvsync'
    enabled: true
    emailReceivers: empty(emailAddress) ? [] : [
      {
        name: 'operators'
        emailAddress: emailAddress
        useCommonAlertSchema: true
      }
    ]
  }
}

output id string = group.id
