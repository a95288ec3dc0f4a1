# SPDX-License-Identifier: Apache-2.0
"""The custom resources' specs as pydantic models, and what each one wants stored in Postgres.

The CRD schemas in `crds/` are the contract (the API server validates and defaults there); these
models read what passed, in camelCase, and convert it to row fields. Secrets are only referenced
here: `secret_refs()` names what to read, and the `desired_*` functions take the values read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from mail_proxy.ids import ACCOUNT_ID_PATTERN, TENANT_ID_PATTERN
from mail_proxy.large_files.policy import MAX_DAYS

GROUP = "mailproxy.genropy.org"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
# Which install a resource (and an API-key Secret the operator writes) belongs to.
INSTANCE_LABEL = f"{GROUP}/instance"

DeletionPolicy = Literal["Delete", "Retain"]
AuthMethod = Literal["none", "bearer", "basic"]


class _Spec(BaseModel):
    # Unknown fields are ignored: the API server already pruned what the schema does not know.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class SecretKeyRef(_Spec):
    """A key of a Secret in the resource's own namespace."""

    name: str
    key: str = "password"

    @property
    def address(self) -> tuple[str, str]:
        """(Secret name, key): what the values read from Secrets are keyed by."""
        return (self.name, self.key)


class TokenKeyRef(SecretKeyRef):
    """A Secret key holding a bearer token (`key` defaults to `token`)."""

    key: str = "token"


# Values read from Secrets, by (Secret name, key); plaintext, never logged.
SecretValues = Mapping[tuple[str, str], str]


class ClientAuthSpec(_Spec):
    method: AuthMethod = "none"
    user: str | None = None
    password_secret_ref: SecretKeyRef | None = None
    token_secret_ref: TokenKeyRef | None = None

    def secret_refs(self) -> list[SecretKeyRef]:
        return [ref for ref in (self.password_secret_ref, self.token_secret_ref) if ref]

    def client_auth(self, values: SecretValues) -> dict[str, Any]:
        """The `client_auth` shape of the reference, secrets in plaintext (seal before storing)."""
        auth: dict[str, Any] = {"method": self.method}
        if self.method == "basic" and self.password_secret_ref is not None:
            auth["user"] = self.user
            auth["password"] = values[self.password_secret_ref.address]
        elif self.method == "bearer" and self.token_secret_ref is not None:
            auth["token"] = values[self.token_secret_ref.address]
        return auth


class RateLimitsSpec(_Spec):
    hourly: int | None = Field(default=None, ge=0)
    daily: int | None = Field(default=None, ge=0)


class LargeFileSpec(_Spec):
    enabled: bool = False
    max_size_mb: float = 10
    storage_url: str | None = None
    public_base_url: str | None = None
    file_ttl_days: int = Field(default=30, ge=1, le=MAX_DAYS)
    lifespan_after_download_days: int | None = Field(default=None, ge=1, le=MAX_DAYS)
    action: Literal["warn", "reject", "rewrite"] = "warn"


class TenantSpec(_Spec):
    tenant_id: str | None = Field(default=None, pattern=TENANT_ID_PATTERN)
    display_name: str | None = None
    client_base_url: str | None = None
    client_sync_path: str | None = None
    client_attachment_path: str | None = None
    client_auth: ClientAuthSpec | None = None
    rate_limits: RateLimitsSpec | None = None
    large_file: LargeFileSpec | None = None
    active: bool = True
    deletion_policy: DeletionPolicy = "Delete"
    api_key_secret_name: str | None = None

    def secret_refs(self) -> list[SecretKeyRef]:
        return self.client_auth.secret_refs() if self.client_auth else []

    def row_id(self, resource_name: str) -> str:
        return self.tenant_id or resource_name

    def api_key_secret(self, resource_name: str) -> str:
        return self.api_key_secret_name or f"{resource_name}-api-key"

    def desired_fields(self, values: SecretValues) -> dict[str, Any]:
        """`tenants` columns (see `db.tenants.WRITABLE`); `client_auth` secrets in plaintext."""
        auth = self.client_auth
        return {
            "name": self.display_name,
            "client_auth": auth.client_auth(values) if auth and auth.method != "none" else None,
            "client_base_url": self.client_base_url,
            "client_sync_path": self.client_sync_path,
            "client_attachment_path": self.client_attachment_path,
            "rate_limits": (
                self.rate_limits.model_dump(exclude_none=True) if self.rate_limits else None
            ),
            "large_file_config": self.large_file.model_dump() if self.large_file else None,
            "active": self.active,
        }


