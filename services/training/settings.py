"""Settings of the training service (environment variables, prefix NEWNORMAL_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr

from services.common.settings import ServiceSettings, require_secret

LEARNER_SECRET_ENV = "NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET"


class TrainingSettings(ServiceSettings):
    service_name: str = "training"
    http_port: int = Field(8102, validation_alias=AliasChoices("http_port", "NEWNORMAL_TRAINING_PORT", "NEWNORMAL_HTTP_PORT"))
    # Required, no default (a default would be a key every installation shares): the service refuses to
    # start without it. `newnormal up` generates one into .data/; README explains rotation.
    learner_hmac_secret: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("learner_hmac_secret", LEARNER_SECRET_ENV),
        description="key of the HMAC-SHA256 that pseudonymises learner_ref before anything is stored; at least 16 "
                    "characters; required. Without it stored learners cannot be joined back to an HR system; a new "
                    "key makes new pseudonyms (README: rotating the learner secret)",
    )
    stale_claim_seconds: float = Field(
        300.0, ge=0,
        description="a counting write whose journal entry is older than this and still open is taken as crashed "
                    "and finished by the sweep of whichever replica sees it (the token guard makes finishing twice "
                    "harmless); must exceed the longest write of a live replica",
    )
    recovery_interval_seconds: float = Field(60.0, gt=0, description="how often the background sweep looks for interrupted writes")
    xapi_max_statements: int = Field(500, ge=1, le=10_000, description="statements per xAPI request")
    import_chunk_size: int = Field(1000, ge=1, le=10_000, description="events published per pipelined chunk by `training import`")

    def learner_secret(self) -> str:
        """The pseudonymisation key; SecretMissing (the service refuses to start) when unset or too short."""
        return require_secret(self.learner_hmac_secret, LEARNER_SECRET_ENV, "key that pseudonymises learners")
