// Alerts on a run, as log search alerts over the app's own telemetry in Application Insights:
// the metric and event names are the contract in sync/telemetry/names.py (metrics land in
// customMetrics, events in customEvents, their attributes in customDimensions); the failed
// invocations and exceptions alerts read what the Functions host and the logging exporter write
// (requests, exceptions). Every number a
// rule compares against is a parameter (main.bicep passes its own); the queries hold none, and
// tests/infra/test_alerts.py checks both, and that the queries name only contract names.
// What each alert means and what to do: docs/operations.md, "Alerts".

@description('Region of the rules: the Application Insights component\'s.')
param location string

@description('Tags of every resource.')
param tags object

@description('Resource id of the Application Insights component the rules query.')
param appInsightsId string

@description('Resource id of the action group the rules notify.')
param actionGroupId string

@description('Poison messages: the alert fires when the poison queue holds more than this many messages.')
@minValue(0)
param poisonMessagesThreshold int

@description('Dead letters: the alert fires when a completed run dead-lettered more than this many records.')
@minValue(0)
param deadLettersThreshold int

@description('Run deadline: the alert fires for a run planned this many hours ago that has not completed.')
@minValue(1)
@maxValue(23)
param runDeadlineHours int

@description('Circuit open: the alert fires when a circuit has not closed for this many minutes.')
@allowed([5, 10, 15, 30, 45, 60])
param circuitOpenMinutes int

@description('Throttling: the alert fires when Dataverse answers more than this many 429s per minute, on average over throttledWindowMinutes.')
@minValue(1)
param throttledPerMinuteThreshold int

@description('Throttling: the window the 429 rate is averaged over, in minutes.')
@allowed([5, 10, 15, 30, 45, 60])
param throttledWindowMinutes int

@description('Nothing ran: the alert fires when no run was planned for this many hours.')
@minValue(2)
@maxValue(48)
param noRunHours int

@description('Failed invocations: the alert fires when more than this many invocations of one function failed in 15 minutes.')
@minValue(0)
param failedInvocationsThreshold int

@description('Exceptions: the alert fires when more than this many exceptions of one type were logged in 15 minutes.')
@minValue(0)
param exceptionsThreshold int

@description('Unexpected errors: the alert fires when more than this many unexpected errors (bugs) of one type and trace stopped messages in 15 minutes.')
@minValue(0)
param unexpectedErrorsThreshold int

// sync/telemetry/names.py: CIRCUIT_STATE is 0 closed, 1 half-open, 2 open. A contract value,
// not a threshold.
var circuitClosedState = 0

// The poison queue's depth, as the app reports it per queue (QUEUE_DEPTH, attribute QUEUE).
var poisonQuery = '''
customMetrics
| where name == "sync.queue.depth"
| where tostring(customDimensions["sync.queue"]) == "sync-batches-poison"
| project timestamp, depth = value
'''

// The dead letters of each completed run (RUN_COMPLETED, attribute DEAD_LETTERED).
var deadLettersQuery = '''
customEvents
| where name == "run_completed"
| project timestamp,
    runId = tostring(customDimensions["sync.run_id"]),
    deadLettered = toint(customDimensions["sync.dead_lettered"])
'''

// Runs planned longer ago than the deadline with no RUN_COMPLETED for the same run id.
var overdueQuery = '''
let planned = customEvents
| where name == "run_planned" and timestamp < ago({0}h)
| project timestamp, runId = tostring(customDimensions["sync.run_id"]);
let completed = customEvents
| where name == "run_completed"
| project runId = tostring(customDimensions["sync.run_id"]);
planned
| join kind=leftanti completed on runId
'''

// Services whose circuit has not closed for circuitOpenMinutes: the latest reported state is not
// closed (open, or half-open while it probes), and every report since the last closed one (or
// since the window's start) spans at least that long. Reports stop when no instance runs; the
// last ones still count.
var circuitQuery = '''
let states = customMetrics
| where name == "sync.circuit.state"
| project timestamp, service = tostring(customDimensions["sync.service"]), state = value;
let lastClosed = states
| where state == {0}
| summarize closedAt = max(timestamp) by service;
states
| join kind=leftouter lastClosed on service
| where isnull(closedAt) or timestamp > closedAt
| summarize openSince = min(timestamp), timestamp = max(timestamp) by service
| where openSince <= ago({1}m)
'''

// The planner's runs over the window: none means the timer or the planner is dead.
var plannedQuery = '''
customEvents
| where name == "run_planned"
| project timestamp, runId = tostring(customDimensions["sync.run_id"])
'''

// Invocations the Functions host reports failed (an exception left the function), per function.
var failedInvocationsQuery = '''
requests
| where success == false
| project timestamp, functionName = operation_Name
'''

