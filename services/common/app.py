"""The service runtime: resources opened in the lifespan, the platform endpoints, and the app factory.

Nothing connects or reads the environment at import time: `create_app(settings)` of each service
builds a `Runtime`, adds its consumers, routes and collectors, and returns a FastAPI app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Iterator
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.utils import is_scalar_field
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.specification import AsyncAPI, get_asyncapi_html
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pymongo.asynchronous.database import AsyncDatabase
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.common import openapi
from services.common.auth import ApiKeyAuth
from services.common.clock import Clock, utc_now
from services.common.consumer import EventConsumer, Handler, Prepare
from services.common.http_ingest import PROBLEM, Ingestor, events_router, problem
from services.common.kafka import EventPublisher, ensure_topics, make_broker
from services.common.loops import Step, run_every
from services.common.metrics import PlatformMetrics, SnapshotCollector
from services.common.mongo import TRANSIENT_ERRORS, ensure_platform_indexes, make_client, retry_transient
from services.common.params import repeated_parameter
from services.common.settings import ServiceSettings
from services.contracts import problems
from services.contracts.agencies import get_registry
from services.contracts.common_types import UNKNOWN_AGENCY
from services.contracts.dates import STATIC_REASONS
from services.contracts.envelope import EventError

log = logging.getLogger(__name__)
Hook = Callable[["Runtime"], Awaitable[None]]

# Reasons a query or path parameter's refusal keeps when it is the only one (as on every route naming an agency or
# carrying a date); any other is `invalid_request`.
OWN_REASONS = frozenset({UNKNOWN_AGENCY, *STATIC_REASONS})


class Runtime:
    """Everything a service's adapters need, opened and closed in one place."""

    def __init__(self, settings: ServiceSettings, clock: Clock | None = None):
        self.settings = settings
        # The receiving clock of the intake and the consumers (date windows): the service's own Clock.
        self.clock: Clock = clock or utc_now
        self.registry = CollectorRegistry()
        self.metrics = PlatformMetrics(self.registry, settings.service_name)
        self.mongo = make_client(settings)
        self.db: AsyncDatabase = self.mongo[settings.mongo_db]
        self.broker = make_broker(settings, [KafkaPrometheusMiddleware(registry=self.registry,
                                                                       app_name=settings.service_name)])
        self.publisher = EventPublisher(settings, on_published=lambda t: self.metrics.published.labels(t).inc())
        self.auth = ApiKeyAuth(lambda: self.db, settings.api_key_cache_seconds,
                               unknown_seconds=settings.api_key_unknown_cache_seconds,
                               max_entries=settings.api_key_cache_max_entries)
        self.consumers: list[EventConsumer] = []
        self.snapshot_collectors: list[SnapshotCollector] = []
        self.startup_hooks: list[Hook] = []
        self.shutdown_hooks: list[Hook] = []
        self.background: list[asyncio.Task] = []
        self.intake: Ingestor | None = None  # the service's `/v1/events` intake, once mounted (its limiter is shared)
        self.stopping = asyncio.Event()
        self.ready = False

    # --- wiring ----------------------------------------------------------------------------
    def add_consumer(self, *, topic: str, group: str, handler: Handler, allowed_types: Iterable[str] | None = None,
                     prepare: Prepare | None = None, handler_audits: Collection[str] = (),
                     dead_letter_scrub: Callable[[bytes], bytes] | None = None) -> EventConsumer:
        """`dead_letter_scrub` rewrites every dead letter's value, key and headers before it leaves the service (DLQ
        topic or dead_letters collection); by default every string is redacted (`redact.scrub_payload`), and a
        service whose events carry personal data of its own kind removes that there too."""
        consumer = EventConsumer(topic=topic, group=group, handler=handler, db=self.db, publisher=self.publisher,
                                 metrics=self.metrics, settings=self.settings, allowed_types=allowed_types,
                                 prepare=prepare, handler_audits=handler_audits, dead_letter_scrub=dead_letter_scrub, clock=self.clock)
        consumer.stopping = self.stopping
        consumer.register(self.broker)
        self.consumers.append(consumer)
        return consumer

    def ingestor(self, allowed_types: Iterable[str], prepare: Prepare | None = None) -> Ingestor:
        return Ingestor(publisher=self.publisher, metrics=self.metrics, settings=self.settings,
                        allowed_types=allowed_types, prepare=prepare, clock=self.clock)

    def add_collector(self, collector: SnapshotCollector) -> None:
        self.registry.register(collector)
        self.snapshot_collectors.append(collector)

    def on_startup(self, hook: Hook) -> None:
        self.startup_hooks.append(hook)

    def on_shutdown(self, hook: Hook) -> None:
        self.shutdown_hooks.append(hook)

    def spawn(self, coro: Awaitable[Any], name: str) -> None:
        """Run a background task for the app's lifetime; a crash is logged, never silent."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)

        def done(t: asyncio.Task) -> None:
            if not t.cancelled() and t.exception() is not None:
                log.error("background task crashed", extra={"task": name}, exc_info=t.exception())

        task.add_done_callback(done)
        self.background.append(task)

    def every(self, interval: float, fn: Step, *, name: str, wake: asyncio.Event | None = None,
              initial_delay: float = 0.0) -> None:
        """The one way to run a background loop: `await fn()` every `interval` seconds (`math.inf`: only when
        woken) until the runtime stops, sooner when `wake` is set. See `run_every`."""
        self.spawn(run_every(interval, fn, name=name, stopping=self.stopping, wake=wake, initial_delay=initial_delay),
                   name)

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await retry_transient(lambda: ensure_platform_indexes(self.db), what="create indexes")
        await _retry_kafka(lambda: ensure_topics(self.settings), "create topics")
        await _retry_kafka(self.publisher.start, "start publisher")
        for hook in self.startup_hooks:
            await hook(self)
        await _retry_kafka(self.broker.start, "start consumers")
        self.ready = True
        log.info("service started", extra={"port": self.settings.http_port})

    async def stop(self) -> None:
        self.ready = False
        self.stopping.set()
        for task in self.background:
            task.cancel()
        for task in self.background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for consumer in self.consumers:  # the batch being written commits before its consumer closes
            await consumer.drain(timeout=10)
        with contextlib.suppress(Exception):
            await self.broker.stop()
        for hook in reversed(self.shutdown_hooks):
            with contextlib.suppress(Exception):
                await hook(self)
        await self.publisher.stop()
        with contextlib.suppress(Exception):  # the last `last_used_at` writes go out before the client closes
            await asyncio.wait_for(self.auth.settled(), 2)
        await self.mongo.close()

    async def readiness(self) -> dict[str, bool]:
        checks = {"started": self.ready}
        try:
            await asyncio.wait_for(self.db.command("ping"), 3)
            checks["mongodb"] = True
        except Exception:
            checks["mongodb"] = False
        checks["kafka"] = await self.publisher.ping()
        return checks

    def asyncapi(self):
        return AsyncAPI(self.broker, title=f"New Normal monitor: {self.settings.service_name}",
                        description="Kafka side of the service (CloudEvents 1.0, structured or binary mode).",
                        ).to_specification()


async def _retry_kafka(operation: Callable[[], Awaitable[Any]], what: str) -> None:
    delay = 0.5
    for attempt in range(60):
        try:
            await operation()
            return
        except Exception as exc:  # the broker may still be starting
            if attempt == 59:
                raise
            log.warning("kafka not ready, retrying", extra={"operation": what, "error": repr(exc)[:200]})
            await asyncio.sleep(delay)
            delay = min(5.0, delay * 1.5)


def create_service_app(runtime: Runtime, *, title: str, description: str, version: str = "1.0.0") -> FastAPI:
    """FastAPI app with the platform endpoints; the service adds its own routes afterwards."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=title, description=description, version=version, lifespan=lifespan,
                  dependencies=[Depends(known_query_parameters)])
    app.state.runtime = runtime

    @app.exception_handler(StarletteHTTPException)
    async def http_problem(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.detail, dict):
            detail = exc.detail
        else:  # Starlette's own (404 route, 405 method): its text is a standard phrase, never input
            detail = {"reason": _reason(exc.status_code), "detail": str(exc.detail)}
        reason = str(detail.get("reason") or _reason(exc.status_code))
        body = {"type": f"urn:newnormal:problem:{reason}", "title": reason.replace("_", " "),
                "status": exc.status_code, **detail, "reason": reason}
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": ", ".join(openapi.allowed_methods(app, request.url.path))}
        return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_problem(request: Request, exc: RequestValidationError) -> JSONResponse:
        # 400 like every other malformed input (same mistake, same status), in our own words (problems.describe).
        # An unknown agency in a filter keeps its own reason, as on every other route that names an agency.
        # So does a date's year rule (`buddhist_era_date`, `date_out_of_range`), as in an event's body.
        errors = problems.describe(exc.errors())
        reasons = {e["reason"] for e in errors}
        reason = reasons.pop() if len(reasons) == 1 and reasons <= OWN_REASONS else "invalid_request"
        return problem(400, reason, problems.summary(errors), errors=errors)

    @app.exception_handler(EventError)
    async def input_problem(request: Request, exc: EventError) -> JSONResponse:
        # A rule of the contracts refused the input (a date range, an agency code): 400 with its reason.
        return problem(400, exc.reason, exc.detail)

    @app.exception_handler(Exception)
    async def internal_problem(request: Request, exc: Exception) -> JSONResponse:
        # A bug, never the client's input (that is a 4xx above): the client gets a problem document like every
        # other answer, without the exception's text; Starlette logs the traceback after this answer.
        if isinstance(exc, TRANSIENT_ERRORS):
            return problem(503, "database_unavailable", "the database did not answer: retry later",
                           headers={"Retry-After": "5"})
        return problem(500, "internal_error", "the service failed on this request; it is logged")

    @app.get("/healthz", tags=["platform"], summary="Process alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": runtime.settings.service_name}

    @app.get("/readyz", tags=["platform"], summary="Kafka and MongoDB reachable")
    async def readyz() -> JSONResponse:
        checks = await runtime.readiness()
        ok = all(checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["platform"], summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        await asyncio.gather(*(c.refresh() for c in runtime.snapshot_collectors))
        return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/asyncapi.json", tags=["platform"], summary="AsyncAPI document of the Kafka side")
    async def asyncapi_json() -> Response:
        return Response(runtime.asyncapi().to_json(), media_type="application/json")

    @app.get("/asyncapi", tags=["platform"], summary="AsyncAPI documentation page", response_class=HTMLResponse)
    async def asyncapi_html() -> HTMLResponse:
        return HTMLResponse(get_asyncapi_html(runtime.asyncapi()))

    @app.get("/v1/agencies", tags=["platform"], summary="The agency registry (codes accepted in `agency`)")
    async def agencies() -> list[dict[str, str]]:
        return [{"code": a.code, "name_th": a.name_th, "name_en": a.name_en, "ministry": a.ministry, "kind": a.kind}
                for a in get_registry().all()]

    openapi.install(app, runtime.auth)
    return app


def mount_event_intake(app: FastAPI, runtime: Runtime, allowed_types: Iterable[str], prepare: Prepare | None = None) -> Ingestor:
    """`POST /v1/events`; the ingestor is kept as `runtime.intake`, so the service's own intake routes
    (xAPI, survey responses) publish through it and share its per-key budget."""
    ingestor = runtime.intake = runtime.ingestor(allowed_types, prepare)
    app.include_router(events_router(ingestor, runtime.auth))
    return ingestor


_QUERY_NAMES: dict[int, tuple[frozenset[str], frozenset[str]]] = {}  # route -> (its names, those taking one value)


async def known_query_parameters(request: Request) -> None:
    """A parameter a JSON API route does not take is a mistake, answered 400 `unknown_parameter`: ignored, a
    misspelt filter (`?agnecy=rd`) or one a route does not have (`/v1/summary?agency=rd`) would be answered with
    other data than the client asked for. One that takes a single value given twice (`?agency=dga&agency=rd`) is
    400 `repeated_parameter`: the route would take the last, a proxy, a cache or a log the first.
    Pages (HTML, links in messages) and xAPI (its own rule) are left alone."""
    route = request.scope.get("route")
    if not request.url.path.startswith("/v1/") or not isinstance(route, APIRoute) or not request.query_params:
        return
    known = _QUERY_NAMES.get(id(route))
    if known is None:
        params = list(_query_params(route.dependant))
        known = _QUERY_NAMES[id(route)] = (frozenset(p.alias for p in params),
                                           frozenset(p.alias for p in params if is_scalar_field(p)))
    names, single = known
    unknown = sorted(set(request.query_params) - names)
    if unknown:
        takes = ", ".join(sorted(names)) or "no parameters"
        raise StarletteHTTPException(400, detail={"reason": "unknown_parameter", "detail": (
            f"{route.path} does not take {unknown[0][:40]!r}; it takes {takes}")})
    if (repeated := repeated_parameter(request.query_params, single)) is not None:
        raise StarletteHTTPException(400, detail={"reason": "repeated_parameter", "detail": (
            f"{repeated} is given more than once; it takes one value")})


def _query_params(dependant: Any) -> Iterator[Any]:
    """The query parameters a route declares, its dependencies' included."""
    yield from dependant.query_params
    for sub in dependant.dependencies:
        yield from _query_params(sub)


def _reason(status: int) -> str:
    return {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
            409: "conflict", 413: "too_large", 415: "unsupported_media_type", 429: "rate_limited"}.get(status, "error")
