"""The failure model in one place: triage of every outcome, one retry, the circuit, the scope.

A failure is either the record's or the service's (shared/DESIGN.md, invariant 1):

- ``triage`` turns every answer and transport error of every outbound call into one domain
  error (sync.failures.errors);
- ``retry`` is the one retry loop, with hooks, on the one clock;
- ``circuit`` opens per dependency after consecutive service faults (at once on a configuration
  fault) with a growing, jittered back-off, and closes after a successful half-open probe;
- ``scope`` decides the ambiguous faults: a record that keeps failing while its siblings succeed
  is the record's fault, a fault every record meets is the service's.
"""

from sync.failures.circuit import Circuit, CircuitPolicy
from sync.failures.retry import RetryPolicy, retrying
from sync.failures.scope import ScopeLog
from sync.failures.triage import classify_answer, classify_exception

__all__ = ["Circuit", "CircuitPolicy", "RetryPolicy", "ScopeLog", "classify_answer",
           "classify_exception", "retrying"]
