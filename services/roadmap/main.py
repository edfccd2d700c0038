"""Composition root of the roadmap service: builds its dependencies, nothing runs at import."""

from __future__ import annotations

import math

from fastapi import FastAPI

from services.common.app import Runtime, create_service_app, mount_event_intake
from services.common.clock import Clock, utc_now
from services.common.mongo import retry_transient
from services.contracts.events import ROADMAP_CONSUMED_TYPES, ROADMAP_INPUT_TYPES
from services.contracts.topics import ROADMAP_EVENTS
from services.roadmap import upgrades
from services.roadmap.adapters import MilestoneRepository
from services.roadmap.entrypoints import build_router
from services.roadmap.handlers import RoadmapService
from services.roadmap.metrics import RoadmapCollector, RoadmapMetrics
from services.roadmap.privacy import prepare
from services.roadmap.settings import RoadmapSettings


def create_app(settings: RoadmapSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """`clock` returns the aware "now" every status rule uses (tests inject a movable one)."""
    settings = settings or RoadmapSettings()
    runtime = Runtime(settings, clock)
    repo = MilestoneRepository(runtime.db)
    metrics = RoadmapMetrics(runtime.registry)
    service = RoadmapService(repo, runtime.publisher, metrics, settings, clock or utc_now)

    # Agencies' events and the notifier's acknowledgements (derived: never accepted from an agency at the edge).
    # prepare() redacts personal data in free text before anything is stored (Kafka) or published (HTTP).
    runtime.add_consumer(topic=ROADMAP_EVENTS, group="roadmap", handler=service.handle,
                         allowed_types=ROADMAP_CONSUMED_TYPES, prepare=prepare)
    runtime.add_collector(RoadmapCollector(repo.read_stats, settings.metrics_cache_seconds))

    async def start(rt: Runtime) -> None:
        await repo.ensure_indexes()
        # In the background: an upgrade may rebuild every milestone, longer than a startup probe waits, and a
        # rebuild is made to run beside the consumer.
        rt.spawn(retry_transient(lambda: upgrades.upgrade(service, repo.migrations), what="upgrade the stored roadmap",
                                 stop=rt.stopping), name="roadmap-upgrade")
        rt.every(math.inf, service.refresh_stats_after_change, name="roadmap-stats", wake=service.stats_dirty)
        if settings.watcher_enabled:
            # A failed pass retries after one tick; a pass that succeeds says when it wants to run again.
            rt.every(settings.watcher_max_tick_seconds, service.watch_once, name="roadmap-deadline-watcher",
                     wake=service.wake)
        service.stats_dirty.set()

    runtime.on_startup(start)
    app = create_service_app(runtime, title="Roadmap service · บริการติดตามแผนงาน",
                             description="Programme milestones, delivery status, at-risk and missed-milestone alerts.")
    mount_event_intake(app, runtime, ROADMAP_INPUT_TYPES, prepare)
    app.include_router(build_router(service, runtime))
    app.state.roadmap = service
    return app
