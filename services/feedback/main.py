"""Composition root of the feedback service: builds its dependencies, nothing runs at import."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.app import Runtime, create_service_app, mount_event_intake
from services.common.consumer import Batch
from services.contracts.events import FEEDBACK_TYPES
from services.contracts.topics import FEEDBACK_EVENTS
from services.feedback.settings import FeedbackSettings


def create_app(settings: FeedbackSettings | None = None) -> FastAPI:
    settings = settings or FeedbackSettings()
    runtime = Runtime(settings)

    async def handle(batch: Batch) -> None:
        # Skeleton: the platform already stored the audit trail; the projection comes with the service issue.
        return None

    runtime.add_consumer(topic=FEEDBACK_EVENTS, group="feedback", handler=handle, allowed_types=FEEDBACK_TYPES)
    app = create_service_app(runtime, title="Feedback service · บริการความคิดเห็นประชาชน", description="Citizen feedback per channel and age group.")
    mount_event_intake(app, runtime, FEEDBACK_TYPES)
    return app