// Exceptions the host and the app's loggers reported, per exception type.
var exceptionsQuery = '''
exceptions
| project timestamp, exceptionType = type
'''

// Dataverse 429s (DATAVERSE_THROTTLED, a counter), all facets together.
var throttledQuery = '''
customMetrics
| where name == "sync.dataverse.throttled"
| project timestamp, throttled = value
'''

// Unexpected errors (UNEXPECTED_ERRORS, a counter) per type and trace hash (ERROR_TYPE,
// TRACE_HASH): a bug stopped a message (sync/work/bugs.py).
var unexpectedErrorsQuery = '''
customMetrics
| where name == "sync.unexpected_errors"
| project timestamp, errors = value,
    errorType = tostring(customDimensions["sync.error_type"]),
    traceHash = tostring(customDimensions["sync.trace_hash"])
'''

var actions = {
  actionGroups: [
    actionGroupId
  ]
}

resource poisonMessages 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'poison-messages'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Poison messages'
    description: 'Messages reached the poison queue: the host gave up on them. docs/operations.md, "Poison messages".'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: poisonQuery
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'depth'
          operator: 'GreaterThan'
          threshold: poisonMessagesThreshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: actions
  }
}

resource deadLetters 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'dead-letters'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Dead letters in a run'
    description: 'A run completed with more dead-lettered records than the threshold. docs/operations.md, "Dead letters in a run".'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: false
    criteria: {
      allOf: [
        {
          query: deadLettersQuery
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'deadLettered'
          operator: 'GreaterThan'
          threshold: deadLettersThreshold
          dimensions: [
            {
              name: 'runId'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: actions
  }
}

resource runOverdue 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'run-overdue'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Run not completed by its deadline'
    description: 'A run was planned runDeadlineHours ago and has not completed. docs/operations.md, "Run not completed by its deadline".'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
    // Stateful: fires once per overdue run, resolves when the run completes.
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: format(overdueQuery, runDeadlineHours)
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'runId'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: actions
  }
}

resource circuitOpen 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'circuit-open'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Circuit open for long'
    description: 'A dependency\'s circuit has not closed for circuitOpenMinutes: the service keeps failing. docs/operations.md, "Circuit open for long".'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    // How far back the query looks for the last closed state: longer than any
    // circuitOpenMinutes. A circuit still open when the last instance stopped keeps firing until
    // its last report is this old; the nothing-ran and deadline alerts take over from there.
    windowSize: 'PT6H'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: format(circuitQuery, circuitClosedState, circuitOpenMinutes)
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'service'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: actions
  }
}

resource throttling 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'dataverse-throttling'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Sustained Dataverse 429s'
    description: 'Dataverse answered more than throttledPerMinuteThreshold 429s per minute over throttledWindowMinutes. docs/operations.md, "Sustained Dataverse 429s".'
    severity: 3
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT${throttledWindowMinutes}M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: throttledQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'throttled'
          operator: 'GreaterThan'
          threshold: throttledPerMinuteThreshold * throttledWindowMinutes
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: actions
  }
}

resource noRun 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'no-run'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'No run planned'
    description: 'No run was planned for noRunHours: the timer or the planner is dead, or the app is stopped. docs/operations.md, "No run planned".'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT${noRunHours}H'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          // No row at all is a count of 0.
          query: plannedQuery
          timeAggregation: 'Count'
          operator: 'LessThanOrEqual'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: actions
  }
}

resource failedInvocations 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'failed-invocations'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Failed invocations'
    description: 'Function invocations failed: an exception left the function, and the host retries the message until it is poisoned. docs/operations.md, "Failed invocations".'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: failedInvocationsQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: failedInvocationsThreshold
          dimensions: [
            {
              name: 'functionName'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: actions
  }
}

resource exceptions 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'exceptions'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Exceptions logged'
    description: 'The app or the host logged exceptions: an unexpected error the app caught and logged, or one that failed an invocation. docs/operations.md, "Exceptions logged".'
    severity: 3
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: exceptionsQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: exceptionsThreshold
          dimensions: [
            {
              name: 'exceptionType'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: actions
  }
}

resource unexpectedErrors 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'unexpected-errors'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Unexpected errors'
    description: 'An unexpected exception (a bug) stopped messages: its records go back in halves and the one that raises ends on the poison queue with the type and trace hash. docs/operations.md, "Unexpected errors".'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: unexpectedErrorsQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'errors'
          operator: 'GreaterThan'
          threshold: unexpectedErrorsThreshold
          dimensions: [
            {
              name: 'errorType'
              operator: 'Include'
              values: [
                '*'
              ]
            }
            {
              name: 'traceHash'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: actions
  }
}
