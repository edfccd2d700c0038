"""HTTP routes of the notifier: parse, call one service function, answer."""

from __future__ import annotations

import asyncio
import hmac
import time
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, Field, ValidationError

from services.common.app import Runtime
from services.common.auth import Principal, Role
from services.notifier.domain import Channel, State
from services.notifier.handlers import AlertmanagerPayload, NotifierService, public_view


class TestNotificationRequest(BaseModel):
    route: str = Field(min_length=1, max_length=200, description="name of a route in the routing file")
    alert_type: Literal["at_risk", "missed", "recovered", "operational"] = "missed"
    wait_seconds: float = Field(0, ge=0, le=60, description="wait up to this long for the deliveries' outcome")


def _problem(status: int, reason: str, detail: str) -> HTTPException:
    return HTTPException(status, detail={"reason": reason, "detail": detail})


def mount(app: FastAPI, runtime: Runtime, service: NotifierService) -> None:
    router = APIRouter(prefix="/v1", tags=["notifier"])
    settings = service.settings

    async def programme_office(principal: Principal = Depends(runtime.auth)) -> Principal:
        # Notifications name the people responsible: the programme office operates them.
        if principal.role is not Role.programme_office:
            raise _problem(403, "forbidden", "notifications are visible to the programme office only")
        return principal

    @router.post("/alertmanager", status_code=200, summary="Alertmanager webhook receiver (payload version 4)")
    async def alertmanager(request: Request) -> dict:
        token = settings.notifier_alertmanager_token
        if token is not None:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token.get_secret_value()}".encode()):
                raise _problem(401, "unauthorized", "a valid bearer token is required")
        try:
            payload = AlertmanagerPayload.model_validate_json(await request.body())
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:10])
            raise _problem(400, "invalid_alertmanager_payload", detail) from None
        # Answer 2xx only after the notifications are stored: Alertmanager retries us on 5xx.
        stored = await service.on_alertmanager(payload)
        return {"status": "stored", "alerts": len(payload.alerts), "notifications_created": stored}

    @router.get("/notifications", summary="Notifications, newest first")
    async def list_notifications(
        state: State | None = None, channel: Channel | None = None,
        milestone: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        before: datetime | None = None,
        _: Principal = Depends(programme_office),
    ) -> dict:
        docs = await service.repo.list(state=state.value if state else None, channel=channel.value if channel else None,
                                       milestone=milestone, limit=limit, before=before)
        return {"items": [public_view(d) for d in docs], "count": len(docs)}

    @router.post("/notifications/{notification_id}/retry", summary="Retry a failed notification now")
    async def retry(notification_id: str, _: Principal = Depends(programme_office)) -> dict:
        doc = await service.repo.retry_now(notification_id, service.clock())
        if doc is None:
            existing = await service.repo.get(notification_id)
            if existing is None:
                raise _problem(404, "not_found", "no such notification")
            raise _problem(409, "conflict", f"notification is {existing['state']}; only failed or waiting ones are retried")
        service.wake.set()
        return public_view(doc)

    @router.post("/test-notification", summary="Send a test notification through one route, end to end")
    async def test_notification(body: TestNotificationRequest, _: Principal = Depends(programme_office)) -> dict:
        try:
            docs = await service.test_notification(body.route, body.alert_type)
        except LookupError:
            raise _problem(404, "unknown_route", f"no route named {body.route!r}") from None
        ids = [d["_id"] for d in docs]
        deadline = time.monotonic() + body.wait_seconds
        current = docs
        while ids and time.monotonic() < deadline:
            current = [await service.repo.get(i) or d for i, d in zip(ids, docs)]
            if all(d["state"] in (State.sent.value, State.failed.value) for d in current):
                break
            await asyncio.sleep(0.1)
        return {"route": body.route, "items": [public_view(d) for d in current]}

    app.include_router(router)
