"""Composition root of the roadmap service: builds its dependencies, nothing runs at import."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.app import Runtime, create_service_app, mount_event_intake
from services.common.consumer import Batch
from services.contracts.events import ROADMAP_INPUT_TYPES
from services.contracts.topics import ROADMAP_EVENTS
from services.roadmap.settings import RoadmapSettings


def create_app(settings: RoadmapSettings | None = None) -> FastAPI:
    settings = settings or RoadmapSettings()
    runtime = Runtime(settings)

    async def handle(batch: Batch) -> None:
        # Skeleton: the platform already stored the audit trail; the projection comes with the service issue.
        return None

    runtime.add_consumer(topic=ROADMAP_EVENTS, group="roadmap", handler=handle, allowed_types=ROADMAP_INPUT_TYPES)
    app = create_service_app(runtime, title="Roadmap service · บริการติดตามแผนงาน", description="Programme milestones, delivery status, at-risk and missed-milestone alerts.")
    mount_event_intake(app, runtime, ROADMAP_INPUT_TYPES)
    return app
