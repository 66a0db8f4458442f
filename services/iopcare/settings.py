"""The one settings object. Every value comes from the environment with the ``IOPCARE_`` prefix.

Kafka and Postgres addresses are optional: when unset, the addresses of the embedded runtime
started by ``iopcare dev up`` are used (see :mod:`iopcare.embedded`).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from iopcare.networks import parse_networks

FETCH_MAX_WAIT_MS = 100


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def _networks(value: str) -> str:
    parse_networks(value)
    return value


class Settings(BaseSettings):
    """Runtime configuration for every iopcare service."""

    model_config = SettingsConfigDict(env_prefix="IOPCARE_", extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers, host:port[,host:port]. Unset: embedded broker."
    )
    database_url: str | None = Field(
        default=None, description="Postgres URL (postgresql://...). Unset: embedded Postgres."
    )
    # The services' own database roles (docs/operations.md, "Database roles"): `iopcare setup`, run
    # as the owner, sets these as their login passwords; each service then connects as its role.
    processor_database_password: SecretStr | None = None
    api_database_password: SecretStr | None = None
    dispatcher_database_password: SecretStr | None = None
    state_dir: Path = Field(
        default=Path(".iopcare"), description="Project-local folder for the embedded runtime's data and logs."
    )

    events_topic: str = "iop.events.v1"
    alerts_topic: str = "iop.alerts.v1"
    dead_letter_topic: str = "iop.events.v1.dlq"
    topic_partitions: int = Field(default=8, ge=1, le=1024)

    # Dead letters older than this are deleted from the table (the topic keeps its own retention);
    # 0 keeps them for ever.
    dead_letter_retention_days: int = Field(default=30, ge=0)

    publish_timeout_seconds: float = Field(default=30.0, gt=0)

    # Processor (Faust worker). Workers with the same app id form one consumer group.
    processor_app_id: str = "iopcare-processor"
    worker_web_host: str = "127.0.0.1"
    worker_web_port: int = Field(default=6066, ge=0, le=65535)
    batch_max_records: int = Field(default=500, ge=1, le=10_000)
    batch_max_wait_seconds: float = Field(default=0.1, gt=0, le=10)
    # How long a fetch from the broker may wait for records before it returns empty: the latency an
    # event arriving on a quiet partition can wait before the worker sees it. Faust's own is 1500 ms
    # (docs/benchmarks.md, "Fetch wait", for the measurements behind the default).
    fetch_max_wait_ms: int = Field(default=FETCH_MAX_WAIT_MS, ge=0, le=10_000)
    database_pool_size: int = Field(default=4, ge=1, le=100)
    # Faust's defaults take ~30 s to join a group; these take ~3 s (docs/operations.md). Raise them for
    # production clusters with slow networks.
    broker_rebalance_timeout_seconds: float = Field(default=5.0, gt=0)
    broker_session_timeout_seconds: float = Field(default=6.0, gt=0)
    broker_heartbeat_interval_seconds: float = Field(default=1.0, gt=0)
    # A worker that has held no partition for this long is not ready (/readyz 503): a join takes a few
    # seconds, a member the group never gives work to is a fault (docs/operations.md).
    worker_unassigned_grace_seconds: float = Field(default=30.0, gt=0)
    # How often each worker (and dispatcher) asks the broker for its whole group's lag.
    group_lag_interval_seconds: float = Field(default=15.0, gt=0, le=3600)
    # The rule pack (TOML): thresholds, severities, response targets. Unset: the packaged default.
    rule_pack: Path | None = None
    # "Now" for absence checks (no check-in for 48 h, week closed below plan), alert deadlines and
    # escalation. "wall": the wall clock (production). "stream": event time, the least over partitions
    # of the latest event time committed, for replaying history (the demo, a backfill).
    clock: Literal["wall", "stream"] = "wall"
    sweep_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    intake_supervisor_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$",
        description="The supervisor whose queue takes the alerts of a patient with no counselor yet "
        "(an event before the enrollment): at once, escalated. Unset: they wait for the enrollment.",
    )
    # The HTTP API and counselor inbox (`iopcare api`).
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=0, le=65535)
    # /metrics (and the probes again) on a port of their own, kept off the public one.
    api_metrics_host: str = "127.0.0.1"
    api_metrics_port: int = Field(default=6068, ge=0, le=65535)
    # The proxies in front of the API (an ingress, a load balancer), whose X-Forwarded-For names the
    # client: comma-separated addresses or CIDR ranges. Unset: the peer is the client.
    api_trusted_proxies: Annotated[str, AfterValidator(_networks)] = ""
    # Bad tokens per client per window before further failures are answered 429 (docs/api.md).
    api_failed_auth_limit: int = Field(default=10, ge=1)
    api_failed_auth_window_seconds: float = Field(default=60.0, gt=0)
    # Strict-Transport-Security max-age, sent when public_url is https (TLS terminates in front).
    api_hsts_max_age_seconds: int = Field(default=31_536_000, ge=0)
    log_level: Annotated[str, AfterValidator(_log_level)] = "INFO"
    # json (one object per line), console (text for a person) or auto: console on a terminal, else
    # JSON (docs/operations.md, "Logs").
    log_format: Literal["auto", "json", "console"] = "auto"

    # Dispatcher: alert events -> webhooks (docs/webhooks.md). Dispatchers sharing the group id
    # share the alerts topic's partitions; the deliveries table is their common queue.
    dispatcher_group_id: str = "iopcare-dispatcher"
    dispatcher_web_host: str = "127.0.0.1"
    dispatcher_web_port: int = Field(default=6067, ge=0, le=65535)
    public_url: str = Field(
        default="http://127.0.0.1:8080", description="Where the API serves the inbox; webhooks link to it."
    )
    # Fernet keys (comma-separated, newest first) that encrypt webhook signing secrets at rest
    # (docs/webhooks.md, "Keys"). Unset: a key file under state_dir, for a developer's machine.
    webhook_secret_keys: SecretStr | None = None
    # Networks a webhook target may resolve to although they are private, loopback or link-local
    # (comma-separated addresses or CIDR ranges; e.g. 127.0.0.0/8 for a receiver on this machine).
    # Unset: only public addresses. Cloud metadata addresses are refused even when listed.
    webhook_allowed_networks: Annotated[str, AfterValidator(_networks)] = ""
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    webhook_retry_base_seconds: float = Field(default=10.0, gt=0)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0)
    webhook_max_attempts: int = Field(default=12, ge=1, le=100)
    # An endpoint is disabled after this many failed attempts in a row AND this long without success.
    webhook_disable_after_failures: int = Field(default=10, ge=1)
    webhook_disable_after_seconds: float = Field(default=3600.0, ge=0)
    # A new delivery waits this long for the rest of its notification group (one POST per burst).
    webhook_coalesce_seconds: float = Field(default=0.5, ge=0, le=60)
    webhook_poll_interval_seconds: float = Field(default=1.0, gt=0, le=60)
    webhook_concurrency: int = Field(default=16, ge=1, le=1000)
    # How often the dispatcher looks whether the day's digests are due (the hour is the rule pack's
    # [calendar] digest_hour, in the clinic's zone).
    digest_poll_seconds: float = Field(default=60.0, gt=0, le=3600)

    def service_database_passwords(self) -> dict[str, str | None]:
        """The login password of each service's database role, as far as the settings give one."""
        given = {
            "processor": self.processor_database_password,
            "api": self.api_database_password,
            "dispatcher": self.dispatcher_database_password,
        }
        return {name: None if secret is None else secret.get_secret_value() for name, secret in given.items()}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
