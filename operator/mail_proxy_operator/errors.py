# SPDX-License-Identifier: Apache-2.0
"""Why a reconcile did not finish, as types the handlers can act on.

    ReconcileError                 base: `reason` (CamelCase, for conditions and events) + message
    ├── TemporaryReconcileError    retried with back-off; the world may fix itself
    │   ├── SecretNotReady         a referenced Secret or key is missing (yet)
    │   ├── TenantNotReady         an SmtpAccount's Tenant has no row (yet)
    │   ├── OwnedElsewhere         the row is managed by another resource (retried slowly)
    │   │   └── AdoptionRefused    an unmanaged row this resource may not take (Conflict)
    │   ├── DependentsExist        deleting would take rows other resources still hold
    │   ├── EncryptionKeyUnknown   a stored secret is under a key the operator lacks
    │   ├── AccountUnhealthy       the senders hold the account's queue (SPEC §13)
    │   ├── KubernetesUnavailable  the API server failed or timed out
    │   └── DatabaseUnavailable    Postgres failed or timed out
    └── PermanentReconcileError    retrying cannot help until the resource changes
        ├── InvalidSpec            the spec passed the CRD schema but cannot work
        └── WrongNamespace         a MailProxyInstance outside the install's namespace

Every message is written for the person reading `kubectl describe`; none ever holds a secret
value (Secret names and keys only).
"""

from __future__ import annotations


class ReconcileError(Exception):
    """A reconcile that could not complete; `reason` goes to the Ready condition and events."""

    reason = "ReconcileFailed"
    # Seconds before the first retry; the handlers grow it per attempt, up to the cap.
    retry_after_seconds = 5.0
    max_retry_seconds = 300.0

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TemporaryReconcileError(ReconcileError):
    """Retried with back-off."""


class PermanentReconcileError(ReconcileError):
    """Not retried until the resource changes."""


class SecretNotReady(TemporaryReconcileError):
    # Looked for again every few seconds: a Secret created after the resource that names it
    # carries no watch label yet, so only a retry notices it.
    reason = "SecretNotFound"
    retry_after_seconds = 1.0
    max_retry_seconds = 5.0


class TenantNotReady(TemporaryReconcileError):
    reason = "TenantNotReady"


class OwnedElsewhere(TemporaryReconcileError):
    reason = "Conflict"
    retry_after_seconds = 30.0


class AdoptionRefused(OwnedElsewhere):
    """An unmanaged row (REST-created, or released by another resource) is not taken unasked."""


class DependentsExist(TemporaryReconcileError):
    reason = "DependentsExist"
    retry_after_seconds = 2.0


class EncryptionKeyUnknown(TemporaryReconcileError):
    """Stored secrets were re-encrypted under a key this operator does not hold (rotate-key):
    nothing is rewritten until the key reaches the operator's keyring."""

    reason = "EncryptionKeyUnknown"
    retry_after_seconds = 10.0


class AccountUnhealthy(TemporaryReconcileError):
    """The rows match, but the senders found the account failing (authentication, TLS,
    connection, DNS): its messages are held; the reason says what to fix."""

    reason = "AccountUnhealthy"
    retry_after_seconds = 10.0
    max_retry_seconds = 60.0


class KubernetesUnavailable(TemporaryReconcileError):
    reason = "KubernetesApiError"


class DatabaseUnavailable(TemporaryReconcileError):
    reason = "DatabaseUnavailable"


class InvalidSpec(PermanentReconcileError):
    reason = "InvalidSpec"


class WrongNamespace(PermanentReconcileError):
    reason = "WrongNamespace"


def retry_delay_seconds(error: ReconcileError, attempt: int) -> float:
    """Exponential back-off from the error's first delay: 5, 10, 20, ... up to its cap."""
    grown = error.retry_after_seconds * 2 ** min(max(attempt, 0), 16)
    return float(min(error.max_retry_seconds, grown))
