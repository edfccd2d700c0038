"""Composition root of the feedback service: builds its dependencies, nothing runs at import."""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import FastAPI

from services.common.app import Runtime, create_service_app, mount_event_intake
from services.common.clock import Clock, utc_now
from services.common.idempotency import IdempotencyStore
from services.common.ratelimit import TokenBucket
from services.contracts.events import FEEDBACK_TYPES
from services.contracts.topics import FEEDBACK_EVENTS
from services.feedback.adapters import FeedbackRepository
from services.feedback.domain import prepare, scrub_dead_letter
from services.feedback.entrypoints import build_router
from services.feedback.handlers import FeedbackService
from services.feedback.metrics import FeedbackCollector
from services.feedback.settings import FeedbackSettings


def create_app(settings: FeedbackSettings | None = None, *, clock: Clock | None = None,
               monotonic: Callable[[], float] = time.monotonic) -> FastAPI:
    settings = settings or FeedbackSettings()
    clock = clock or utc_now
    runtime = Runtime(settings)
    repo = FeedbackRepository(runtime.db, clock, lease_seconds=settings.feedback_sweep_grace_seconds / 2)
    limiter = TokenBucket(settings.feedback_rate_per_second, settings.feedback_rate_burst, monotonic)
    idempotency = IdempotencyStore(runtime.db.feedback_idempotency_keys)
    service = FeedbackService(repo, settings, clock, form_limiter=limiter, idempotency=idempotency)

    # prepare() redacts and drops birth_year before anything is stored (Kafka path) and before publishing
    # (HTTP). The repository writes each response as its event's audit record (one write).
    runtime.add_consumer(topic=FEEDBACK_EVENTS, group="feedback", handler=service.handle_batch,
                         allowed_types=FEEDBACK_TYPES, prepare=prepare, handler_audits=FEEDBACK_TYPES,
                         dead_letter_scrub=scrub_dead_letter)
    runtime.add_collector(FeedbackCollector(repo, settings.metrics_cache_seconds))

    async def startup(rt: Runtime) -> None:
        await repo.ensure_indexes()
        await idempotency.rekey_legacy()
        await repo.sweep(settings.feedback_sweep_grace_seconds)
        # A failed round is logged and the next one tries again: the journal keeps the work.
        rt.every(settings.feedback_sweep_interval_seconds, lambda: repo.sweep(settings.feedback_sweep_grace_seconds),
                 name="feedback-rollup-sweeper", initial_delay=settings.feedback_sweep_interval_seconds)

    runtime.on_startup(startup)
    app = create_service_app(runtime, title="Feedback service · บริการความคิดเห็นประชาชน",
                             description="Citizen experience by age group and service channel; personal data redacted at intake.")
    service.intake = mount_event_intake(app, runtime, FEEDBACK_TYPES, prepare=prepare)
    app.include_router(build_router(service, runtime))
    app.state.feedback = service
    app.state.feedback_repo = repo
    return app
