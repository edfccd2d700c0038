"""Configuration from environment variables (prefix NEWNORMAL_), with defaults that run locally.

Production security is configuration only: Kafka SASL_SSL/SCRAM-SHA-512 and MongoDB TLS with
SCRAM credentials (in the URI) are switched on here, never by code changes.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.contracts.dates import DateWindow


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NEWNORMAL_", extra="ignore", populate_by_name=True)

    service_name: str = "newnormal"
    environment: str = Field("local", description="free text shown in logs and metrics info")

    # --- Kafka -----------------------------------------------------------------------------
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_create_topics: bool = True
    kafka_topic_partitions: int = Field(3, ge=1, le=1024)
    kafka_replication_factor: int = Field(1, ge=1, le=7)
    kafka_session_timeout_ms: int = Field(10_000, ge=1000)
    kafka_heartbeat_interval_ms: int = Field(3_000, ge=100)
    # A database outage is waited out inside the handler: give it room before the group evicts us.
    kafka_max_poll_interval_ms: int = Field(600_000, ge=10_000)
    kafka_consumer_group_prefix: str = "newnormal"
    # Records per batch, at most (a batch is whatever has arrived, up to this: at a steady rate it is small, so this
    # only shapes a backlog's replay). Each batch pays for its journal entry and for one write of every rollup it
    # touches: at 2,000 the training import ran 19 % faster than at 500 and the roadmap consumer 45 %
    # (bench/results/batch_size.json). 8,000 changed nothing for training and feedback (their writes are per record)
    # and cost memory; the roadmap, whose writes are per milestone, takes 8,000 (RoadmapSettings).
    consumer_max_records: int = Field(2000, ge=1, le=10_000)
    consumer_pipelined: bool = Field(True, description="decode the next batch while one is written (its offsets are "
                                                       "still committed only after it is stored); false: one at a time")
    publish_timeout_seconds: float = Field(10.0, gt=0)

    # --- MongoDB ---------------------------------------------------------------------------
    mongo_uri: SecretStr = SecretStr("mongodb://127.0.0.1:27017")
    mongo_db: str = "newnormal"
    mongo_server_selection_timeout_ms: int = 5_000

    # --- HTTP ------------------------------------------------------------------------------
    http_host: str = "127.0.0.1"
    http_port: int = 8100
    public_base_url: str | None = Field(None, description="external URL of this service, used in links")
    ingest_max_events_per_request: int = Field(500, ge=1, le=10_000, description="events (or xAPI statements) per request")
    # What 500 events need: a typical event is 0.6-2 KiB. The limit also bounds what decoding can cost: the
    # most wasteful JSON (`[{},{},...]`) takes about 24 bytes of memory per byte of body.
    http_body_timeout_seconds: float = Field(
        30.0, gt=0, le=600,
        description="time a request's whole body may take to arrive once its headers have (408 request_timeout "
                    "beyond): a client that declares a length and sends less holds a connection no longer")
    ingest_max_body_bytes: int = Field(
        1024 * 1024, ge=1024,
        description="largest batched body of /v1/events and /xapi/statements (413 request_too_large beyond; split "
                    "the batch). A single event (structured or binary mode) is limited to 64 KiB regardless")
    # Counted in events, not requests: one request of 500 events costs 500 tokens, so batching is neither
    # rewarded nor punished. Per key and per replica; the defaults let one agency upload a full batch
    # every quarter second without pause and are far above what the simulator and benchmarks send.
    ingest_rate_per_second: float = Field(
        2000.0, gt=0, description="events per second each API key may submit to /v1/events and /xapi/statements "
                                  "of one replica (token refill rate); over it: 429 rate_limited + Retry-After")
    ingest_rate_burst: int = Field(20_000, ge=1, description="token-bucket size in events: what a key may send at once")
    rate_limit_max_keys: int = Field(10_000, ge=1, description="keys each rate limiter remembers (least recent forgotten)")
    # A revoked key is refused by every replica within api_key_cache_seconds (hence at most 10 s);
    # expiry is checked on every request regardless.
    api_key_cache_seconds: float = Field(5.0, ge=0, le=10, description="how long a known API key is cached")
    api_key_unknown_cache_seconds: float = Field(2.0, ge=0, le=10, description="how long an unknown key is cached")
    api_key_cache_max_entries: int = Field(10_000, ge=1, description="bound of each key cache (known, unknown)")

    # --- Observability ---------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_cache_seconds: float = Field(5.0, ge=0, description="how long DB-derived metrics are cached between scrapes")
    dashboard_url: str = Field("http://127.0.0.1:3000", description="Grafana base URL used in notification links")

    # --- Date windows (docs/platform.md "Dates") -------------------------------------------
    event_time_tolerance_seconds: float = Field(
        300.0, ge=0, le=3600, description="how far ahead of the receiving clock an event's time, a progress as_of or "
                                          "a submitted_at may be (clock skew); beyond it: time_in_future")
    programme_horizon_start: date = Field(date(2020, 1, 1), description="earliest date of the programme (due dates, "
                                          "completions, observed instants); before it: date_out_of_range")
    programme_horizon_end: date = Field(date(2040, 12, 31), description="latest due date of the programme; after it: "
                                        "date_out_of_range")

    def date_window(self) -> DateWindow:
        if self.programme_horizon_start > self.programme_horizon_end:
            raise ValueError("NEWNORMAL_PROGRAMME_HORIZON_START is after NEWNORMAL_PROGRAMME_HORIZON_END")
        return DateWindow(self.programme_horizon_start, self.programme_horizon_end,
                          timedelta(seconds=self.event_time_tolerance_seconds))

    def consumer_group(self, name: str) -> str:
        return f"{self.kafka_consumer_group_prefix}.{name}"


class SecretMissing(RuntimeError):
    """A secret the service cannot run without is unset or too weak: it refuses to start, naming the variable."""


GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def require_secret(value: SecretStr | None, env_var: str, purpose: str, min_length: int = 16) -> str:
    """The secret's value, or SecretMissing. No secret has a default in code: a guessable default is a shared key."""
    secret = value.get_secret_value().strip() if value is not None else ""
    if not secret:
        raise SecretMissing(f"{env_var} is not set; it is the {purpose}. {GENERATE_HINT}")
    if len(secret) < min_length:
        raise SecretMissing(f"{env_var} is shorter than {min_length} characters; it is the {purpose}. {GENERATE_HINT}")
    return secret
