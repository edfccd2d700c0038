"""Composition root of the notifier service: builds its dependencies, nothing runs at import."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.app import Runtime, create_service_app
from services.common.consumer import Batch
from services.contracts.events import ROADMAP_ALERT_TYPES
from services.contracts.topics import ROADMAP_ALERTS
from services.notifier.settings import NotifierSettings


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or NotifierSettings()
    runtime = Runtime(settings)

    async def handle(batch: Batch) -> None:
        # Skeleton: the platform already stored the audit trail; the projection comes with the service issue.
        return None

    runtime.add_consumer(topic=ROADMAP_ALERTS, group="notifier", handler=handle, allowed_types=ROADMAP_ALERT_TYPES)
    app = create_service_app(runtime, title="Notifier service · บริการแจ้งเตือน", description="Turns alert events into notifications to the people responsible.")
    return app
