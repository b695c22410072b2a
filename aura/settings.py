"""The one settings object of every Aura process (worker, API, jobs, CLI, stack).

Values come from environment variables prefixed ``AURA_`` (for example ``AURA_KAFKA_BOOTSTRAP``);
defaults point at the local stack that ``aura stack up`` starts.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Configuration shared by every process; frozen once built."""

    model_config = SettingsConfigDict(env_prefix="AURA_", frozen=True, extra="ignore")

    environment: str = "development"

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_controller_port: int = 9093
    topic_prefix: str = "aura"
    topic_partitions: int = 12
    consumer_group: str = "aura-worker"

    # Cassandra
    cassandra_hosts: str = "127.0.0.1"
    cassandra_port: int = 9042
    cassandra_keyspace: str = "aura"
    cassandra_replication: int = 1
    cassandra_storage_port: int = 7000

    # Redis
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "aura"

    # Local stack (infra/stack.py)
    home: Path = Field(default=REPO_ROOT / ".aura")
    maven_repo: Path | None = None  # default: <home>/m2; tests with a private stack share the main cache
    kafka_heap: str = "512m"
    cassandra_heap: str = "1g"
    start_timeout_s: float = 180.0

    # Worker
    batch_max: int = 2000
    batch_within_s: float = 0.05
    recent_items_max: int = 50

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    admin_token: SecretStr = SecretStr("dev-admin-token")

    @model_validator(mode="after")
    def _no_placeholder_secrets_in_production(self) -> Settings:
        if self.environment == "production" and self.admin_token.get_secret_value() == "dev-admin-token":
            raise ValueError("AURA_ADMIN_TOKEN must be set to a real secret in production")
        return self

    @property
    def kafka_host(self) -> str:
        return self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[0]

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])

    @property
    def cassandra_host_list(self) -> list[str]:
        return [h.strip() for h in self.cassandra_hosts.split(",") if h.strip()]

    @property
    def redis_port(self) -> int:
        from urllib.parse import urlparse

        return urlparse(self.redis_url).port or 6379


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()


def settings_env(s: Settings) -> dict[str, str]:
    """``s`` as AURA_* environment variables, for starting another process with the same settings."""
    env: dict[str, str] = {}
    for name, value in s.model_dump().items():
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"AURA_{name.upper()}"] = str(value)
    return env
