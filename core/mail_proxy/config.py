"""Settings, read once in `main()` from `GMP_*` variables and passed down; nothing reads env later.

Durations carry their unit in the name. Values that only matter to one component still live
here so one `mail-proxy` process can run every component from one object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_HOME = Path("~/.mail-proxy").expanduser()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GMP_", extra="ignore")

    # Where the data lives. No URL means: run the embedded Postgres in `data_dir`.
    database_url: SecretStr | None = None
    instance_name: str = "default"
    data_dir: Path | None = None
    db_pool_min: int = 1
    db_pool_max: int = 10

    # API
    api_token: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    max_request_bytes: int = 32 * 1024 * 1024
    max_enqueue_batch: int = 1000
    messages_page_size: int = 1000

    # Delivery (the sender reads these; the API reports them)
    batch_size_per_account: int = 50
    max_retries: int = 5
    retry_delays_seconds: Annotated[tuple[int, ...], NoDecode] = (60, 300, 900, 3600, 7200)
    report_retention_seconds: int = 604_800
    command_log_retention_seconds: int | None = None
    sync_interval_seconds: int = 300

    # Global delivery-report target, used for tenants without their own sync URL.
    client_sync_url: str | None = None
    client_sync_token: SecretStr | None = None
    client_sync_user: str | None = None
    client_sync_password: SecretStr | None = None

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("retry_delays_seconds", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(int(part) for part in value.replace(",", " ").split())
        return value

    @field_validator("max_request_bytes", "max_enqueue_batch", "messages_page_size")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    @property
    def instance_dir(self) -> Path:
        """The instance's own folder: embedded Postgres, key, generated admin token."""
        return self.data_dir if self.data_dir is not None else DEFAULT_HOME / self.instance_name

    @property
    def embedded(self) -> bool:
        return self.database_url is None


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit values (CLI flags) taking precedence."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**given)  # type: ignore[arg-type]