class LimitsSpec(_Spec):
    per_minute: int | None = Field(default=None, ge=0)
    per_hour: int | None = Field(default=None, ge=0)
    per_day: int | None = Field(default=None, ge=0)
    behavior: Literal["defer", "reject"] = "defer"

    def summary(self) -> str:
        """`60/min 1000/h -/d` for the printer column; `-` is unlimited."""
        parts = zip((self.per_minute, self.per_hour, self.per_day), ("min", "h", "d"), strict=True)
        return " ".join(f"{value if value else '-'}/{unit}" for value, unit in parts)


class TenantRef(_Spec):
    name: str


class ImapSpec(_Spec):
    host: str
    port: int = 993
    user: str | None = None
    password_secret_ref: SecretKeyRef | None = None
    folder: str = "INBOX"
    ssl: bool = True
    starttls: bool = False
    processed_action: Literal["keep", "seen", "move"] = "keep"
    processed_folder: str | None = None


class PecSpec(_Spec):
    enabled: bool = False
    imap: ImapSpec | None = None


class SmtpAccountSpec(_Spec):
    tenant_ref: TenantRef
    account_id: str | None = Field(default=None, pattern=ACCOUNT_ID_PATTERN)
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    tls: Literal["implicit", "starttls", "none"] = "starttls"
    tls_verify: bool = True
    username: str | None = None
    password_secret_ref: SecretKeyRef | None = None
    limits: LimitsSpec = LimitsSpec()
    batch_size: int | None = Field(default=None, ge=1)
    max_connections: int = Field(default=20, ge=1, le=1000)
    pec: PecSpec | None = None
    deletion_policy: DeletionPolicy = "Delete"

    def secret_refs(self) -> list[SecretKeyRef]:
        refs = [self.password_secret_ref] if self.password_secret_ref else []
        imap = self.pec.imap if self.pec else None
        if imap is not None and imap.password_secret_ref is not None:
            refs.append(imap.password_secret_ref)
        return refs

    def row_id(self, resource_name: str) -> str:
        return self.account_id or resource_name

    def desired_fields(self, values: SecretValues) -> dict[str, Any]:
        """`accounts` columns (see `db.accounts.WRITABLE`); passwords in plaintext."""
        password = values[self.password_secret_ref.address] if self.password_secret_ref else None
        imap = self.pec.imap if self.pec else None
        imap_password = password
        if imap is not None and imap.password_secret_ref is not None:
            imap_password = values[imap.password_secret_ref.address]
        return {
            "host": self.host,
            "port": self.port,
            "username": self.username,
            "password": password,
            "ttl": 300,
            "limit_per_minute": self.limits.per_minute or None,
            "limit_per_hour": self.limits.per_hour or None,
            "limit_per_day": self.limits.per_day or None,
            "limit_behavior": self.limits.behavior,
            # The sender's convention: use_tls with port 465 is implicit TLS, with any other
            # port mandatory STARTTLS; the CRD only admits implicit on 465.
            "use_tls": self.tls != "none",
            "tls_verify": self.tls_verify,
            "batch_size": self.batch_size,
            "max_connections": self.max_connections,
            "is_pec_account": bool(self.pec and self.pec.enabled),
            "imap_host": imap.host if imap else None,
            "imap_port": imap.port if imap else 993,
            "imap_user": (imap.user or self.username) if imap else None,
            "imap_password": imap_password if imap else None,
            "imap_folder": imap.folder if imap else "INBOX",
            "imap_ssl": imap.ssl if imap else True,
            "imap_starttls": imap.starttls if imap else False,
            "imap_processed_action": imap.processed_action if imap else "keep",
            "imap_processed_folder": imap.processed_folder if imap else None,
        }


