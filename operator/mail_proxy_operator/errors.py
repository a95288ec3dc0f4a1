# SPDX-License-Identifier: Apache-2.0
"""Why a reconcile did not finish, as types the handlers can act on.

    ReconcileError                 base: `reason` (CamelCase, for conditions and events) + message
    ├── TemporaryReconcileError    retried with back-off; the world may fix itself
    │   ├── SecretNotReady         a referenced Secret or key is missing (yet)
    │   ├── TenantNotReady         an SmtpAccount's Tenant has no row (yet)
    │   ├── OwnedElsewhere         the row is managed by another resource (retried slowly)
    │   ├── KubernetesUnavailable  the API server failed or timed out
    │   └── DatabaseUnavailable    Postgres failed or timed out
    └── PermanentReconcileError    retrying cannot help until the resource changes
        └── InvalidSpec            the spec passed the CRD schema but cannot work

Every message is written for the person reading `kubectl describe`; none ever holds a secret
value (Secret names and keys only).
"""

from __future__ import annotations


class ReconcileError(Exception):
    """A reconcile that could not complete; `reason` goes to the Ready condition and events."""

    reason = "ReconcileFailed"
    # Seconds before the first retry; the handlers grow it per attempt.
    retry_after_seconds = 5.0

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TemporaryReconcileError(ReconcileError):
    """Retried with back-off."""


class PermanentReconcileError(ReconcileError):
    """Not retried until the resource changes."""


class SecretNotReady(TemporaryReconcileError):
    reason = "SecretNotFound"


class TenantNotReady(TemporaryReconcileError):
    reason = "TenantNotReady"


class OwnedElsewhere(TemporaryReconcileError):
    reason = "Conflict"
    retry_after_seconds = 30.0


class KubernetesUnavailable(TemporaryReconcileError):
    reason = "KubernetesApiError"


class DatabaseUnavailable(TemporaryReconcileError):
    reason = "DatabaseUnavailable"


class InvalidSpec(PermanentReconcileError):
    reason = "InvalidSpec"


def retry_delay_seconds(error: ReconcileError, attempt: int, cap_seconds: float = 300.0) -> float:
    """Exponential back-off from the error's first delay: 5, 10, 20, ... up to `cap_seconds`."""
    return float(min(cap_seconds, error.retry_after_seconds * 2 ** min(max(attempt, 0), 16)))
