"""Settings of the roadmap service (environment variables, prefix NEWNORMAL_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from services.common.settings import ServiceSettings


class RoadmapSettings(ServiceSettings):
    service_name: str = "roadmap"
    http_port: int = Field(8101, validation_alias=AliasChoices("http_port", "NEWNORMAL_ROADMAP_PORT", "NEWNORMAL_HTTP_PORT"))
    # A batch writes each milestone it touches once, its events coalesced: the larger the batch, the fewer writes per
    # event. 100,000 shuffled events over 10,000 milestones: 2,000 -> 8,000 cut the database's CPU per event from
    # 3.85 to 2.48 ms (201 -> 306 events/s, docs/performance.md); training and feedback keep 2,000 (no gain there).
    consumer_max_records: int = Field(8000, ge=1, le=10_000)
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
