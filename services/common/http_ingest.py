"""`POST /v1/events`: the CloudEvents HTTP intake every producing service mounts.

202 lists the accepted events; rejected events each get a machine-readable reason. An event
is reported accepted only after Kafka acknowledged it; if Kafka cannot take it, 503 + Retry-After.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from services.common.auth import ApiKeyAuth, Principal
from services.common.kafka import EventPublisher
from services.common.metrics import PlatformMetrics
from services.common.settings import ServiceSettings
from services.contracts.envelope import BATCH, STRUCTURED, Event, EventError, parse_http

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
RETRY_AFTER_SECONDS = 5


def problem(status: int, reason: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": f"urn:newnormal:problem:{reason}", "title": reason.replace("_", " "), "status": status,
            "reason": reason, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


class Ingestor:
    """Validates, authorises and publishes events; shared by `/v1/events` and service-specific intakes."""

    def __init__(self, *, publisher: EventPublisher, metrics: PlatformMetrics, settings: ServiceSettings,
                 allowed_types: Iterable[str], prepare: Callable[[Event], Event] | None = None):
        self.publisher = publisher
        self.metrics = metrics
        self.settings = settings
        self.allowed_types = frozenset(allowed_types)
        self.prepare = prepare

    async def ingest(self, results: list[Event | EventError], principal: Principal) -> JSONResponse:
        if len(results) > self.settings.ingest_max_events_per_request:
            return problem(413, "too_many_events",
                           f"at most {self.settings.ingest_max_events_per_request} events per request")
        accepted: list[tuple[int, Event]] = []
        rejected: list[dict[str, Any]] = []
        for index, item in enumerate(results):
            if isinstance(item, Event):
                if item.type not in self.allowed_types:
                    item = EventError("type_not_accepted", f"{item.type} is not accepted by this service",
                                      event_id=item.id, source=item.source)
                else:
                    item = principal.may_submit(item) or item
            if isinstance(item, Event) and self.prepare is not None:
                try:
                    item = self.prepare(item)
                except EventError as err:
                    item = err
            if isinstance(item, EventError):
                rejected.append({"index": index, **item.as_problem()})
            else:
                accepted.append((index, item))
        self.metrics.ingested.labels("rejected").inc(len(rejected))
        if not accepted:
            forbidden = all(r["reason"] == "agency_not_allowed" for r in rejected)
            status = 403 if forbidden else (413 if all(r["reason"] == "event_too_large" for r in rejected) else 400)
            first = rejected[0] if rejected else {"reason": "empty_batch", "detail": "no events in the request"}
            return problem(status, first["reason"], first["detail"], errors=rejected)
        # Same source+id twice in one request is one event: publish it once.
        unique: dict[tuple[str, str], Event] = {}
        for _, event in accepted:
            unique.setdefault(event.key, event)
        to_send = list(unique.values())
        errors = await self.publisher.publish_many(to_send)
        failed = {event.key for event, err in zip(to_send, errors) if err is not None}
        ok = [{"index": i, "id": e.id, "source": e.source} for i, e in accepted if e.key not in failed]
        if failed:
            self.metrics.ingested.labels("unavailable").inc(len(failed))
            self.metrics.ingested.labels("accepted").inc(len(ok))
            log.warning("kafka did not acknowledge events", extra={"failed": len(failed), "agency": principal.agency})
            not_taken = [{"index": i, "id": e.id, "source": e.source} for i, e in accepted if e.key in failed]
            return problem(503, "broker_unavailable", "Kafka did not acknowledge these events; retry later",
                           headers={"Retry-After": str(RETRY_AFTER_SECONDS)}, accepted=ok, not_accepted=not_taken,
                           rejected=rejected)
        self.metrics.ingested.labels("accepted").inc(len(ok))
        return JSONResponse({"accepted": ok, "rejected": rejected}, status_code=202)


async def read_body(request: Request, limit: int) -> bytes | JSONResponse:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        return problem(413, "request_too_large", f"the request body may be at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return problem(413, "request_too_large", f"the request body may be at most {limit} bytes")
    return bytes(body)


def events_router(ingestor: Ingestor, auth: ApiKeyAuth) -> APIRouter:
    router = APIRouter(tags=["ingestion"])

    @router.post(
        "/v1/events",
        status_code=202,
        summary="Submit CloudEvents (structured, batched or binary mode)",
        description=(f"Content-Type `{STRUCTURED}` (one event), `{BATCH}` (JSON array), or binary mode with "
                     "`ce-*` headers and the data as body. Authenticate with `X-API-Key`."),
        responses={400: {"description": "every event rejected"}, 401: {"description": "missing or unknown key"},
                   403: {"description": "events of another agency"}, 413: {"description": "too large"},
                   415: {"description": "unsupported media type"}, 503: {"description": "Kafka unavailable"}},
    )
    async def post_events(request: Request, principal: Principal = Depends(auth)) -> JSONResponse:
        body = await read_body(request, ingestor.settings.ingest_max_body_bytes)
        if isinstance(body, JSONResponse):
            return body
        try:
            results = parse_http(request.headers, body)
        except EventError as err:
            status = 415 if err.reason == "unsupported_media_type" else 400
            return problem(status, err.reason, err.detail)
        return await ingestor.ingest(results, principal)

    return router
