"""Composition root of the notifier service: builds its dependencies, nothing runs at import."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
import yaml
from fastapi import FastAPI

from services.common.app import Runtime, create_service_app
from services.common.clock import Clock, utc_now
from services.common.mongo import retry_transient
from services.contracts.agencies import get_registry
from services.contracts.events import REPORT_TYPES, ROADMAP_ALERT_TYPES
from services.contracts.topics import REPORTS_EVENTS, ROADMAP_ALERTS
from services.notifier import entrypoints
from services.notifier.ack_routes import build_ack_router
from services.notifier.acknowledgements import Acknowledgements
from services.notifier.adapters import NotificationRepository
from services.notifier.channels import build_channels, check_webhook_signing
from services.notifier.contact_book import ContactBook
from services.notifier.domain import RoutingTable, parse_routing
from services.notifier.handlers import NotifierService
from services.notifier.holidays import load_holidays
from services.notifier.metrics import NotificationGauges, NotifierMetrics
from services.notifier.reports import ReportFetcher
from services.notifier.settings import NotifierSettings
from services.notifier.templates import Renderer

log = logging.getLogger(__name__)


def load_routing(path, settings: NotifierSettings | None = None) -> RoutingTable:
    with open(path, encoding="utf-8") as fh:
        table = parse_routing(yaml.safe_load(fh), known_agencies=get_registry())
    if settings is not None:
        check_webhook_signing(table, settings)  # an unsigned webhook only when the routes file says so
    return table


def create_app(settings: NotifierSettings | None = None, clock: Clock | None = None) -> FastAPI:
    settings = settings or NotifierSettings()
    runtime = Runtime(settings)
    repo = NotificationRepository(runtime.db)
    metrics = NotifierMetrics(runtime.registry)
    # A broken routing file fails at start-up, not on the first alert.
    routing = load_routing(settings.notifier_routes_file, settings)
    clock = clock or utc_now
    acks = Acknowledgements(settings=settings, repo=repo, routing=routing, publisher=runtime.publisher,
                            metrics=metrics, clock=clock)
    renderer = Renderer(settings.dashboard_url, ack_link=acks.link)
    service = NotifierService(settings=settings, repo=repo, routing=routing, renderer=renderer, channels={},
                              metrics=metrics, holidays=load_holidays(settings.notifier_holidays_file),
                              contacts=ContactBook(repo, routing, clock), acks=acks, clock=clock)
    runtime.add_collector(NotificationGauges(repo, settings.metrics_cache_seconds, clock))
    runtime.add_consumer(topic=ROADMAP_ALERTS, group="notifier", handler=service.on_alerts, allowed_types=ROADMAP_ALERT_TYPES)
    runtime.add_consumer(topic=REPORTS_EVENTS, group="notifier-reports", handler=service.on_reports,
                         allowed_types=REPORT_TYPES)
    clients: list[httpx.AsyncClient] = []

    async def startup(rt: Runtime) -> None:
        await retry_transient(repo.ensure_indexes, what="create notifier indexes")
        client = httpx.AsyncClient(timeout=settings.notifier_http_timeout_seconds,
                                   limits=httpx.Limits(max_connections=settings.notifier_concurrency * 2),
                                   follow_redirects=False)
        clients.append(client)
        service.channels = build_channels(settings, client, service.routing.unsigned_webhooks)
        key = settings.notifier_reports_api_key
        service.attachments = ReportFetcher(client, key.get_secret_value() if key else None,
                                            settings.notifier_report_attachment_max_bytes,
                                            settings.notifier_max_attempts, settings.notifier_reports_url).attachments
        rt.every(settings.notifier_scheduler_tick_seconds, service.dispatch_once, name="notifier-dispatcher",
                 wake=service.wake)
        rt.every(settings.notifier_scheduler_tick_seconds, service.schedule_once, name="notifier-scheduler")
        rt.every(settings.notifier_scheduler_tick_seconds, acks.publish_pending, name="notifier-ack-outbox")

    async def shutdown(rt: Runtime) -> None:
        service.stop_claiming()
        with contextlib.suppress(Exception):
            await service.release_queue()
        await service.drain(timeout=5.0)
        for task in list(service.inflight):
            task.cancel()  # its lease expires and another instance resumes it
        await asyncio.gather(*service.inflight, return_exceptions=True)
        for client in clients:
            await client.aclose()

    runtime.on_startup(startup)
    runtime.on_shutdown(shutdown)
    app = create_service_app(runtime, title="Notifier service · บริการแจ้งเตือน",
                             description="Turns roadmap alerts and Alertmanager alerts into notifications (e-mail, "
                                         "webhook, Slack, Teams, LINE) to the people responsible, with retries and reminders.")
    app.state.notifier = service
    app.include_router(entrypoints.build_router(service, runtime))
    app.include_router(build_ack_router(acks, renderer.env))
    return app
