"""Settings of the roadmap service (environment variables, prefix NEWNORMAL_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from services.common.settings import ServiceSettings


class RoadmapSettings(ServiceSettings):
    service_name: str = "roadmap"
    http_port: int = Field(8101, validation_alias=AliasChoices("http_port", "NEWNORMAL_ROADMAP_PORT", "NEWNORMAL_HTTP_PORT"))
    watcher_enabled: bool = Field(True, description="run the deadline watcher in this replica")
    watcher_rescan_seconds: float = Field(30.0, gt=0, description="safety-net full rescan of deadlines and alert claims")
    watcher_max_tick_seconds: float = Field(
        1.0, gt=0, description="longest single sleep of the watcher; bounds the reaction to a moved (test) clock")
    alert_claim_stale_seconds: float = Field(
        30.0, ge=0, description="a claimed alert not marked published after this long is republished (same id)")
    alert_settle_seconds: float = Field(
        5.0, ge=0, description="an alert goes out once its milestone's facts have not grown for this long, so a burst "
        "of facts in any order raises what the whole burst calls for (a passing deadline is not delayed)")
    stats_refresh_seconds: float = Field(1.0, ge=0, description="least time between two recomputations of the summary figures")
