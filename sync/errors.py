"""The domain's errors. Each carries the data a caller needs to decide, never a secret."""

from __future__ import annotations


class SyncError(Exception):
    """Base of the errors this package raises on purpose."""


class ConfigError(SyncError):
    """A setting is missing or invalid; the message names it."""


class ContractError(SyncError):
    """A queue message breaks the batch message contract; ``reason`` says how."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Throttled(SyncError):
    """A service answered 429: wait ``retry_after_s`` before sending again."""

    def __init__(self, service: str, retry_after_s: float, code: str = "") -> None:
        super().__init__(f"{service} throttled: retry after {retry_after_s:g} s"
                         + (f" ({code})" if code else ""))
        self.service = service
        self.retry_after_s = retry_after_s
        self.code = code


class TransientError(SyncError):
    """A failure worth retrying: 5xx, a timeout, a reset connection."""

    def __init__(self, service: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{service}: {detail}")
        self.service = service
        self.detail = detail
        self.status = status


class PermanentError(SyncError):
    """A failure for this record alone that a retry will not fix (4xx other than 429)."""

    def __init__(self, service: str, status: int, code: str, message: str) -> None:
        super().__init__(f"{service} answered {status} {code}: {message}")
        self.service = service
        self.status = status
        self.code = code
        self.message = message
