"""HTTP routes of the training service: readiness reads and the xAPI statement resource."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from services.common import openapi
from services.common.app import Runtime
from services.common.auth import READ_RESPONSES, ApiKeyAuth, Principal
from services.common.http_ingest import problem, read_json_rated
from services.common.params import AgencyFilter
from services.common.ratelimit import TokenBucket
from services.contracts.common_types import Competency
from services.training import xapi
from services.training.handlers import TrainingService, XapiIntake

FiscalYear = Annotated[int, Query(ge=2560, le=2600, description="Thai fiscal year, Buddhist era (2569 = 1 Oct 2025 – 30 Sep 2026)")]


def build_router(service: TrainingService, runtime: Runtime) -> APIRouter:
    """The readiness reads and the xAPI statement resource (which shares the `/v1/events` budget per key)."""
    router = APIRouter()
    router.include_router(_readiness_router(service, runtime.auth))
    if service.xapi is not None and runtime.intake is not None:
        router.include_router(_xapi_router(service.xapi, runtime.auth, runtime.settings.ingest_max_body_bytes,
                                           runtime.intake.limiter))
    return router


def _readiness_router(service: TrainingService, auth: ApiKeyAuth) -> APIRouter:
    """Agency or programme-office key. An agency reads its own rows plus the national total (`agency`
    omitted means its own); naming another agency answers 403. The programme office reads every agency."""
    router = APIRouter(tags=["readiness"])

    @router.get("/v1/readiness", summary="ความพร้อมบุคลากรเทียบเป้าหมาย · Readiness against target",
                responses=READ_RESPONSES)
    async def readiness(fiscal_year: FiscalYear, agency: AgencyFilter = None,
                        competency: Competency | None = None, principal: Principal = Depends(auth)) -> dict[str, Any]:
        return await service.readiness(fiscal_year, principal.read_scope(agency), competency.value if competency else None)

    @router.get("/v1/readiness/laggards", responses=READ_RESPONSES,
                summary="หน่วยงานที่ล่าช้ากว่าแผน · Agencies furthest behind a linear path to target")
    async def laggards(fiscal_year: FiscalYear, limit: Annotated[int, Query(ge=1, le=500)] = 20,
                       principal: Principal = Depends(auth)) -> dict[str, Any]:
        return await service.laggards(fiscal_year, limit, principal.read_scope(None))

    return router


def _xapi_router(intake: XapiIntake, auth: ApiKeyAuth, body_limit: int, limiter: TokenBucket) -> APIRouter:
    """`limiter`: the service's per-key event budget (shared with /v1/events), counted in statements."""
    router = APIRouter(tags=["xAPI"])
    version = {xapi.VERSION_HEADER: xapi.VERSION}

    async def handle(request: Request, put_id: str | None) -> Response:
        if not xapi.version_ok(request.headers.get(xapi.VERSION_HEADER)):
            return problem(400, "xapi_version_required", f"send {xapi.VERSION_HEADER}: 1.0.3 (1.0.x accepted)", headers=version)
        try:  # authenticated here, after the version check, so a problem answer carries the version header too
            principal = await auth(request)
        except HTTPException as exc:
            return problem(exc.status_code, exc.detail["reason"], exc.detail["detail"],
                           headers={**version, **(exc.headers or {})})
        payload = await read_json_rated(request, principal, limiter, body_limit, what="statements",
                                        max_items=intake.max_statements, too_many_reason="too_many_statements",
                                        headers=version)
        if isinstance(payload, JSONResponse):
            return payload
        outcome = await intake.submit(payload, principal, put_id)
        if outcome.reason is not None:
            headers = dict(version)
            if "retry_after" in outcome.extra:
                headers["Retry-After"] = str(outcome.extra.pop("retry_after"))
            return problem(outcome.status, outcome.reason, outcome.detail or "", headers=headers, **outcome.extra)
        if outcome.status == 204:
            return Response(status_code=204, headers=version)
        return JSONResponse(outcome.body, status_code=outcome.status, headers=version)

    responses = {400: {"description": "malformed statement, missing version header, duplicate ids in the batch"},
                 401: {"description": "missing or unknown key"}, 403: {"description": "statement of another agency"},
                 409: {"description": "a different statement already stored under this id"},
                 413: {"description": "body or statement count over the limit"},
                 429: {"description": "rate limited (per key, counted in statements); see Retry-After"},
                 503: {"description": "Kafka unavailable"}}

    # The handler reads the body itself (limit before parsing, key before body): documented here instead.
    version_header = {"parameters": [{
        "name": xapi.VERSION_HEADER, "in": "header", "required": True, "description": "1.0.3 (any 1.0.x accepted)",
        "schema": {"type": "string", "pattern": r"^1\.0(\.\d+)?$"}}]}
    one = {"$defs": {"XapiStatement": xapi.STATEMENT_SCHEMA}, "$ref": "#/$defs/XapiStatement"}
    one_or_many = {"$defs": {"XapiStatement": xapi.STATEMENT_SCHEMA}, "oneOf": [
        {"$ref": "#/$defs/XapiStatement"},
        {"type": "array", "items": {"$ref": "#/$defs/XapiStatement"}, "maxItems": intake.max_statements}]}

    @router.post("/xapi/statements", summary="Store xAPI statements (one or an array)", responses=responses,
                 description="xAPI 1.0.3 Statement Resource. Completions (verbs completed/passed/failed) become "
                             "`training.course.completed` events; other verbs are acknowledged and ignored.",
                 openapi_extra=openapi.merge(openapi.KEYED, version_header, openapi.json_body(
                     one_or_many, description="one statement or an array of them")))
    async def post_statements(request: Request) -> Response:
        return await handle(request, None)

    @router.put("/xapi/statements", summary="Store one xAPI statement under statementId", status_code=204,
                responses={**responses, 200: {"description": "acknowledged, not stored: not a completion verb"}},
                openapi_extra=openapi.merge(openapi.KEYED, version_header, openapi.json_body(
                    one, description="one statement; its id, if any, equals statementId")))
    async def put_statement(request: Request,
                            statementId: Annotated[str, Query(pattern=xapi.UUID_PATTERN)]) -> Response:
        return await handle(request, statementId)

    return router
