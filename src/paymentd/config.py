"""Settings: the only reader of environment variables.

Every knob has an embedded default so `paymentd serve` works on a bare machine;
secrets may also come from files (`STRIPE_API_KEY_FILE=/run/secrets/...`).
"""

from __future__ import annotations

import ipaddress
import os
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict


class _FileSecretsSource(PydanticBaseSettingsSource):
    """Reads `<ENV_NAME>_FILE` for every field, the Docker/Kubernetes secrets convention."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        names = field.validation_alias.choices if isinstance(field.validation_alias, AliasChoices) else []
        for env_name in [*names, f"PAYMENTD_{field_name.upper()}"]:
            path = os.environ.get(f"{env_name}_FILE")
            if path:
                return Path(path).read_text().strip(), field_name, False
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PAYMENTD_", extra="ignore", populate_by_name=True)

    # Storage. Unset DATABASE_URL: a private PostgreSQL is started in data_dir.
    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL", "PAYMENTD_DATABASE_URL"))
    data_dir: Path = Path(".paymentd")
    db_pool_size: int = 10

    # Stripe. Unset STRIPE_API_KEY: sandbox mode against the embedded stripe_sim.
    stripe_api_key: SecretStr | None = Field(None, validation_alias=_env("STRIPE_API_KEY", "PAYMENTD_STRIPE_API_KEY"))
    stripe_api_base: str | None = Field(None, validation_alias=_env("STRIPE_API_BASE", "PAYMENTD_STRIPE_API_BASE"))
    stripe_webhook_secrets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("STRIPE_WEBHOOK_SECRET", "PAYMENTD_STRIPE_WEBHOOK_SECRET"),
        description="Comma-separated; several during a secret rotation.",
    )
    stripe_max_network_retries: int = 2
    stripe_timeout_s: float = 10.0
    # Outbound limit shared by every paymentd process (in Redis when REDIS_URL is set).
    stripe_rps: int = 100
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL", "PAYMENTD_REDIS_URL"))
    redis_key_prefix: str = "paymentd"  # one per deployment sharing a Redis
    # How many processes (API processes, `--workers` children and job workers) share the
    # Stripe limit. While Redis is unreachable each takes only 1/N of it, so together they
    # never exceed it (providers/limiter.py).
    stripe_processes: int = Field(1, ge=1)
    # How often a process whose Redis failed tries it again (and how long after it answers
    # the process keeps its share too, until every process has seen it back).
    redis_retry_s: float = Field(2.0, gt=0)
    # How long a Stripe call may queue for the limiter. Requests stop waiting at their
    # budget (202); the call itself keeps its place in the queue this long. A burst of
    # 1,000 payments is ~2,000 calls, 20+ s at 100/s: the queue must outlast it.
    stripe_queue_wait_s: float = 120.0
    # Circuit breaker: open after this many consecutive transient failures, probe after reset_s.
    breaker_failures: int = 5
    breaker_reset_s: float = 10.0

    # Background work.
    run_worker: bool = Field(True, description="`paymentd serve` runs a job worker beside the API")
    reconcile_after_s: int = 60
    reconcile_interval_s: int = 30
    idempotency_ttl_hours: int = 24
    # Stripe's event payloads in the webhook inbox (already minimized) are blanked this
    # many days after receipt, once processed. 30: as long as Stripe itself keeps events,
    # so an apply outcome can be investigated against Stripe's copy; after that the
    # payment's own record and history say what happened. Event ids stay longer
    # (jobs/cleanup.py), so a late redelivery is still a duplicate.
    webhook_retention_days: int = Field(30, ge=1, le=3650)

    # Encryption at rest (crypto/). Key-encryption keys, "id:base64-32-bytes" comma-separated,
    # the first wraps new data keys; unset: a key file created in data_dir (sandbox only).
    encryption_keys: SecretStr | None = None
    # How often each process re-reads the data-key table (a rotation is seen this fast).
    encryption_refresh_s: float = Field(10.0, gt=0)

    # A checked API key is trusted this long in each process: revocation takes effect within it.
    auth_cache_s: float = 1.0
    # How often each process writes API keys' `last_used_at` (auth/usage.py): never per request.
    key_usage_flush_s: float = Field(60.0, gt=0)
    # Inbound limits (auth/throttle.py), counted across processes in Redis when REDIS_URL is set.
    # Requests per second per account, unless set for the account (`paymentd account set-limit`); 0: none.
    account_rps: int = Field(1000, ge=0)
    # Failed authentications from one client address per window before it gets 429; 0: never.
    auth_fail_limit: int = Field(20, ge=0)
    auth_fail_window_s: int = Field(60, ge=1)

    # Dashboard (/dashboard): a session ends after this long without a request, and
    # in any case this long after sign-in (dashboard/sessions.py).
    dashboard_idle_s: int = Field(1800, ge=1)
    dashboard_max_age_s: int = Field(43200, ge=1)

    # HTTP.
    host: str = "127.0.0.1"
    port: int = 8000
    sync_budget_ms: int = 400
    # Requests at work at once in one process; more wait up to half the budget, then 503 (admission.py). 0: no limit.
    max_in_flight: int = Field(64, ge=0)
    # Places an account already holding its fair share may not take, kept for other accounts
    # (admission.py). Unset: a quarter of max_in_flight.
    max_in_flight_reserve: int | None = Field(None, ge=0)
    max_wait_s: int = 30
    # SIGTERM (drain.py): /readyz answers 503 "draining" this long before the listener closes,
    # so a load balancer's health check takes the process out first (its interval x fall + 1 s).
    drain_delay_s: float = Field(0.0, ge=0)
    # Then at most this long for the requests in flight and the Stripe calls that outlived
    # their requests, together; what is left unfinished the reconciler settles.
    shutdown_timeout_s: float = Field(30.0, gt=0)
    max_body_bytes: int = 1_000_000
    # TLS served by paymentd itself (`serve --ssl-certfile --ssl-keyfile`): TLS 1.2+ only (tls.py),
    # and every response then says Strict-Transport-Security. Unset: plain HTTP, for a
    # TLS-terminating proxy in front (README "Behind a proxy").
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_keyfile_password: SecretStr | None = None
    hsts: str = "max-age=63072000; includeSubDomains"
    # Proxies whose X-Forwarded-For/-Proto are believed (uvicorn's forwarded_allow_ips):
    # comma-separated addresses or networks, "*" for any. Unset: uvicorn's default, 127.0.0.1.
    forwarded_allow_ips: str | None = None

    # Receipts: emailed when a payment succeeds, if SMTP is configured.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str | None = None
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: str = Field("none", pattern="^(none|starttls|tls)$")
    smtp_timeout_s: float = 10.0
    receipt_locale: str = "en_US"

    # Audit trail: the Ed25519 key that signs checkpoints (PEM, or 64 hex digits of the
    # raw private key; PAYMENTD_AUDIT_SIGNING_KEY or _FILE). Unset: created in data_dir
    # (sandbox only; production refuses to start without one).
    audit_signing_key: SecretStr | None = None
    audit_checkpoint_interval_s: int = Field(300, ge=10)

    # /metrics (metrics.py). Unset: open to anyone who can reach the port. A token: scrapers
    # send `Authorization: Bearer <token>`. Networks: only these client addresses
    # (comma-separated addresses or CIDRs). Both set: both must hold.
    metrics_token: SecretStr | None = None
    metrics_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Where `serve` keeps the processes' metric values so /metrics adds them up (emptied at
    # each start). Unset: <data_dir>/metrics. PROMETHEUS_MULTIPROC_DIR, when set, wins.
    metrics_dir: Path | None = None

    # Fraud rules (fraud/): off turns every account's rules off, counters included (an
    # operator's switch; a merchant turns its own off with PUT /api/fraud/rules).
    fraud_rules_enabled: bool = True
    # IP -> country table for the `ip_country` input (fraud/geo.py); unset: unknown.
    ip_countries_file: Path | None = None
    # Outbound webhooks to the merchant's endpoints (outbound/). Private targets (loopback,
    # private, link-local, CGNAT, metadata addresses; plain http) are refused unless allowed;
    # unset: allowed in sandbox mode only.
    webhooks_allow_private_targets: bool | None = None
    webhooks_timeout_s: float = Field(5.0, gt=0, le=30)
    # Retries: exponential backoff with jitter from base to cap, until give_up_after_s
    # (about three days) after the delivery was created (or redelivered by hand).
    webhooks_retry_base_s: float = Field(5.0, gt=0)
    webhooks_retry_cap_s: float = Field(6 * 3600.0, gt=0)
    webhooks_give_up_after_s: float = Field(3 * 86400.0, gt=0)
    # An endpoint failing every delivery this many times in a row, for at least this
    # long, is paused (status_reason says why) until the merchant resumes it.
    webhooks_pause_after_failures: int = Field(20, ge=1)
    webhooks_pause_after_s: float = Field(24 * 3600.0, ge=0)
    # A delivery job stays on its endpoint for retries due within this long (else the sweep,
    # every webhooks_sweep_interval_s, picks them up); sends at most this many at once.
    webhooks_linger_s: float = Field(10.0, ge=0)
    webhooks_sweep_interval_s: int = Field(10, ge=1)
    webhooks_concurrency: int = Field(8, ge=1, le=100)

    # Logs.
    log_level: str = "INFO"
    log_json: bool = True

    @field_validator("metrics_allow", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [s.strip() for s in value.split(",") if s.strip()]
        for network in value:
            ipaddress.ip_network(network, strict=False)  # a typo stops the start, loudly
        return value

    @field_validator("stripe_webhook_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [s.strip() for s in value.split(",") if s.strip()]
        return value

    @property
    def attempt_horizon(self) -> timedelta:
        """The longest a live process may still be sending a Stripe call it started:
        its place in the limiter's queue, then every SDK try. An attempt Stripe has not
        seen after this long never will be."""
        tries = self.stripe_max_network_retries + 1
        return timedelta(seconds=self.stripe_queue_wait_s + tries * (self.stripe_timeout_s + 2) + 30)

    @property
    def webhooks_private_targets_allowed(self) -> bool:
        if self.webhooks_allow_private_targets is None:
            return self.sandbox
        return self.webhooks_allow_private_targets

    @property
    def sandbox(self) -> bool:
        """No real key: talk to the simulator, and say so loudly."""
        return self.stripe_api_key is None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _FileSecretsSource(settings_cls), dotenv_settings


@lru_cache
def get_settings() -> Settings:
    return Settings()
