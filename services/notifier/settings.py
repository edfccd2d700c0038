"""Settings of the notifier service (environment variables, prefix NEWNORMAL_).

Secrets (SMTP password, LINE token, webhook signing secret, Alertmanager bearer token, webhook URLs that
embed a token such as Slack's) are SecretStr: never logged, never returned by the API.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr

from services.common.settings import ServiceSettings

DEFAULT_ROUTES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "notifier" / "routes.yaml"


class NotifierSettings(ServiceSettings):
    service_name: str = "notifier"
    http_port: int = Field(8104, validation_alias=AliasChoices("http_port", "NEWNORMAL_NOTIFIER_PORT", "NEWNORMAL_HTTP_PORT"))

    # --- routing and schedule ---------------------------------------------------------------
    notifier_routes_file: Path = Field(DEFAULT_ROUTES_FILE, description="YAML routing table (see deploy/notifier/routes.yaml)")
    notifier_holidays_file: Path | None = Field(None, description="Thai public holidays JSON; default: the bundled list")
    notifier_quiet_start_hour: int = Field(20, ge=0, le=23, description="quiet hours start (Asia/Bangkok, hour)")
    notifier_quiet_end_hour: int = Field(8, ge=0, le=23, description="quiet hours end = working-morning hour (Asia/Bangkok)")
    notifier_scheduler_tick_seconds: float = Field(1.0, gt=0, le=60,
                                                   description="max wall time between scheduler/dispatcher checks")

    # --- delivery reliability ---------------------------------------------------------------
    notifier_concurrency: int = Field(32, ge=1, le=1000, description="deliveries in flight per instance")
    notifier_claim_batch: int = Field(
        500, ge=1, le=5000, description="notifications claimed per query into the local queue (a claim query costs "
                                        "about the same for 1 or 500 documents)")
    notifier_lease_seconds: float = Field(
        300.0, gt=0, description="a claimed notification is resumed by any instance after this; must exceed the time "
                                 "a claim batch waits in the queue (claim_batch / concurrency x HTTP timeout)")
    notifier_retry_base_seconds: float = Field(5.0, gt=0, description="first backoff ceiling (full jitter)")
    notifier_retry_max_seconds: float = Field(900.0, gt=0, description="backoff ceiling")
    notifier_retry_after_max_seconds: float = Field(3600.0, gt=0, description="longest Retry-After honoured")
    notifier_max_attempts: int = Field(8, ge=1, le=100, description="retry budget: attempts before a notification fails")
    notifier_http_timeout_seconds: float = Field(15.0, gt=0, description="timeout of one HTTP delivery")

    # --- channels ---------------------------------------------------------------------------
    notifier_smtp_host: str = Field("127.0.0.1", description="SMTP server")
    notifier_smtp_port: int = Field(25, ge=1, le=65535)
    notifier_smtp_starttls: bool = Field(False, description="upgrade with STARTTLS (port 587)")
    notifier_smtp_tls: bool = Field(False, description="implicit TLS (port 465)")
    notifier_smtp_username: str | None = None
    notifier_smtp_password: SecretStr | None = None
    notifier_smtp_timeout_seconds: float = Field(30.0, gt=0)
    notifier_email_from: str = Field("New Normal Monitor <no-reply@newnormal.go.th>", description="From header")
    notifier_line_base_url: str = Field("https://api.line.me", description="LINE Messaging API base URL")
    notifier_line_channel_access_token: SecretStr | None = Field(None, description="LINE channel access token")
    notifier_webhook_secret: SecretStr | None = Field(
        None, description="Standard Webhooks signing secret(s) `whsec_<base64>` of webhooks without their own entry "
                          "in NOTIFIER_WEBHOOK_SECRETS; several separated by spaces during rotation (each signs)")
    notifier_webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict, description="per-webhook signing secrets (JSON object: webhook name or URL as in the "
                                          "routes file -> `whsec_...`, space-separated during rotation)")
    notifier_webhook_urls: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="named webhook URLs (JSON object) used by recipients of the webhook, slack and teams channels")
    notifier_alertmanager_token: SecretStr | None = Field(
        None, description="bearer token Alertmanager must send (http_config.authorization); none = open")
