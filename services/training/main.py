"""Composition root of the training service: builds its dependencies, nothing runs at import."""

from __future__ import annotations

from fastapi import FastAPI

from services.common.app import Runtime, create_service_app, mount_event_intake
from services.common.clock import Clock, utc_now
from services.common.mongo import retry_transient
from services.contracts.events import TRAINING_TYPES
from services.contracts.topics import TRAINING_EVENTS
from services.training.adapters import TrainingRepository
from services.training.entrypoints import build_router
from services.training.handlers import COMPLETION_AUDITED_HERE, Pseudonymiser, TrainingService, XapiIntake
from services.training.metrics import ReadinessCollector, TrainingMetrics
from services.training.privacy import scrub_dead_letter
from services.training.settings import TrainingSettings


def create_app(settings: TrainingSettings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or TrainingSettings()
    learner_secret = settings.learner_secret()  # refuses to start without it, before anything is built
    clock = clock or utc_now
    runtime = Runtime(settings)
    repo = TrainingRepository(runtime.db, clock, settings.stale_claim_seconds)
    metrics = TrainingMetrics(runtime.registry)
    intake = XapiIntake(repo, runtime.publisher, metrics, clock, settings.xapi_max_statements, learner_secret,
                        date_window=settings.date_window())
    service = TrainingService(repo, metrics, clock, xapi=intake)

    async def startup(rt: Runtime) -> None:
        await retry_transient(repo.ensure_indexes, what="training indexes")
        await retry_transient(repo.migrate, what="upgrade the training counts")
        await retry_transient(repo.sweep, what="finish interrupted counting")
        rt.every(settings.recovery_interval_seconds, repo.sweep, name="training-sweep",
                 initial_delay=settings.recovery_interval_seconds)

    runtime.on_startup(startup)
    runtime.add_consumer(topic=TRAINING_EVENTS, group="training", handler=service.handle_batch,
                         allowed_types=TRAINING_TYPES, prepare=Pseudonymiser(learner_secret),
                         handler_audits=COMPLETION_AUDITED_HERE, dead_letter_scrub=scrub_dead_letter)
    runtime.add_collector(ReadinessCollector(repo, clock, settings.metrics_cache_seconds))
    app = create_service_app(runtime, title="Training service · บริการความพร้อมบุคลากร",
                             description="Civil-servant training completions and readiness against target, "
                                         "per agency and competency for the Thai fiscal year; xAPI intake for LMSs.")
    mount_event_intake(app, runtime, TRAINING_TYPES)
    app.include_router(build_router(service, runtime))
    app.state.training = service
    app.state.training_repo = repo
    return app
