"""Settings of the roadmap service (environment variables, prefix NEWNORMAL_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from services.common.settings import ServiceSettings


class RoadmapSettings(ServiceSettings):
    service_name: str = "roadmap"
    http_port: int = Field(8101, validation_alias=AliasChoices("http_port", "NEWNORMAL_ROADMAP_PORT", "NEWNORMAL_HTTP_PORT"))
