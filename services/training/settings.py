"""Settings of the training service (environment variables, prefix NEWNORMAL_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from services.common.settings import ServiceSettings


class TrainingSettings(ServiceSettings):
    service_name: str = "training"
    http_port: int = Field(8102, validation_alias=AliasChoices("http_port", "NEWNORMAL_TRAINING_PORT", "NEWNORMAL_HTTP_PORT"))
