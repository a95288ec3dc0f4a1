# SPDX-License-Identifier: Apache-2.0
"""Settings, read once in `main()` from `GMP_*` variables and passed down; nothing reads env later.

Durations carry their unit in the name. Values that only matter to one component still live
here so one `mail-proxy` process can run every component from one object.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mail_proxy.errors import ConfigError
from mail_proxy.outbound import OutboundPolicy

DEFAULT_HOME = Path("~/.mail-proxy").expanduser()
# What an embedded (laptop) instance may reach for tenants when GMP_OUTBOUND_ALLOW is unset.
LOOPBACK = ("127.0.0.0/8", "::1/128", "localhost")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GMP_", extra="ignore")

    # Where the data lives. No URL means: run the embedded Postgres in `data_dir`.
    database_url: SecretStr | None = None
    instance_name: str = "default"
    # Where local instances live (`GMP_HOME`, default ~/.mail-proxy); `data_dir` names one folder.
    home: Path | None = None
    data_dir: Path | None = None
    db_pool_min: int = 1
    db_pool_max: int = 10

    # API
    api_token: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_request_bytes: int = 32 * 1024 * 1024
    max_enqueue_batch: int = 1000
    # Recipients (to + cc + bcc) of one message, and of one add-messages request: each address
    # costs a validation, so an unbounded list could hold the API for seconds. 1000 per message
    # is Postfix's smtpd_recipient_limit; RFC 5321 4.5.3.1.8 asks servers to take at least 100.
    max_recipients_per_message: int = 1000
    max_recipients_per_batch: int = 20_000
    messages_page_size: int = 1000

    # Delivery (the sender reads these; the API reports them)
    batch_size_per_account: int = 50
    max_retries: int = 5
    retry_delays_seconds: Annotated[tuple[int, ...], NoDecode] = (60, 300, 900, 3600, 7200)
    report_retention_seconds: int = 604_800
    command_log_retention_seconds: int | None = None
    sync_interval_seconds: int = 300
    # Sender: leasing and the send loop. NOTIFY wakes senders; polling is only the fallback
    # (the reference's GMP_SEND_LOOP_INTERVAL is accepted too).
    send_loop_interval_seconds: float = Field(
        default=1.0,
        validation_alias=AliasChoices(
            "send_loop_interval_seconds",
            "gmp_send_loop_interval_seconds",
            "gmp_send_loop_interval",
        ),
    )
    # A live sender renews its leases every lease_seconds / 3, so a short lease costs nothing
    # and a dead sender's messages are taken back within about lease_seconds of its death.
    lease_seconds: float = 30.0
    shutdown_grace_seconds: float = 20.0
    # How often a running process re-reads the MailProxyInstance settings stored by the operator.
    instance_settings_refresh_seconds: float = 30.0
    sender_max_in_flight: int = 2000
    outcome_flush_seconds: float = 0.05
    retry_jitter_ratio: float = 0.1
    sender_metrics_port: int = 9100
    # The API's /metrics on a port of its own (with /health and /ready), on GMP_HOST, so the
    # public API port need not expose it: set, the API port's /metrics answers 404. Unset:
    # /metrics is on the API port (reference behaviour).
    api_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # SMTP: a pool of connections per account, reused while they are fresh.
    # At most this many connections per account in one process (unset: only the account's
    # global `max_connections` applies, counted across every sender).
    smtp_connections_per_account: int | None = None
    smtp_idle_seconds: float = 30.0
    smtp_timeout_seconds: float = 30.0
    # The wait for the answer to the end of DATA: RFC 5321 4.5.3.2.6 asks for 10 minutes, since
    # servers scan content first. Giving up sooner re-sends mail the server may already have taken.
    smtp_data_timeout_seconds: float = 600.0
    smtp_ca_file: Path | None = None
    smtp_implicit_tls_ports: Annotated[tuple[int, ...], NoDecode] = (465,)
    throttle_base_seconds: float = 60.0
    throttle_max_seconds: float = 900.0
    # A session that ends under a message (421, dropped connection) is reopened at once, at
    # most this many times for one message, before the message is deferred.
    smtp_reconnect_attempts: int = 2
    # An account whose server cannot be used (TLS, authentication, connection, DNS) is held and
    # probed again after base, doubling per failure up to max (seconds).
    account_probe_base_seconds: float = 30.0
    account_probe_max_seconds: float = 900.0
    # Attachments: fetch limits, where `filesystem` may read (nowhere by default), the cache.
    attachment_timeout_seconds: float = 30.0
    attachment_max_bytes: int = 25 * 1024 * 1024
    message_max_bytes: int = 50 * 1024 * 1024
    attachment_allowed_roots: Annotated[tuple[Path, ...], NoDecode] = ()
    cache_memory_max_mb: float = 50.0
    cache_memory_ttl_seconds: float = 300.0
    cache_disk_dir: Path | None = None
    cache_disk_max_mb: float = 500.0
    cache_disk_ttl_seconds: float = 3600.0
    cache_disk_threshold_kb: float = 100.0
    # Connections made on a tenant's behalf (attachments, reports, webhooks, SMTP account hosts,
    # tenant IMAP mailboxes) reach public addresses only; these CIDRs and host names (`*.domain`
    # for a whole domain) are allowed besides. Unset in embedded (laptop) mode: loopback only.
    outbound_allow: Annotated[tuple[str, ...] | None, NoDecode] = None
    # Large files (SPEC section 6, tenant `large_file_config`). The secret signing download
    # links (shared by every API and sender pod; generated in embedded mode); the public URL of
    # the API for links when a tenant has no `public_base_url`; the largest attachment that may
    # be fetched for offloading (spooled to disk, never held in memory) and where it is spooled;
    # fsspec options per storage scheme (JSON, e.g. {"s3": {"endpoint_url": "http://minio:9000"}});
    # how often and how many expired files the cleanup job deletes.
    download_secret: SecretStr | None = None
    download_base_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    large_file_max_bytes: int = 2 * 1024 * 1024 * 1024
    large_file_spool_dir: Path | None = None
    large_file_storage_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    large_file_cleanup_interval_seconds: float = 300.0
    large_file_cleanup_batch: int = 100

    # Delivery reports: per-call timeout, tenants in parallel, back-off of failing tenants.
    sync_timeout_seconds: float = 30.0
    sync_concurrency: int = 16
    sync_batch_size: int = 1000
    sync_backoff_base_seconds: float = 30.0
    sync_backoff_max_seconds: float = 3600.0
    sync_queued_delay_seconds: float = 1.0
    sync_queued_max_rounds: int = 20
    retention_interval_seconds: float = 300.0
    # Idempotency-Key on add-messages: how long an answer is replayed (and kept).
    idempotency_ttl_seconds: int = 86_400
    # Signed per-event webhooks (Standard Webhooks): per-call timeout, calls in flight (and
    # deliveries leased) per process, the retry schedule after each failed attempt (then
    # the delivery is given up), and how long a rotated secret keeps signing beside the new one.
    webhook_timeout_seconds: float = 10.0
    webhook_concurrency: int = 16
    webhook_retry_delays_seconds: Annotated[tuple[float, ...], NoDecode] = (
        60,
        300,
        1800,
        7200,
        21600,
        43200,
        86400,
    )
    webhook_secret_overlap_seconds: int = 86_400
    # Endpoints per tenant: every event becomes one delivery per endpoint, so this bounds the
    # work one tenant's events can cause.
    webhook_max_per_tenant: int = 20
    # Provider feedback: the hosts an SNS SigningCertURL / SubscribeURL may name (regex on the
    # host, matched in full; https only).
    sns_certificate_host_pattern: str = r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
    # Mailgun and SendGrid sign a timestamp: signatures further than this from now (either
    # way) are refused with 401, so a captured notification cannot be replayed later.
    provider_signature_max_age_seconds: float = Field(default=600.0, gt=0)
    # SNS signing certificates: at most this many fetches per minute per API process (a flood
    # of forged notifications naming new URLs cannot make it fetch more; 503 beyond).
    sns_certificate_fetches_per_minute: int = Field(default=10, ge=1)

    # Inbound (bounce and PEC mailboxes). GMP_BOUNCE_* seed the instance bounce mailbox once,
    # when the stored one has no host yet (reference section 10); the stored one wins after.
    bounce_enabled: bool = False
    bounce_imap_host: str | None = None
    bounce_imap_port: int = 143
    bounce_imap_user: str | None = None
    bounce_imap_password: SecretStr | None = None
    bounce_imap_ssl: bool = False
    bounce_poll_interval_seconds: int = Field(
        default=60,
        validation_alias=AliasChoices(
            "bounce_poll_interval_seconds",
            "gmp_bounce_poll_interval_seconds",
            "gmp_bounce_poll_interval",
        ),
    )
    # Soft bounces of one address that put it on the suppression list, within this window.
    bounce_soft_limit: int = 3
    bounce_soft_window_days: float = 7.0
    # How far back a bounce that names no message is matched by recipient address.
    bounce_recent_days: float = 7.0
    # PEC: receipts polled every pec_poll_interval_seconds; no acceptance within the first
    # timeout -> pec_timeout (reference: GMP_PEC_ACCEPTANCE_TIMEOUT, 1800 s); accepted but no
    # delivery receipt within the second -> pec_delivery_timeout.
    pec_poll_interval_seconds: float = 60.0
    pec_acceptance_timeout_seconds: int = Field(
        default=1800,
        validation_alias=AliasChoices(
            "pec_acceptance_timeout_seconds",
            "gmp_pec_acceptance_timeout_seconds",
            "gmp_pec_acceptance_timeout",
        ),
    )
    pec_delivery_timeout_seconds: int = 86_400
    # IMAP: per-command timeout, a CA bundle for servers with a private CA, how often the list
    # of mailboxes is re-read (POST /instance/reload-bounce and the operator also wake it).
    imap_timeout_seconds: float = 30.0
    imap_ca_file: Path | None = None
    inbound_refresh_seconds: float = 30.0
    inbound_max_per_poll: int = 500

    # Global delivery-report target, used for tenants without their own sync URL.
    client_sync_url: str | None = None
    client_sync_token: SecretStr | None = None
    client_sync_user: str | None = None
    client_sync_password: SecretStr | None = None

    # Operator (Kubernetes -> Postgres): namespaces to watch (empty: the whole cluster), how
    # often drift is repaired and status figures refreshed, kopf's liveness endpoint.
    operator_namespaces: Annotated[tuple[str, ...], NoDecode] = ()
    operator_repair_interval_seconds: float = 60.0
    operator_health_host: str = "127.0.0.1"
    operator_health_port: int = 8080
    # Which install this operator is: it handles only resources labelled
    # `mailproxy.genropy.org/instance: <this>` (empty: only resources without that label).
    operator_instance: str = ""
    # The only namespace a MailProxyInstance is taken from (one per install); empty: the
    # operator's own (POD_NAMESPACE, else the first watched one, else default), never "any".
    operator_instance_namespace: str = ""
    # Leader election over a coordination.k8s.io Lease, so several replicas can run; the Lease
    # lives in this namespace (empty: POD_NAMESPACE, else the first watched one, else default).
    operator_leader_election: bool = True
    operator_lease_namespace: str = ""
    operator_lease_duration_seconds: float = 15.0
    # The encryption-key Secret (`name` in POD_NAMESPACE, or `namespace/name`) the operator
    # follows: a new primary key there is picked up without a restart and every stored secret
    # is re-encrypted under it in the background. Empty: the keys of this process's env only.
    operator_encryption_key_secret: str = ""
    operator_encryption_key_secret_key: str = "MAIL_PROXY_ENCRYPTION_KEY"
    # After the operator rotates a tenant's API key, the previous key stays valid this long.
    operator_api_key_grace_seconds: float = 3600.0

    # /metrics: open by default (reference behaviour); with a token, scrapers must send
    # `Authorization: Bearer <token>`. Queue gauges are read from Postgres at most this often.
    metrics_token: SecretStr | None = None
    metrics_cache_seconds: float = 5.0

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("webhook_retry_delays_seconds", mode="before")
    @classmethod
    def _split_float_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(float(part) for part in value.replace(",", " ").split())
        return value

    @field_validator("retry_delays_seconds", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(int(part) for part in value.replace(",", " ").split())
        return value

    @field_validator("operator_namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part for part in value.replace(",", " ").split() if part)
        return value

    @field_validator("outbound_allow", mode="before")
    @classmethod
    def _split_allow(cls, value: object) -> object:
        if isinstance(value, str):
            value = tuple(part for part in value.replace(",", " ").split() if part)
        return value

    @field_validator("outbound_allow")
    @classmethod
    def _valid_allow(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        try:
            OutboundPolicy.parse(value or ())
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return value

    @property
    def outbound_policy(self) -> OutboundPolicy:
        """`outbound_allow` parsed (validated when the settings were built). When it is not set
        at all and the instance is embedded (a laptop: no GMP_DATABASE_URL), this machine's
        loopback is allowed, so a local catcher (`mail-proxy dev-inbox`) or a local app's sync
        endpoint can be reached; set GMP_OUTBOUND_ALLOW (even empty) to decide otherwise."""
        if self.outbound_allow is None:
            return OutboundPolicy.parse(LOOPBACK if self.embedded else ())
        return OutboundPolicy.parse(self.outbound_allow)

    @field_validator("smtp_implicit_tls_ports", mode="before")
    @classmethod
    def _split_ports(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(int(part) for part in value.replace(",", " ").split())
        return value

    @field_validator("attachment_allowed_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(
                Path(part) for part in value.replace(",", os.pathsep).split(os.pathsep) if part
            )
        return value

    @field_validator(
        "batch_size_per_account",
        "lease_seconds",
        "sender_max_in_flight",
        "smtp_connections_per_account",
        "smtp_timeout_seconds",
        "attachment_timeout_seconds",
        "attachment_max_bytes",
        "message_max_bytes",
        "sync_timeout_seconds",
        "sync_concurrency",
        "sync_batch_size",
        "idempotency_ttl_seconds",
        "webhook_timeout_seconds",
        "webhook_concurrency",
        "large_file_max_bytes",
        "large_file_cleanup_interval_seconds",
        "large_file_cleanup_batch",
    )
    @classmethod
    def _positive_delivery(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("must be positive")
        return value

    @field_validator(
        "max_request_bytes",
        "max_enqueue_batch",
        "messages_page_size",
        "max_recipients_per_message",
        "max_recipients_per_batch",
    )
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    @property
    def instance_dir(self) -> Path:
        """The instance's own folder: embedded Postgres, key, generated admin token."""
        if self.data_dir is not None:
            return self.data_dir
        return (self.home or DEFAULT_HOME).expanduser() / self.instance_name

    @property
    def embedded(self) -> bool:
        return self.database_url is None


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit values (CLI flags) taking precedence."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**given)  # type: ignore[arg-type]
