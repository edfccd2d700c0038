"""Settings of the reports service (environment variables, prefix NEWNORMAL_).

The service reads the other services only through their HTTP read APIs, with a programme-office key that has
no default (NEWNORMAL_REPORTS_API_KEY, or NEWNORMAL_REPORTS_API_KEY_FILE naming a file that holds it).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr

from services.common.settings import SecretMissing, ServiceSettings, require_secret

API_KEY_ENV = "NEWNORMAL_REPORTS_API_KEY"


class ReportsSettings(ServiceSettings):
    service_name: str = "reports"
    http_port: int = Field(8105, validation_alias=AliasChoices("http_port", "NEWNORMAL_REPORTS_PORT", "NEWNORMAL_HTTP_PORT"))

    # --- upstream read APIs ----------------------------------------------------------------------
    roadmap_url: str = Field("http://127.0.0.1:8101", description="base URL of the roadmap service's read API")
    training_url: str = Field("http://127.0.0.1:8102", description="base URL of the training service's read API")
    feedback_url: str = Field("http://127.0.0.1:8103", description="base URL of the feedback service's read API")
    notifier_url: str = Field("http://127.0.0.1:8104", description="base URL of the notifier's read API (the "
                                                                  "quarterly report's acknowledgement section)")
    reports_api_key: SecretStr | None = Field(
        None, description="programme-office API key (role programme_office) the service reads the APIs with. "
                          "Required unless NEWNORMAL_REPORTS_API_KEY_FILE is set; no default")
    reports_api_key_file: Path | None = Field(None, description="file holding that key (read at start-up)")
    reports_cache_seconds: float = Field(60.0, ge=0, le=3600,
                                         description="how long a read API answer is reused (0: never cached)")
    reports_refresh_ahead: bool = Field(
        True, description="refresh the front page's answers in the background before they expire (at 80% of "
                          "NEWNORMAL_REPORTS_CACHE_SECONDS), so no visitor waits for the read APIs")
    reports_cache_max_entries: int = Field(512, ge=1, description="bound of the answer cache (least recently used "
                                                                  "dropped)")
    reports_upstream_timeout_seconds: float = Field(10.0, gt=0, description="timeout of one read API request")
    reports_max_milestones: int = Field(20_000, ge=1000, le=1_000_000,
                                        description="most milestones read per page view (1,000 per request)")
    reports_late_listed: int = Field(10, ge=1, le=100, description="missed / at-risk milestones listed per section")
    reports_laggards_listed: int = Field(5, ge=1, le=50, description="agencies furthest behind listed")
    reports_trend_quarters: int = Field(4, ge=2, le=8, description="quarters drawn in the trend sparklines")
    # --- quarterly report delivery (services/reports/quarterly_delivery.py) -----------------------
    reports_public_url: str = Field("http://127.0.0.1:8105", description="this service's base URL as readers reach "
                                    "it: the links in reports.quarterly.generated events and e-mails")
    reports_quarterly_schedule_enabled: bool = Field(False, description="make, archive and announce the programme's "
                                                     "quarterly report after each quarter ends")
    reports_quarterly_schedule_day: int = Field(5, ge=1, le=28, description="day of the month after the quarter on "
                                                "(or after) which it is made (Bangkok time)")
    reports_quarterly_check_seconds: float = Field(600.0, gt=0, description="how often the schedule is checked")
    # --- quarterly report rendering (services/reports/quarterly_service.py, docs/reports.md) ---------
    # One render at a time per process: layout holds the GIL most of the time, so a second concurrent render on
    # the service's 2 cores gains little and doubles the GIL contention the public pages and health checks see.
    reports_render_concurrency: int = Field(1, ge=1, le=16, description="quarterly documents rendered at once "
                                            "in this process")
    reports_render_queue: int = Field(3, ge=0, le=100, description="renders that may wait for a free slot; "
                                      "beyond concurrency + queue: 503 render_busy + Retry-After")
    reports_document_cache_seconds: float = Field(60.0, ge=0, le=3600, description="how long a rendered "
                                                  "quarterly document is reused for the same request and the same "
                                                  "figures (0: never; concurrent identical requests still share "
                                                  "one render)")
    reports_document_cache_max_entries: int = Field(32, ge=1, le=1024, description="rendered documents kept "
                                                    "(least recently used dropped)")
    # Same variable as the feedback service's, so the public pages hide exactly what agency readers cannot see.
    feedback_min_published_cell: int = Field(
        10, ge=1, description="responses a cell needs before the public pages show its figures (smaller: suppressed)")

    def api_key(self) -> str:
        """The programme-office key from the variable or its file; SecretMissing if neither holds one."""
        value, env_var = self.reports_api_key, API_KEY_ENV
        if value is None and self.reports_api_key_file is not None:
            env_var = f"{API_KEY_ENV}_FILE"
            try:
                value = SecretStr(self.reports_api_key_file.read_text(encoding="utf-8"))
            except OSError as exc:
                raise SecretMissing(f"{env_var}: cannot read {self.reports_api_key_file} ({exc.strerror})") from None
        return require_secret(value, env_var, "programme-office API key the reports service reads the other services with "
                                              "(newnormal keys create --agency opdc --role programme_office)")