class DeliverySpec(_Spec):
    max_retries: int | None = Field(default=None, ge=0)
    retry_delays_seconds: tuple[int, ...] | None = None
    batch_size_per_account: int | None = Field(default=None, ge=1)


class RetentionSpec(_Spec):
    report_retention_seconds: int | None = Field(default=None, ge=0)


class ClientSyncSpec(_Spec):
    url: str
    auth: ClientAuthSpec | None = None


class BounceSpec(_Spec):
    enabled: bool = False
    imap_host: str | None = None
    imap_port: int = 993
    imap_user: str | None = None
    imap_password_secret_ref: SecretKeyRef | None = None
    imap_folder: str = "INBOX"
    imap_ssl: bool = True
    imap_starttls: bool = False
    processed_action: Literal["keep", "seen", "move"] = "keep"
    processed_folder: str | None = None
    poll_interval_seconds: int = 60
    return_path: str | None = None


class MailProxyInstanceSpec(_Spec):
    name: str | None = None
    delivery: DeliverySpec | None = None
    retention: RetentionSpec | None = None
    client_sync: ClientSyncSpec | None = None
    bounce: BounceSpec | None = None
    deletion_policy: DeletionPolicy = "Delete"

    def secret_refs(self) -> list[SecretKeyRef]:
        refs = (
            self.client_sync.auth.secret_refs()
            if self.client_sync and self.client_sync.auth
            else []
        )
        if self.bounce and self.bounce.imap_password_secret_ref:
            refs.append(self.bounce.imap_password_secret_ref)
        return refs

    def desired_config(self, values: SecretValues) -> dict[str, Any]:
        """The `instance.config` document: only what the spec sets (the rest: Settings defaults).

        Keys are the `Settings` field names they override; `client_sync_auth` has the
        `client_auth` shape with secrets in plaintext (seal before storing).
        """
        config: dict[str, Any] = {}
        if self.delivery:
            config.update(self.delivery.model_dump(exclude_none=True))
            if "retry_delays_seconds" in config:
                config["retry_delays_seconds"] = list(config["retry_delays_seconds"])
        if self.retention:
            config.update(self.retention.model_dump(exclude_none=True))
        if self.client_sync:
            config["client_sync_url"] = self.client_sync.url
            auth = self.client_sync.auth
            if auth is not None and auth.method != "none":
                config["client_sync_auth"] = auth.client_auth(values)
        return config

    def desired_fields(self, values: SecretValues) -> dict[str, Any]:
        """`instance` columns (see `db.instance.WRITABLE`); the bounce password in plaintext."""
        bounce = self.bounce or BounceSpec()
        ref = bounce.imap_password_secret_ref
        return {
            "name": self.name or "mail-proxy",
            "bounce_enabled": bounce.enabled,
            "bounce_imap_host": bounce.imap_host,
            "bounce_imap_port": bounce.imap_port,
            "bounce_imap_user": bounce.imap_user,
            "bounce_imap_password": values[ref.address] if ref else None,
            "bounce_imap_folder": bounce.imap_folder,
            "bounce_imap_ssl": bounce.imap_ssl,
            "bounce_poll_interval": bounce.poll_interval_seconds,
            "bounce_return_path": bounce.return_path,
            "bounce_imap_starttls": bounce.imap_starttls,
            "bounce_processed_action": bounce.processed_action,
            "bounce_processed_folder": bounce.processed_folder,
        }


# Which spec model reads which kind, and the plural the API serves it under.
KINDS: dict[str, tuple[str, type[TenantSpec | SmtpAccountSpec | MailProxyInstanceSpec]]] = {
    "Tenant": ("tenants", TenantSpec),
    "SmtpAccount": ("smtpaccounts", SmtpAccountSpec),
    "MailProxyInstance": ("mailproxyinstances", MailProxyInstanceSpec),
}
