"""Settings of the notifier service (environment variables, prefix NEWNORMAL_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from services.common.settings import ServiceSettings


class NotifierSettings(ServiceSettings):
    service_name: str = "notifier"
    http_port: int = Field(8104, validation_alias=AliasChoices("http_port", "NEWNORMAL_NOTIFIER_PORT", "NEWNORMAL_HTTP_PORT"))
