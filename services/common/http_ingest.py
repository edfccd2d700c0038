"""`POST /v1/events`: the CloudEvents HTTP intake every producing service mounts, and the bounded-cost
reading every POST route shares.

202 lists the accepted events; rejected events each get a machine-readable reason. An event
is reported accepted only after Kafka acknowledged it; if Kafka cannot take it, 503 + Retry-After.

Order of work on every POST, cheapest refusal first: authenticate (headers only), rate-limit, choose
the body limit from the headers, read at most that many bytes, decode with safejson (depth-limited,
a top-level array counted before its items are decoded), then parse items one by one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from services.common import openapi
from services.common.auth import ApiKeyAuth, Principal
from services.common.clock import Clock, utc_now
from services.common.kafka import EventPublisher
from services.common.metrics import PlatformMetrics
from services.common.ratelimit import TokenBucket, retry_after_seconds
from services.common.settings import ServiceSettings
from services.contracts import safejson
from services.contracts.common_types import UNKNOWN_AGENCY
from services.contracts.dates import check_event_dates
from services.contracts.envelope import (
    BATCH,
    MAX_EVENT_BYTES,
    STRUCTURED,
    Event,
    EventError,
    http_mode,
    id_conflict,
    parse_http,
)

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
RETRY_AFTER_SECONDS = 5


def problem(status: int, reason: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body = {"type": f"urn:newnormal:problem:{reason}", "title": reason.replace("_", " "), "status": status,
            "reason": reason, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def rate_limited(wait: float, what: str = "requests") -> JSONResponse:
    """429 with an integer Retry-After: the one answer of every rate-limited route."""
    retry = retry_after_seconds(wait)
    return problem(429, "rate_limited", f"too many {what} for this key; retry after {retry} s",
                   headers={"Retry-After": str(retry)})


# A request-level refusal's reason -> its status (everything else a request cannot be read for is 400).
_REQUEST_STATUS = {"unsupported_media_type": 415, "too_many_events": 413, "event_too_large": 413,
                   "request_too_large": 413}


class Ingestor:
    """Validates, authorises and publishes events; shared by `/v1/events` and service-specific intakes."""

    def __init__(self, *, publisher: EventPublisher, metrics: PlatformMetrics, settings: ServiceSettings,
                 allowed_types: Iterable[str], prepare: Callable[[Event], Event] | None = None,
                 limiter: TokenBucket | None = None, clock: Clock = utc_now):
        self.publisher = publisher
        # The receiving clock and the date windows (check_event_dates, the same rule the consumer applies).
        self.clock = clock
        self.date_window = settings.date_window()
        self.metrics = metrics
        self.settings = settings
        self.allowed_types = frozenset(allowed_types)
        self.prepare = prepare
        # One event budget per key for every intake route of the service (/v1/events, /xapi/statements).
        self.limiter = limiter or TokenBucket(settings.ingest_rate_per_second, settings.ingest_rate_burst,
                                              max_keys=settings.rate_limit_max_keys)

    def _check(self, item: Event, principal: Principal) -> Event | EventError:
        if item.type not in self.allowed_types:
            return EventError("type_not_accepted", f"{item.type} is not accepted by this service",
                              event_id=item.id, source=item.source)
        refused = principal.may_submit(item)
        if refused is not None:
            return refused
        refused = check_event_dates(item, self.clock(), self.date_window)
        if refused is not None:
            return refused
        item = principal.stamp(item)
        return self.prepare(item) if self.prepare is not None else item

    async def ingest(self, results: list[Event | EventError], principal: Principal) -> JSONResponse:
        if not results:  # an empty batch is a batch (CloudEvents HTTP binding 3.3.3): nothing to do
            return JSONResponse({"accepted": [], "rejected": [], "duplicates": []}, status_code=202)
        if len(results) > self.settings.ingest_max_events_per_request:
            return problem(413, "too_many_events",
                           f"at most {self.settings.ingest_max_events_per_request} events per request")
        accepted: list[tuple[int, Event]] = []
        rejected: list[dict[str, Any]] = []
        duplicates: list[dict[str, Any]] = []
        first_seen: dict[tuple[str, str], tuple[int, Event]] = {}  # key -> its first occurrence (index, event)
        for index, item in enumerate(results):
            if isinstance(item, EventError) and item.claim is not None:  # refused for its content: whose is it?
                item = principal.may_claim(item.claim, item.event_id, item.source) or item
            if isinstance(item, Event):
                try:
                    item = self._check(item, principal)
                except EventError as err:
                    item = err
                except Exception as exc:  # one event's failure is that event's answer, never the request's 500
                    log.warning("event could not be prepared", extra={"error_class": type(exc).__name__})
                    item = EventError("unprocessable", "the event's values could not be processed",
                                      event_id=item.id, source=item.source)
            if isinstance(item, EventError):
                rejected.append({"index": index, **item.as_problem()})
                continue
            # Same source+id twice in one request is one event, published once; with other content, a conflict.
            # Hashed only when an id repeats: a batch of distinct ids costs nothing here.
            seen = first_seen.setdefault(item.key, (index, item))
            if seen[0] == index:
                accepted.append((index, item))
            elif seen[1].content_hash() == item.content_hash():
                duplicates.append({"index": index, "id": item.id, "source": item.source, "duplicate_of": seen[0]})
            else:
                rejected.append({"index": index, **id_conflict(item).as_problem(), "conflicts_with": seen[0]})
        self.metrics.ingested.labels("rejected").inc(len(rejected))
        if not accepted:
            forbidden = all(r["reason"] == "agency_not_allowed" for r in rejected)
            status = 403 if forbidden else (413 if all(r["reason"] == "event_too_large" for r in rejected) else 400)
            return problem(status, rejected[0]["reason"], rejected[0]["detail"], errors=rejected)
        self.metrics.ingested.labels("duplicate").inc(len(duplicates))
        to_send = [event for _, event in accepted]
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
                           rejected=rejected, duplicates=duplicates)
        self.metrics.ingested.labels("accepted").inc(len(ok))
        return JSONResponse({"accepted": ok, "rejected": rejected, "duplicates": duplicates}, status_code=202)


async def read_body(request: Request, limit: int, *, timeout: float, reason: str = "request_too_large",
                    what: str = "the request body") -> bytes | JSONResponse:
    """At most `limit` bytes of the body, else 413 `reason`: refused on Content-Length before reading, and
    the stream is cut at the limit when the length is not declared (chunked) or declared falsely. A compressed
    body (`Content-Encoding: gzip`, ...) is 415 unread: nothing here inflates (a small gzip body can inflate a
    thousandfold), and read as it is it would only be refused as "not UTF-8" (RFC 9110 15.5.16). The whole body
    must arrive within `timeout` seconds (the service's `http_body_timeout_seconds`), else 408; a
    client that goes away while sending it is an answer of its own (400), never an error of the service."""
    coding = request.headers.get("content-encoding", "").strip().lower()
    if coding not in ("", "identity"):
        return problem(415, "unsupported_content_encoding", f"{what} must not be compressed: send it without "
                       "Content-Encoding", headers={"Accept-Encoding": "identity"})
    too_large = f"{what} may be at most {limit} bytes"
    length = request.headers.get("content-length", "").strip()
    if length.isdigit() and int(length) > limit:
        return problem(413, reason, too_large)
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > limit:
                    return problem(413, reason, too_large)
    except TimeoutError:
        log.info("request body not received in time", extra={"path": request.url.path, "received_bytes": len(body)})
        return problem(408, "request_timeout", f"{what} did not arrive within {timeout:g} s: send it whole",
                       headers={"Connection": "close"})
    except ClientDisconnect:  # nobody reads the answer; the log says what happened, without a traceback
        log.info("client closed the connection while sending the body",
                 extra={"path": request.url.path, "received_bytes": len(body)})
        return problem(400, "client_disconnected", f"{what} ended before it was complete: the client closed the "
                       "connection")
    return bytes(body)


def json_media_type(content_type: str | None) -> bool:
    """A JSON body's declared type: none at all (curl, simple clients), `application/json` or any `+json`."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or (media.startswith("application/") and media.endswith("+json"))


async def read_json(request: Request, limit: int, *, timeout: float, max_items: int | None = None,
                    too_many_reason: str = "too_many_items", headers: dict[str, str] | None = None) -> Any | JSONResponse:
    """A bounded body decoded with safejson, or the problem answer: 415 `unsupported_media_type` for a
    declared type that is not JSON (before the body is read), 413 `request_too_large` over `limit`,
    408 / 400 as `read_body` says, 400 `invalid_json` / `json_too_deep`, 413 `too_many_reason` when a top-level array holds more than
    `max_items` (counted before its items are decoded). Call it after authenticating: auth reads headers only.
    `headers` are added to a problem answer (xAPI's version header)."""
    answer: Any
    if not json_media_type(request.headers.get("content-type")):
        answer = problem(415, "unsupported_media_type", "send the body as application/json")
    elif isinstance(body := await read_body(request, limit, timeout=timeout), JSONResponse):
        answer = body
    else:
        try:
            if max_items is None:
                return safejson.loads(body)
            return safejson.loads_bounded(body, max_items=max_items)
        except safejson.TooManyItems:
            answer = problem(413, too_many_reason, f"at most {max_items} items per request")
        except safejson.TooComplex as exc:
            answer = problem(400, "too_complex", f"the body holds more than {exc.limit} JSON objects and arrays "
                             f"({safejson.CONTAINERS_PER_ITEM} per item): nested too deep or padded")
        except safejson.JsonTooDeep:
            answer = problem(400, "json_too_deep", f"the JSON nests deeper than {safejson.MAX_DEPTH} levels")
        except ValueError as exc:
            answer = problem(400, "invalid_json", f"the request body: {safejson.describe(exc)}")
    if headers:
        answer.headers.update(headers)
    return answer


async def read_json_rated(request: Request, principal: Principal, limiter: TokenBucket, limit: int, *, what: str,
                          timeout: float, max_items: int | None = None, too_many_reason: str = "too_many_items",
                          headers: dict[str, str] | None = None) -> Any | JSONResponse:
    """`read_json` behind the key's budget, as every intake route counts it: one token before the body is read
    (a key sending junk is limited too), the rest once a top-level array's items are counted; over budget, 429
    `rate_limited` with Retry-After, in `what` units."""
    wait = limiter.take(principal.key_id)
    if wait <= 0:
        payload = await read_json(request, limit, timeout=timeout, max_items=max_items, too_many_reason=too_many_reason, headers=headers)
        if isinstance(payload, JSONResponse) or not (isinstance(payload, list) and len(payload) > 1):
            return payload
        wait = limiter.take(principal.key_id, len(payload) - 1)
        if wait <= 0:
            return payload
    answer = rate_limited(wait, what)
    answer.headers.update(headers or {})
    return answer


def unknown_agency(code: str) -> JSONResponse:
    """404 `unknown_agency`: a path naming an agency the registry does not hold (a filter naming one is 400
    `unknown_agency`, from the validation handler). The code is shortened: it is the client's text."""
    return problem(404, UNKNOWN_AGENCY, f"no agency {code[:40]!r} in the registry (GET /v1/agencies)")


def events_router(ingestor: Ingestor, auth: ApiKeyAuth) -> APIRouter:
    router = APIRouter(tags=["ingestion"])

    @router.post(
        "/v1/events",
        status_code=202,
        summary="Submit CloudEvents (structured, batched or binary mode)",
        description=(f"Content-Type `{STRUCTURED}` (one event), `{BATCH}` (JSON array), or binary mode with "
                     "`ce-*` headers and the data as body. Authenticate with `X-API-Key`. At most "
                     "`NEWNORMAL_INGEST_MAX_EVENTS_PER_REQUEST` events (500) and `NEWNORMAL_INGEST_MAX_BODY_BYTES` "
                     "(1 MiB) per batch, 64 KiB per event."),
        responses={400: {"description": "every event rejected"}, 401: {"description": "missing or unknown key"},
                   403: {"description": "events of another agency"}, 413: {"description": "too large"},
                   415: {"description": "unsupported media type"},
                   429: {"description": "rate limited (per key, counted in events); see Retry-After"},
                   503: {"description": "Kafka unavailable"}},
        openapi_extra=openapi.events_body(ingestor.allowed_types, ingestor.settings.ingest_max_events_per_request),
    )
    async def post_events(request: Request, principal: Principal = Depends(auth)) -> JSONResponse:
        # Depends(auth) has run on the headers alone; one token is taken before the body is read, so a key
        # sending junk is limited too, and the rest of the batch's events once they are counted.
        settings, limiter = ingestor.settings, ingestor.limiter
        wait = limiter.take(principal.key_id)
        if wait > 0:
            ingestor.metrics.ingested.labels("rate_limited").inc()
            return rate_limited(wait, "events")
        try:
            mode = http_mode(request.headers)
        except EventError as err:
            return problem(_REQUEST_STATUS.get(err.reason, 400), err.reason, err.detail)
        timeout = settings.http_body_timeout_seconds
        if mode == "batch" or settings.ingest_max_body_bytes < MAX_EVENT_BYTES:
            body = await read_body(request, settings.ingest_max_body_bytes, timeout=timeout)
        else:
            body = await read_body(request, MAX_EVENT_BYTES, timeout=timeout, reason="event_too_large", what="an event")
        if isinstance(body, JSONResponse):
            return body
        try:
            results = parse_http(request.headers, body, allowed_types=ingestor.allowed_types,
                                 max_events=settings.ingest_max_events_per_request, received_at=ingestor.clock())
        except EventError as err:
            return problem(_REQUEST_STATUS.get(err.reason, 400), err.reason, err.detail)
        if len(results) > 1:
            wait = limiter.take(principal.key_id, len(results) - 1)
            if wait > 0:
                ingestor.metrics.ingested.labels("rate_limited").inc(len(results))
                return rate_limited(wait, "events")
        return await ingestor.ingest(results, principal)

    return router
