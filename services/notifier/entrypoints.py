"""HTTP routes of the notifier: parse, call one service function, answer."""

from __future__ import annotations

import hashlib
import hmac
from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from services.common import openapi
from services.common.app import Runtime
from services.common.auth import READ_RESPONSES, Principal, Role, basic_credentials, bearer_token, single_header
from services.common.http_ingest import read_json, unknown_agency
from services.common.params import ASCII_INTEGER, AgencyFilter, IsoDate, IsoDateTime
from services.contracts import problems
from services.contracts.agencies import get_registry
from services.contracts.thai_calendar import BANGKOK
from services.notifier.contact_book import ContactsConflict
from services.notifier.contacts import AgencyContacts
from services.notifier.domain import Channel, State
from services.notifier.handlers import AlertmanagerPayload, NotifierService, NotRetryable, public_view


class TestNotificationRequest(BaseModel):
    route: str = Field(min_length=1, max_length=200, description="name of a route in the routing file")
    alert_type: Literal["at_risk", "missed", "recovered", "operational"] = "missed"
    wait_seconds: float = Field(0, ge=0, le=60, description="wait up to this long for the deliveries' outcome")


TEST_NOTIFICATION_MAX_BODY_BYTES = 4096  # three short fields: anything larger is not a test request
AgencyPath = Annotated[str, Path(max_length=40, description="agency code from the registry (GET /v1/agencies)")]
CONTACTS_MAX_BODY_BYTES = 64 * 1024  # 6 workstreams x 20 contacts with long names fit several times over

# A notification's id in a path: a sha256 hex (stored ids), bounded so that a long one is the same 400 on every route.
NotificationId = Annotated[str, Path(max_length=100)]


def _problem(status: int, reason: str, detail: str, headers: dict[str, str] | None = None) -> HTTPException:
    return HTTPException(status, detail={"reason": reason, "detail": detail}, headers=headers)


def _digest(value: bytes) -> bytes:
    # Hashing both sides first makes compare_digest's time independent of the credential's length too.
    return hashlib.sha256(value).digest()


def credential_matches(authorization: str, username: str, secret: str) -> bool:
    """`Authorization: Bearer <secret>` or `Basic base64(<username>:<secret>)`, compared in constant time."""
    expected = _digest(secret.encode())
    if (token := bearer_token(authorization)) is not None:
        return hmac.compare_digest(_digest(token.encode()), expected)
    pair = basic_credentials(authorization)
    if pair is None:
        return False
    # Both comparisons always run: no early exit tells which half was wrong.
    user_ok = hmac.compare_digest(_digest(pair[0].encode()), _digest(username.encode()))
    password_ok = hmac.compare_digest(_digest(pair[1].encode()), expected)
    return user_ok & password_ok


def _bangkok_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=BANGKOK)  # "a day" is an Asia/Bangkok day


