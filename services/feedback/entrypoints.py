"""HTTP routes of the feedback service: parse, call one handler, answer."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.common import idempotency, openapi
from services.common.app import Runtime
from services.common.auth import READ_RESPONSES, Principal, Role
from services.common.http_ingest import problem, read_json_rated, unknown_agency
from services.common.params import AgencyFilter, IsoDate
from services.contracts.agencies import get_registry
from services.contracts.common_types import AgeGroup, Channel, TechDifficulty
from services.contracts.events import FEEDBACK_RESPONSE_SUBMITTED
from services.feedback.handlers import FeedbackService

TEMPLATES = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                        autoescape=select_autoescape(["html"]))

CHANNEL_LABELS = {
    Channel.online_web: ("เว็บไซต์", "Website"),
    Channel.mobile_app: ("แอปพลิเคชันบนมือถือ", "Mobile app"),
    Channel.line_official_account: ("LINE Official Account", "LINE OA"),
    Channel.call_center: ("ศูนย์บริการทางโทรศัพท์", "Call centre"),
    Channel.walk_in: ("ติดต่อที่สำนักงาน", "Walk-in office"),
    Channel.mobile_unit: ("หน่วยบริการเคลื่อนที่", "Mobile service unit"),
}
AGE_LABELS = {
    AgeGroup.under_18: ("ต่ำกว่า 18 ปี", "Under 18"),
    AgeGroup.age_18_24: ("18–24 ปี", "18–24"),
    AgeGroup.age_25_34: ("25–34 ปี", "25–34"),
    AgeGroup.age_35_44: ("35–44 ปี", "35–44"),
    AgeGroup.age_45_59: ("45–59 ปี", "45–59"),
    AgeGroup.age_60_plus: ("60 ปีขึ้นไป", "60 and over"),
}
TECH_LABELS = {
    TechDifficulty.none: ("ไม่มีปัญหา", "No difficulty"),
    TechDifficulty.some: ("มีปัญหาบ้าง", "Some difficulty"),
    TechDifficulty.severe: ("มีปัญหามาก", "Great difficulty"),
}
SATISFACTION_LABELS = [("น้อยที่สุด", "Very poor"), ("น้อย", "Poor"), ("ปานกลาง", "Fair"), ("มาก", "Good"),
                       ("มากที่สุด", "Excellent")]


# One citizen's form: a comment of at most 4,000 characters fits many times over.
RESPONSE_BODY_LIMIT = 64 * 1024


RANGE_DOC = ("first Bangkok day, YYYY-MM-DD; on or before `to`, and at most NEWNORMAL_FEEDBACK_MAX_DAYS days "
             "(default 1830) before it (`to` defaults to today)")


def build_router(service: FeedbackService, runtime: Runtime) -> APIRouter:
    router = APIRouter(tags=["feedback"])
    auth = runtime.auth

    @router.post(
        "/v1/responses", status_code=202,
        summary="Submit one citizen response (plain JSON form) · ส่งแบบสอบถามความพึงพอใจ",
        description=("Body: the fields of `feedback.response.submitted` data plus `agency`. Authenticated with the "
                     "agency's key (`X-API-Key`), rate-limited per key (429 + Retry-After). The server wraps the form "
                     "into a CloudEvent with a generated id; the comment is redacted before it reaches Kafka."),
        responses={400: {"description": "invalid form, or `invalid_idempotency_key`"},
                   401: {"description": "missing or unknown key"},
                   403: {"description": "another agency's form"},
                   409: {"description": "`idempotency_key_reused`: the Idempotency-Key came before with another body",
                         "content": {"application/problem+json": {}}},
                   429: {"description": "rate limited"},
                   503: {"description": "Kafka (`broker_unavailable`) or, with an Idempotency-Key, the response store "
                              "(`database_unavailable`) unavailable: retry with the same key"}},
        openapi_extra=openapi.data_body(FEEDBACK_RESPONSE_SUBMITTED, optional=["agency"],
                                        description="`agency` defaults to the key's own agency"),
    )
    async def post_response(request: Request, principal: Principal = Depends(auth.survey_intake),
                            idempotency_key: str | None = Header(
                                None, alias=idempotency.HEADER,
                                description=f"{idempotency.KEY_FORMAT}, one per filled form and kept across retries: a "
                                "retry with the same body gets the first answer (same id) and is counted once; "
                                "another body under the same key is 409 `idempotency_key_reused`. Scoped to the "
                                "key's agency.",
                                # Documented, checked by the handler: a malformed key is 400 invalid_idempotency_key.
                                json_schema_extra={"pattern": idempotency.KEY_PATTERN.pattern, "minLength": 8,
                                                   "maxLength": 128})) -> JSONResponse:
        form = await read_json_rated(request, principal, service.form_limiter, RESPONSE_BODY_LIMIT, what="responses",
                                     timeout=runtime.settings.http_body_timeout_seconds)
        if isinstance(form, JSONResponse):
            return form
        return await service.submit_response(form, principal, idempotency_key)

    reads = {**READ_RESPONSES, 400: {"description": "bad date, range (`invalid_range`) or agency code (`unknown_agency`)",
                                     "content": {"application/problem+json": {}}}}
    read_doc = ("Agency or programme-office key. `agency` omitted: all agencies together (the national aggregate); "
                "an agency key may name only its own agency (else 403). For agency keys, cells with fewer than "
                "`NEWNORMAL_FEEDBACK_MIN_PUBLISHED_CELL` responses, and the cells suppressed with them so that the "
                "overall figures cannot reveal them, come back with `suppressed: true` and null figures.")

    @router.get("/v1/experience", summary="Citizen experience by age group x channel · ประสบการณ์ผู้รับบริการ",
                description=read_doc, responses=reads)
    async def experience(from_: IsoDate | None = Query(None, alias="from", description=RANGE_DOC),
                         to: IsoDate | None = Query(None, description="last Bangkok day (inclusive), YYYY-MM-DD"),
                         agency: AgencyFilter = None,
                         principal: Principal = Depends(auth)) -> Any:
        return await service.experience(from_, to, agency, principal)

    @router.get("/v1/experience/gaps", summary="Cells significantly below overall satisfaction · กลุ่มที่ถูกทิ้งไว้ข้างหลัง",
                description=read_doc, responses=reads)
    async def gaps(from_: IsoDate | None = Query(None, alias="from", description=RANGE_DOC),
                   to: IsoDate | None = Query(None, description="last Bangkok day (inclusive), YYYY-MM-DD"),
                   agency: AgencyFilter = None, principal: Principal = Depends(auth)) -> Any:
        return await service.gaps(from_, to, agency, principal)

    @router.get("/survey/{agency}", response_class=HTMLResponse, tags=["survey"],
                summary="Survey form page for web forms and kiosks · แบบสอบถาม",
                description="Optional `?key=` carries a survey (kiosk) key of this agency that the page sends as "
                            "X-API-Key. A URL is public: the page refuses to carry any stronger key (403).",
                responses={403: {"description": "`key` is an agency or programme-office key, or another agency's",
                                 "content": {"application/problem+json": {}}},
                           404: {"description": "unknown agency", "content": {"application/problem+json": {}}}})
    async def survey(agency: str, key: str | None = Query(None, max_length=200),
                     service_name: str | None = Query(None, max_length=200),
                     channel: str | None = Query(None)) -> HTMLResponse:
        record = get_registry().get(agency) if agency in get_registry() else None
        if record is None:
            return unknown_agency(agency)  # type: ignore[return-value]
        if key:
            # A kiosk URL is seen by every citizen who passes: an agency or programme-office key in it would
            # let anyone post and read as the agency. Refuse to serve it, so the mistake shows at once.
            holder = await auth.lookup(key)
            if holder is not None and (holder.role is not Role.survey or holder.agency != agency):
                return problem(403, "survey_key_required",  # type: ignore[return-value]
                               "this page carries only a survey key of its agency: "
                               f"newnormal keys create --agency {agency} --role survey")
        nonce = secrets.token_urlsafe(16)  # the page's own script and style run; nothing injected would
        html = TEMPLATES.get_template("survey.html").render(
            nonce=nonce, agency=record, key=key or "", service_name=service_name or "",
            idempotency_key=uuid.uuid4().hex,  # this form's first submission (no-store: a new one per page load)
            channel=channel if channel in {c.value for c in Channel} else "",
            channels=[(c.value, *CHANNEL_LABELS[c]) for c in Channel],
            age_groups=[(a.value, *AGE_LABELS[a]) for a in AgeGroup],
            tech_levels=[(t.value, *TECH_LABELS[t]) for t in TechDifficulty],
            satisfaction=[(i + 1, *label) for i, label in enumerate(SATISFACTION_LABELS)],
        )
        # The page may carry a kiosk key: keep it out of referrers and caches. It talks to this service only, and
        # is not shown inside another site's frame (where a citizen could be led to submit what they did not see).
        return HTMLResponse(html, headers={
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
                                       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"})

    return router

