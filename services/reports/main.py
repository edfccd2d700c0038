"""Composition root of the reports service: builds its dependencies, nothing runs at import.

The common Runtime gives /healthz, /readyz, /metrics, MongoDB (API-key auth of the keyed report downloads) and
the Kafka publisher (report-ready events); the service has no Kafka consumer.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from services.common.app import Runtime, create_service_app
from services.common.clock import Clock, utc_now
from services.reports.adapters import ReadApis
from services.reports.entrypoints import build_router
from services.reports.handlers import ReportsService
from services.reports.metrics import QuarterlyMetrics, ReportsMetrics
from services.reports.quarterly_delivery import QuarterlyArchive, QuarterlyDelivery
from services.reports.quarterly_routes import archive_router, quarterly_router
from services.reports.quarterly_service import QuarterlyReports
from services.reports.settings import ReportsSettings


def create_app(settings: ReportsSettings | None = None, *, clock: Clock = utc_now,
               transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    settings = settings or ReportsSettings()
    settings.api_key()  # refuse to start without the programme-office key (SecretMissing names the variable)
    runtime = Runtime(settings)
    metrics = ReportsMetrics(runtime.registry)
    source = ReadApis(settings, metrics, transport)
    service = ReportsService(source, settings, clock, metrics)

    async def startup(rt: Runtime) -> None:
        await source.start()
        if settings.reports_refresh_ahead and settings.reports_cache_seconds > 0:
            rt.every(max(1.0, settings.reports_cache_seconds * 0.8), service.refresh_overview, name="reports-refresh-ahead")

    async def shutdown(rt: Runtime) -> None:
        await source.close()

    runtime.on_startup(startup)
    runtime.on_shutdown(shutdown)
    app = create_service_app(runtime, title="Reports service · บริการรายงาน",
                             description="Programme overview (public) and quarterly reports, from the other services' "
                                         "read APIs.")
    app.include_router(build_router(service, runtime))
    quarterly_metrics = QuarterlyMetrics(runtime.registry)
    quarterly = QuarterlyReports(service, metrics=quarterly_metrics)
    archive = QuarterlyArchive(runtime.db)
    app.include_router(quarterly_router(quarterly, runtime.auth, quarterly_metrics))
    app.include_router(archive_router(archive, runtime.auth))
    if settings.reports_quarterly_schedule_enabled:
        delivery = QuarterlyDelivery(quarterly, archive, runtime.publisher, day=settings.reports_quarterly_schedule_day,
                                     base_url=settings.reports_public_url, clock=clock)
        runtime.on_startup(lambda rt: _schedule(rt, delivery, settings.reports_quarterly_check_seconds))
        app.state.quarterly_delivery = delivery
    app.state.reports = service
    app.state.reports_metrics = metrics
    return app


async def _schedule(rt: Runtime, delivery: QuarterlyDelivery, every: float) -> None:
    rt.every(every, delivery.tick, name="reports-quarterly-delivery", initial_delay=min(5.0, every))
