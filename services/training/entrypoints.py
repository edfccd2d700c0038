"""HTTP routes of the training service: readiness reads and the xAPI statement resource."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response

from services.common import openapi
from services.common.app import Runtime
from services.common.auth import READ_RESPONSES, WRITERS, ApiKeyAuth, Principal
from services.common.clock import utc_now
from services.common.http_ingest import problem, read_json_rated
from services.common.params import ASCII_INTEGER, AgencyFilter, repeated_parameter
from services.common.ratelimit import TokenBucket
from services.common.settings import ServiceSettings
from services.contracts.agencies import get_registry
from services.contracts.common_types import Competency
from services.training import xapi
from services.training.handlers import TrainingService, XapiIntake

FiscalYear = Annotated[int, Query(ge=2560, le=2600, description="Thai fiscal year, Buddhist era (2569 = 1 Oct 2025 – 30 Sep 2026)"),
                       ASCII_INTEGER]


def build_router(service: TrainingService, runtime: Runtime) -> APIRouter:
    """The readiness reads and the xAPI statement resource (which shares the `/v1/events` budget per key)."""
    router = APIRouter()
    router.include_router(_readiness_router(service, runtime.auth))
    if service.xapi is not None and runtime.intake is not None:
        router.include_router(_xapi_router(service.xapi, runtime.auth, runtime.settings, runtime.intake.limiter))
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
    async def laggards(fiscal_year: FiscalYear, limit: Annotated[int, Query(ge=1, le=500), ASCII_INTEGER] = 20,
                       principal: Principal = Depends(auth)) -> dict[str, Any]:
        return await service.laggards(fiscal_year, limit, principal.read_scope(None))

    return router


def _xapi_router(intake: XapiIntake, auth: ApiKeyAuth, settings: ServiceSettings, limiter: TokenBucket) -> APIRouter:
    """`limiter`: the service's per-key event budget (shared with /v1/events), counted in statements."""
    router = APIRouter(tags=["xAPI"])
    version = {xapi.VERSION_HEADER: xapi.VERSION}

    def headers() -> dict[str, str]:
        # Every answer of the Statement Resource: the version, and that everything stored is readable now
        # (a statement is readable once its answer was sent).
        now = utc_now().isoformat().replace("+00:00", "Z")
        return {**version, "X-Experience-API-Consistent-Through": now}

    async def authenticated(request: Request) -> Principal | Response:
        """Version header, then the key (header-only, before any body is read): X-API-Key, Bearer, or HTTP
        Basic with the key as the password (how LRS clients and the ADL conformance suite authenticate)."""
        if not xapi.version_ok(request.headers.get(xapi.VERSION_HEADER)):
            return problem(400, "xapi_version_required", f"send {xapi.VERSION_HEADER}: 1.0.3 (1.0.x accepted)",
                           headers=version)
        try:
            return await auth.authenticate(request, WRITERS, basic_realm="xAPI")
        except HTTPException as exc:
            return problem(exc.status_code, exc.detail["reason"], exc.detail["detail"],
                           headers={**version, **(exc.headers or {})})

    async def handle(request: Request, put_id: str | None) -> Response:
        principal = await authenticated(request)
        if isinstance(principal, Response):
            return principal
        payload = await read_json_rated(request, principal, limiter, settings.ingest_max_body_bytes, what="statements",
                                        timeout=settings.http_body_timeout_seconds,
                                        max_items=intake.max_statements, too_many_reason="too_many_statements",
                                        headers=version)
        if isinstance(payload, JSONResponse):
            return payload
        outcome = await intake.submit(payload, principal, put_id)
        if outcome.reason is not None:
            extra = headers()
            if "retry_after" in outcome.extra:
                extra["Retry-After"] = str(outcome.extra.pop("retry_after"))
            return problem(outcome.status, outcome.reason, outcome.detail or "", headers=extra, **outcome.extra)
        if outcome.status == 204:
            return Response(status_code=204, headers=headers())
        return JSONResponse(outcome.body, status_code=outcome.status, headers=headers())

    responses = {400: {"description": "malformed statement, missing version header, duplicate ids in the batch"},
                 401: {"description": "missing or unknown key"}, 403: {"description": "statement of another agency"},
                 409: {"description": "a different statement already stored under this id"},
                 413: {"description": "body or statement count over the limit"},
                 429: {"description": "rate limited (per key, counted in statements); see Retry-After"},
                 503: {"description": "Kafka unavailable"}}

    # The handler reads the body itself (limit before parsing, key before body): documented here instead.
    version_header = {"parameters": [{
        "name": xapi.VERSION_HEADER, "in": "header", "required": True, "description": "1.0.3 (any 1.0.x accepted)",
        "schema": {"type": "string", "pattern": r"^1\.0(\.[0-9]+)?$"}}]}
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

    put_param = {"name": "statementId", "in": "query", "required": True, "description": "the statement's id",
                 "schema": {"type": "string", "pattern": xapi.UUID_PATTERN}}

    @router.put("/xapi/statements", summary="Store one xAPI statement under statementId", status_code=204,
                responses=responses,
                openapi_extra=openapi.merge(openapi.KEYED, {"parameters": version_header["parameters"] + [put_param]},
                                            openapi.json_body(one, description="one statement; its id, if any, "
                                                                                "equals statementId")))
    async def put_statement(request: Request) -> Response:
        # statementId is read here, not by FastAPI's validation, so its refusal carries the version header too.
        statement_id = request.query_params.get("statementId")
        if repeated_parameter(request.query_params, ("statementId",)) is not None:
            principal = await authenticated(request)
            if isinstance(principal, Response):
                return principal
            return problem(400, "invalid_statement_id", "statementId is given more than once", headers=headers())
        if statement_id is None or not re.fullmatch(xapi.UUID_PATTERN, statement_id):
            principal = await authenticated(request)
            if isinstance(principal, Response):
                return principal
            return problem(400, "invalid_statement_id", "statementId must be a UUID", headers=headers())
        return await handle(request, statement_id)

    @router.get("/xapi/statements", summary="Read stored xAPI statements (one by id, or a filtered page)",
                responses={400: {"description": "bad parameter or version header"}, 401: {"description": "missing key"},
                           404: {"description": "no such statement for this agency"}},
                description="`statementId` or `voidedStatementId` stand alone (with `format` at most); `more` is the "
                            "cursor URL of the previous page and stands alone too. Voided statements are left out of "
                            "filtered pages. Agents are stored as keyed hashes (no address in clear): `agent` finds "
                            "them by the identifier they were sent with.",
                openapi_extra=openapi.merge(openapi.KEYED, {"parameters": version_header["parameters"]
                                                                          + xapi.QUERY_PARAMETERS}))
    async def get_statements(request: Request) -> Response:
        principal = await authenticated(request)
        if isinstance(principal, Response):
            return principal
        if (repeated := repeated_parameter(request.query_params)) is not None:  # xAPI's parameters take one value
            return problem(400, "invalid_parameter", f"{repeated[:40]} is given more than once", headers=headers())
        params = dict(request.query_params)
        agency = principal.read_scope(None)
        languages = xapi.accept_languages(request.headers.get("accept-language", ""))
        try:
            for name in ("statementId", "voidedStatementId"):
                if name in params:
                    if len(params) > 1 + ("format" in params) + ("attachments" in params):
                        raise xapi.StatementError("invalid_parameter", f"{name} takes no other filter")
                    sid = params[name].lower()
                    if not xapi.is_uuid(sid):
                        raise xapi.StatementError("invalid_parameter", f"{name} must be a UUID")
                    fmt = params.get("format", "exact")
                    if fmt not in ("exact", "ids", "canonical"):
                        raise xapi.StatementError("invalid_parameter", "format must be exact, ids or canonical")
                    found = await intake.one(sid, name == "voidedStatementId", agency)
                    if found is None:
                        return problem(404, "statement_not_found", f"no {'voided ' if name != 'statementId' else ''}"
                                       "statement with this id for this key", headers=headers())
                    return JSONResponse(xapi.formatted(found, fmt, languages), headers=headers())
            if "more" in params:
                if len(params) > 1:
                    raise xapi.StatementError("invalid_parameter", "more takes no other parameter")
                query = xapi.decode_cursor(params["more"])
            else:
                query = xapi.parse_query(params)
        except xapi.StatementError as err:
            return problem(400, err.reason, err.detail, headers=headers())
        page = await intake.query(query, agency, sorted(get_registry().codes()) if agency is None else [], languages)
        return JSONResponse(page, headers=headers())

    @router.get("/xapi/about", summary="xAPI versions this LRS speaks (no key needed)")
    async def about() -> Response:
        return JSONResponse({"version": list(xapi.SUPPORTED_VERSIONS)}, headers=version)

    return router
