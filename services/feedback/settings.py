"""Settings of the feedback service (environment variables, prefix NEWNORMAL_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from services.common.settings import ServiceSettings


class FeedbackSettings(ServiceSettings):
    service_name: str = "feedback"
    http_port: int = Field(8103, validation_alias=AliasChoices("http_port", "NEWNORMAL_FEEDBACK_PORT", "NEWNORMAL_HTTP_PORT"))

    # --- citizen intake (POST /v1/responses) ---------------------------------------------------
    feedback_rate_per_second: float = Field(
        5.0, gt=0, description="responses per second each API key may submit (token refill rate, per replica)")
    feedback_rate_burst: int = Field(30, ge=1, description="token-bucket size: responses a key may send at once")

    # --- experience and gaps ---------------------------------------------------------------------
    feedback_default_days: int = Field(30, ge=1, le=3660, description="range of /v1/experience when from/to are omitted")
    feedback_max_days: int = Field(1830, ge=1, description="longest from..to range accepted, in days")
    feedback_gap_alpha: float = Field(0.05, gt=0, lt=0.5, description="one-sided significance level of the gap test")
    feedback_gap_min_cell: int = Field(30, ge=5, description="responses a cell needs before it is tested for a gap")
    feedback_gap_bonferroni: bool = Field(True, description="divide alpha by the number of cells tested")
    feedback_min_published_cell: int = Field(
        10, ge=1, description="responses a cell needs before agency readers see its figures (smaller: suppressed)")

    # --- rollups -----------------------------------------------------------------------------------
    feedback_sweep_interval_seconds: float = Field(
        30.0, gt=0, description="how often unfinished rollup batches (left by a crashed replica) are completed")
    feedback_sweep_grace_seconds: float = Field(
        60.0, ge=0, description="age of an unfinished rollup batch before another replica may complete it")
