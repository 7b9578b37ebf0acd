"""The domain's errors. Each carries the data a caller needs to decide, never a secret.

Every outcome of an outbound call that is not a success is one of these (sync.failures.triage
makes the choice, in one place):

- ``RecordFault``: the record's own fault (a value the column refuses, a record gone, an input
  that cannot be enriched). Dead-letters that record alone.
- ``Deferred``: not now, later. ``Throttled`` (a 429 with its Retry-After) and ``CircuitOpen``
  (the service is failing or refusing us; its circuit is open). The unfinished records go back
  on the queue with the delay; nothing is dead-lettered.
- ``ServiceFault``: the service's fault (5xx, timeouts, resets, 401 after a credential refresh,
  malformed answers). Retried a bounded number of times, counted by the circuit, then deferred.
  ``ConfigFault``: the service says what we are configured to use does not exist or is not
  granted; it opens the circuit at once. ``AmbiguousFault``: the record's or the service's
  depending on scope (a 403, a plug-in failure): siblings that succeed make it the record's.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base of the errors this package raises on purpose."""


class ConfigError(SyncError):
    """One or more settings are missing or invalid; the message names each of them."""

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems or (message,)


class ContractError(SyncError):
    """A queue message breaks the message contract; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Deferred(SyncError):
    """Send nothing more to ``service`` for ``retry_after_s``; the work goes back on the queue."""

    def __init__(self, service: str, retry_after_s: float, text: str) -> None:
        super().__init__(text)
        self.service = service
        self.retry_after_s = retry_after_s


class Throttled(Deferred):
    """A service answered 429: wait ``retry_after_s`` before sending again."""

    def __init__(self, service: str, retry_after_s: float, code: str = "") -> None:
        super().__init__(service, retry_after_s,
                         f"{service} throttled: retry after {retry_after_s:g} s"
                         + (f" ({code})" if code else ""))
        self.code = code


class CircuitOpen(Deferred):
    """The circuit of ``service`` is open: it failed or refused us; ``reason`` says how."""

    def __init__(self, service: str, retry_after_s: float, reason: str) -> None:
        super().__init__(service, retry_after_s,
                         f"{service} circuit open for {retry_after_s:.0f} s: {reason}")
        self.reason = reason


class ServiceFault(SyncError):
    """The service failed: worth retrying, never a record's dead letter."""

    def __init__(self, service: str, detail: str, status: int | None = None, code: str = "",
                 message: str = "") -> None:
        super().__init__(f"{service}: {detail}")
        self.service = service
        self.detail = detail
        self.status = status
        self.code = code
        self.message = message


class AmbiguousFault(ServiceFault):
    """A fault that is the record's when its siblings succeed, the service's when they fail."""

    probe: bool = False
    """Whether it answered the circuit's half-open probe: the circuit it reopened is then not
    evidence of its own against the record that was the probe."""


class ConfigFault(ServiceFault):
    """The service refuses what we are configured to use (a table, a column, a privilege)."""

    def __init__(self, service: str, detail: str, status: int | None = None, code: str = "",
                 message: str = "", *, hint: str = "") -> None:
        super().__init__(service, detail, status, code, message)
        self.hint = hint


class RecordFault(SyncError):
    """A failure for this record alone that a retry will not fix; ``reason`` is a stable code."""

    def __init__(self, service: str, status: int, code: str, message: str,
                 reason: str = "refused") -> None:
        super().__init__(f"{service} answered {status} {code}: {message}")
        self.service = service
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason
