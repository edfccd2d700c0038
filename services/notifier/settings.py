"""Settings of the notifier service (environment variables, prefix NEWNORMAL_).

Secrets (SMTP password, LINE token, webhook signing secret, Alertmanager credential, webhook URLs that
embed a token such as Slack's) are SecretStr: never logged, never returned by the API.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr

from services.common.settings import SecretMissing, ServiceSettings, require_secret

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
    notifier_queue_max: int = Field(
        5000, ge=1, le=100_000, description="most notifications an instance holds claimed in its queue while its "
                                            "deliveries run fast (services/notifier/pace.py); each holds about 1.5 KiB")
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

    # --- quarterly reports by e-mail (services/notifier/reports.py) -------------------------------
    notifier_reports_url: str = Field("http://127.0.0.1:8105", description="base URL of the reports service: the "
                                      "only place the key below is sent to fetch an announced PDF")
    notifier_reports_api_key: SecretStr | None = Field(
        None, description="programme-office API key to fetch announced report PDFs for e-mail attachment; without "
                          "it report e-mails carry the link only (no default)")
    notifier_report_attachment_max_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, le=50 * 1024 * 1024, description="largest PDF attached (a larger one: link only)")

    # --- acknowledge links (services/notifier/acknowledgements.py) -------------------------------
    notifier_public_url: str = Field(
        "http://127.0.0.1:8104", description="the notifier's address as recipients reach it: acknowledge links are "
                                             "`<this>/ack/<notification>/<token>`")
    # Required, no default: the notifier refuses to start without it (a guessable key would let anyone acknowledge).
    notifier_ack_secret: SecretStr | None = Field(
        None, description="HMAC key of the acknowledge links, at least 32 characters; several separated by spaces "
                          "during a rotation (the first signs, any verifies)")
    notifier_ack_link_days: float = Field(30.0, gt=0, le=366, description="an acknowledge link works this many days "
                                                                          "after its notification was created")

    def ack_secrets(self) -> tuple[str, ...]:
        secret = require_secret(self.notifier_ack_secret, "NEWNORMAL_NOTIFIER_ACK_SECRET",
                                "key that signs acknowledge links")
        parts = tuple(secret.split())
        if not parts or any(len(p) < 32 for p in parts):
            raise SecretMissing("NEWNORMAL_NOTIFIER_ACK_SECRET: each key must be at least 32 characters")
        return parts

    # --- Alertmanager receiver (POST /v1/alertmanager) -------------------------------------
    # Required, no default: the notifier refuses to start without it (the receiver is never open).
    notifier_alertmanager_token: SecretStr | None = Field(
        None, description="credential Alertmanager must send: bearer token (http_config.authorization) or basic-auth "
                          "password (http_config.basic_auth); at least 16 characters. Required unless "
                          "NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN_FILE is set")
    notifier_alertmanager_token_file: Path | None = Field(
        None, description="file holding the credential (the same file Alertmanager's credentials_file/password_file "
                          "reads); read at start-up, so a rotated credential needs a restart")
    notifier_alertmanager_username: str = Field(
        "alertmanager", min_length=1, max_length=100, description="basic-auth user name expected with the credential")
    notifier_alertmanager_max_body_bytes: int = Field(
        2 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="largest webhook body read (413 beyond)")
    notifier_alertmanager_max_alerts: int = Field(
        500, ge=1, le=1000, description="most alerts in one webhook call (413 beyond, nothing stored); keep "
                                        "Alertmanager's max_alerts below it")

    def alertmanager_credential(self) -> str:
        """The receiver's credential from the variable or its file; SecretMissing if neither holds one."""
        value = self.notifier_alertmanager_token
        env_var = "NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN"
        if value is None and self.notifier_alertmanager_token_file is not None:
            env_var = "NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN_FILE"
            try:
                value = SecretStr(self.notifier_alertmanager_token_file.read_text(encoding="utf-8"))
            except OSError as exc:
                raise SecretMissing(f"{env_var}: cannot read {self.notifier_alertmanager_token_file} "
                                    f"({exc.strerror})") from None
        return require_secret(value, env_var, "credential Alertmanager sends to POST /v1/alertmanager")
