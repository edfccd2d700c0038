"""Settings of the feedback service (environment variables, prefix NEWNORMAL_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from services.common.settings import ServiceSettings


class FeedbackSettings(ServiceSettings):
    service_name: str = "feedback"
    http_port: int = Field(8103, validation_alias=AliasChoices("http_port", "NEWNORMAL_FEEDBACK_PORT", "NEWNORMAL_HTTP_PORT"))
