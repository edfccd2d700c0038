"""Settings of the training service (environment variables, prefix NEWNORMAL_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr

from services.common.settings import ServiceSettings

# Clearly not a secret: only for a laptop. Any other environment must set its own (a warning is logged).
DEV_LEARNER_HMAC_SECRET = "local-dev-only-learner-hmac-secret-change-me"


class TrainingSettings(ServiceSettings):
    service_name: str = "training"
    http_port: int = Field(8102, validation_alias=AliasChoices("http_port", "NEWNORMAL_TRAINING_PORT", "NEWNORMAL_HTTP_PORT"))
    learner_hmac_secret: SecretStr = Field(
        SecretStr(DEV_LEARNER_HMAC_SECRET),
        validation_alias=AliasChoices("learner_hmac_secret", "NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET"),
        description="key of the HMAC-SHA256 that pseudonymises learner_ref before anything is stored; "
                    "without it stored learners cannot be joined back to an HR system (rotate = new learners)",
    )
    stale_claim_seconds: float = Field(
        300.0, ge=0,
        description="a counting batch older than this and still not marked counted is taken as crashed and "
                    "finished by whoever sees it (the rollup guard makes finishing twice harmless)",
    )
    recovery_interval_seconds: float = Field(60.0, gt=0, description="how often the background sweep looks for stale batches")
    xapi_max_statements: int = Field(500, ge=1, le=10_000, description="statements per xAPI request")
    import_chunk_size: int = Field(1000, ge=1, le=10_000, description="events published per pipelined chunk by `training import`")

    def uses_dev_secret(self) -> bool:
        return self.learner_hmac_secret.get_secret_value() == DEV_LEARNER_HMAC_SECRET
