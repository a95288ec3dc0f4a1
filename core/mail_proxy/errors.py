# SPDX-License-Identifier: Apache-2.0
"""One exception tree for the whole service.

    MailProxyError                  base; never raised itself
    ├── ConfigError                 settings that cannot work (bad key, bad URL): fail at start
    ├── NotFound                    a named object does not exist            -> HTTP 404
    ├── Conflict                    the object exists but refuses the change -> HTTP 409
    │   └── ManagedResource         owned by a Kubernetes resource (operator)
    ├── InvalidRequest              the request is well-formed but wrong     -> HTTP 400
    ├── EncryptionError             a stored secret cannot be read or written
    │   ├── NoEncryptionKey         a secret would be stored without a key   -> HTTP 400
    │   └── UnknownEncryptionKey    sealed by a key this process lacks (key id in the value)
    ├── MigrationError              schema files and database disagree
    └── OutboundError               a call made on a tenant's behalf failed (attachments, reports,
        │                           webhooks); its message names the URL with secrets redacted
        ├── OutboundTemporary       timeout, refused or reset connection, DNS failure: retry later
        └── OutboundPermanent       the URL itself cannot work: unparsable, unsupported scheme,
            │                       too many redirects, a request that cannot be encoded
            └── DestinationRefused  it resolves to a non-public address that is not allow-listed
                                    (GMP_OUTBOUND_ALLOW): the SSRF guard

Library errors (asyncpg, cryptography, ...) are wrapped where they enter the service, with the
cause chained, so callers decide on the type and never on a message string.
"""


class MailProxyError(Exception):
    """Base of every error the service raises on purpose."""


class ConfigError(MailProxyError):
    """The configuration cannot work; raised at start-up, before anything is served."""


class NotFound(MailProxyError):
    """The named object does not exist (or is not visible to the caller)."""


class Conflict(MailProxyError):
    """The object exists but cannot take this change."""


class ManagedResource(Conflict):
    """The row is owned by a Kubernetes resource; change the resource, not the row."""

    def __init__(self, kind: str, name: str, managed_by: str) -> None:
        super().__init__(
            f"{kind} '{name}' is managed by {managed_by}; change it through Kubernetes"
        )
        self.managed_by = managed_by


class InvalidRequest(MailProxyError):
    """The request is well-formed but asks for something that cannot be done."""


class EncryptionError(MailProxyError):
    """A stored secret cannot be encrypted or decrypted."""


class NoEncryptionKey(EncryptionError, InvalidRequest):
    """A secret was about to be stored in plaintext because no key is configured."""

    def __init__(self) -> None:
        super().__init__(
            "cannot store a secret: no encryption key configured "
            "(set MAIL_PROXY_ENCRYPTION_KEY or mount /run/secrets/encryption_key)"
        )


class UnknownEncryptionKey(EncryptionError):
    """A stored secret names a key id this process's keyring does not hold (rotated elsewhere)."""

    def __init__(self, key_id: str) -> None:
        super().__init__(
            f"a stored secret cannot be decrypted: it is sealed with key id {key_id}, which this "
            "process does not have; add that key (MAIL_PROXY_ENCRYPTION_KEY or "
            "MAIL_PROXY_PREVIOUS_ENCRYPTION_KEYS)"
        )
        self.key_id = key_id


class MigrationError(MailProxyError):
    """The migration files and the schema recorded in the database disagree."""


class OutboundError(MailProxyError):
    """An outbound HTTP call made on a tenant's behalf failed before an HTTP status was read.

    Raised only by the sender's outbound client, which wraps every httpx error once, where it
    enters; `str(exc)` is safe to show and log (URLs have their credentials redacted).
    """


class OutboundTemporary(OutboundError):
    """The destination could not be reached this time; another try may work."""


class OutboundPermanent(OutboundError):
    """The URL or request can never work as given; retrying would fail the same way."""


class DestinationRefused(OutboundPermanent):
    """The destination resolves only to addresses outside the public internet (loopback,
    private, link-local, multicast, reserved...) and is not allow-listed by the admin."""