def build_router(service: NotifierService, runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["notifier"])
    settings = service.settings
    body_timeout = settings.http_body_timeout_seconds
    # Refuse to start without the receiver's credential: an open receiver lets anyone who reaches the
    # notifier e-mail or LINE officials any text with any link.
    am_secret = settings.alertmanager_credential()
    am_user = settings.notifier_alertmanager_username
    am_schema = AlertmanagerPayload.model_json_schema()
    am_schema["properties"]["alerts"]["maxItems"] = settings.notifier_alertmanager_max_alerts  # the cap in force

    async def programme_office(principal: Principal = Depends(runtime.auth)) -> Principal:
        # Operating notifications (retry, test sends) is the programme office's job.
        if principal.role is not Role.programme_office:
            raise _problem(403, "role_not_allowed", "only the programme office operates notifications")
        return principal

    async def alertmanager_caller(request: Request) -> None:
        # Headers only: runs before a byte of the body is read.
        if not credential_matches(single_header(request.headers, "authorization") or "", am_user, am_secret):
            raise _problem(401, "unauthorized", "Alertmanager's bearer token or basic-auth credential is required",
                           headers={"WWW-Authenticate": 'Bearer realm="alertmanager", Basic realm="alertmanager"'})

    @router.post("/alertmanager", status_code=200, summary="Alertmanager webhook receiver (payload version 4)",
                 dependencies=[Depends(alertmanager_caller)],
                 openapi_extra=openapi.merge(openapi.ALERTMANAGER_AUTH, openapi.json_body(
                     am_schema, name="AlertmanagerPayload",
                     description=f"Alertmanager's webhook payload, version 4; at most "
                                 f"{settings.notifier_alertmanager_max_alerts} alerts and "
                                 f"{settings.notifier_alertmanager_max_body_bytes} bytes")),
                 responses=openapi.problem_responses(
                     s400="not a version-4 payload, or not JSON", s401="no or wrong Alertmanager credential",
                     s413="body or alert count over the limit; nothing stored"))
    async def alertmanager(request: Request) -> dict:
        raw = await read_json(request, settings.notifier_alertmanager_max_body_bytes, timeout=body_timeout)
        if isinstance(raw, JSONResponse):  # 413 / 400 problem, nothing parsed further
            return raw
        # Count before validating: the cost of a call is bounded before any alert is parsed.
        alerts = raw.get("alerts") if isinstance(raw, dict) else None
        cap = settings.notifier_alertmanager_max_alerts
        if isinstance(alerts, list) and len(alerts) > cap:
            raise _problem(413, "too_many_alerts", f"at most {cap} alerts per call (Alertmanager max_alerts)")
        try:
            # Strict: `false` is not an integer and `1` not a string, as the documented schema says.
            payload = AlertmanagerPayload.model_validate(raw, strict=True)
        except ValidationError as exc:
            raise _problem(400, "invalid_alertmanager_payload", problems.explain(exc.errors())) from None
        # Answer 2xx only after the notifications are stored: Alertmanager retries us on 5xx.
        stored = await service.on_alertmanager(payload)
        return {"status": "stored", "alerts": len(payload.alerts), "notifications_created": stored}

    @router.get("/notifications", summary="Notifications, newest first", responses=READ_RESPONSES,
                description="The programme office reads all; an agency key the notifications about its own "
                            "milestones (their recipients are its own contacts); a survey key nothing.")
    async def list_notifications(
        state: State | None = None, channel: Channel | None = None,
        milestone: Annotated[str | None, Query(max_length=64)] = None,
        agency: AgencyFilter = None,  # the milestones' owner agency
        limit: Annotated[int, Query(ge=1, le=500), ASCII_INTEGER] = 100,
        before: IsoDateTime | None = None,
        principal: Principal = Depends(runtime.auth),
    ) -> dict:
        docs = await service.notifications(state=state.value if state else None,
                                           channel=channel.value if channel else None, milestone=milestone,
                                           limit=limit, before=before, reader=principal, agency=agency)
        return {"items": [public_view(d) for d in docs], "count": len(docs)}

    @router.get("/notifications/{notification_id}", summary="One notification: delivery receipts, acknowledgement",
                responses={**READ_RESPONSES, 404: {"description": "no such notification, or not the reader's",
                                                   "content": {"application/problem+json": {}}}},
                description="Every attempt with the channel's answer (SMTP reply with its queue id, HTTP status "
                            "and the receiver's request id, LINE's x-line-request-id) and the acknowledgements of "
                            "its milestone and due date. An agency reads its own milestones' notifications only.")
    async def get_notification(notification_id: NotificationId,
                               principal: Principal = Depends(runtime.auth)) -> dict:
        view = await service.notification(notification_id, principal)
        if view is None:  # 404 also for another agency's: existence is not revealed
            raise _problem(404, "not_found", "no such notification")
        return view

    @router.get("/acknowledgements/summary", summary="Who answers their notifications (รับทราบการแจ้งเตือน)",
                responses={**READ_RESPONSES, 400: {"description": "bad date, range (`invalid_range`) or agency code",
                                                   "content": {"application/problem+json": {}}}},
                description="Missed and at-risk episodes (milestone and due date) first notified from `from` to `to` "
                            "(Bangkok days, inclusive, at most 366): how "
                            "many were acknowledged, how fast (hours from the first delivery), what is still open by "
                            "age, escalation levels reached, per agency (least responsive first). The programme "
                            "office reads all or one agency; an agency key its own.")
    async def acknowledgement_summary(
            from_: IsoDate = Query(alias="from", description="first Bangkok day (inclusive), YYYY-MM-DD"),
            to: IsoDate = Query(description="last Bangkok day (inclusive), YYYY-MM-DD"),
            agency: AgencyFilter = None, principal: Principal = Depends(runtime.auth)) -> dict:
        if from_ > to or (to - from_).days + 1 > 366:
            raise _problem(400, "invalid_range", "from must not be after to, and at most 366 days per query")
        return await service.acks.summary(_bangkok_midnight(from_), _bangkok_midnight(to + timedelta(days=1)),
                                          principal, agency)

    contacts_schema = AgencyContacts.model_json_schema()

    @router.get("/contacts/{agency}", summary="An agency's contacts per workstream, with the change history",
                responses={**READ_RESPONSES, 404: {"description": "unknown agency",
                                                   "content": {"application/problem+json": {}}}},
                description="That agency's key or the programme office. Addresses are personal data: shown only here.")
    async def get_contacts(agency: AgencyPath, principal: Principal = Depends(runtime.auth)) -> dict:
        if agency not in get_registry():
            return unknown_agency(agency)  # type: ignore[return-value]
        return await service.contacts.read(agency, principal)

    @router.put("/contacts/{agency}", summary="Set an agency's contacts (replaces them; audited)",
                openapi_extra=openapi.json_body(contacts_schema, name="AgencyContacts",
                                                description="contacts per workstream; `*` for any other workstream"),
                responses=openapi.problem_responses(
                    s400="invalid contacts", s403="another agency's contacts, or a survey key", s404="unknown agency",
                    s409="changed by someone else meanwhile: send again", s413=f"body over {CONTACTS_MAX_BODY_BYTES} bytes"))
    async def put_contacts(agency: AgencyPath, request: Request, principal: Principal = Depends(runtime.auth)) -> dict:
        if agency not in get_registry():
            return unknown_agency(agency)  # type: ignore[return-value]
        principal.read_scope(agency, "change")  # the key decides before the body is read
        raw = await read_json(request, CONTACTS_MAX_BODY_BYTES, timeout=body_timeout)
        if isinstance(raw, JSONResponse):
            return raw
        try:
            body = AgencyContacts.model_validate(raw)
        except ValidationError as exc:
            raise _problem(400, "invalid_contacts", problems.explain(exc.errors())) from None
        try:
            return await service.contacts.replace(agency, body, principal)
        except ContactsConflict:
            raise _problem(409, "conflict", "the contacts were changed meanwhile; read them and send again") from None

    @router.post("/notifications/{notification_id}/retry", summary="Retry a failed notification now",
                 responses=openapi.problem_responses(403, 404, s409="only failed or waiting notifications are retried"))
    async def retry(notification_id: NotificationId, _: Principal = Depends(programme_office)) -> dict:
        try:
            return public_view(await service.retry(notification_id))
        except LookupError:
            raise _problem(404, "not_found", "no such notification") from None
        except NotRetryable as exc:
            raise _problem(409, "conflict", f"notification is {exc.state}; only failed or waiting ones are retried") from None

    @router.post("/test-notification", summary="Send a test notification through one route, end to end",
                 openapi_extra=openapi.json_body(TestNotificationRequest.model_json_schema(),
                                                 name="TestNotificationRequest"),
                 responses=openapi.problem_responses(
                     s400="invalid body", s403="not the programme office", s404="no route of that name",
                     s413=f"body over {TEST_NOTIFICATION_MAX_BODY_BYTES} bytes"))
    async def test_notification(request: Request, _: Principal = Depends(programme_office)) -> dict:
        # The key and its role are checked (dependency, headers only) before the body is read.
        raw = await read_json(request, TEST_NOTIFICATION_MAX_BODY_BYTES, timeout=body_timeout)
        if isinstance(raw, JSONResponse):
            return raw
        try:
            body = TestNotificationRequest.model_validate(raw, strict=True)
        except ValidationError as exc:
            raise _problem(400, "invalid_request", problems.explain(exc.errors())) from None
        try:
            docs = await service.test_notification(body.route, body.alert_type, body.wait_seconds)
        except LookupError:
            raise _problem(404, "unknown_route", f"no route named {body.route!r}") from None
        return {"route": body.route, "items": [public_view(d) for d in docs]}

    return router
