"""Composition root of the training service: builds its dependencies, nothing runs at import."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.app import Runtime, create_service_app, mount_event_intake
from services.common.consumer import Batch
from services.contracts.events import TRAINING_TYPES
from services.contracts.topics import TRAINING_EVENTS
from services.training.settings import TrainingSettings


def create_app(settings: TrainingSettings | None = None) -> FastAPI:
    settings = settings or TrainingSettings()
    runtime = Runtime(settings)

    async def handle(batch: Batch) -> None:
        # Skeleton: the platform already stored the audit trail; the projection comes with the service issue.
        return None

    runtime.add_consumer(topic=TRAINING_EVENTS, group="training", handler=handle, allowed_types=TRAINING_TYPES)
    app = create_service_app(runtime, title="Training service · บริการความพร้อมบุคลากร", description="Civil-servant training completions and readiness against target.")
    mount_event_intake(app, runtime, TRAINING_TYPES)
    return app
