"""The acknowledge page: `GET /ack/{notification}/{token}` shows, `POST` (the page's form) acknowledges.

The token in the path is the credential (services/notifier/ack.py), so these pages need no API key. They
are for people, not in the OpenAPI document. Every answer forbids caching, indexing and sending the URL on
as a Referer: the link is personal.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment

from services.common.http_ingest import read_body
from services.contracts.agencies import get_registry
from services.contracts.thai_calendar import bangkok_today, format_thai_date, format_thai_datetime
from services.notifier import ack
from services.notifier.acknowledgements import Acknowledgements, AckView, NotAcknowledgeable

# Percent-encoding triples a UTF-8 byte and Thai takes three bytes a character: 1,000 Thai characters are
# about 9,000 bytes on the wire. The cap leaves room for that and the date, nothing more.
FORM_MAX_BYTES = 12 * 1024
FORM_MAX_FIELDS = 10  # the page sends two (note, forecast); parse_qs refuses more rather than building them

_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow",
            "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                       "frame-ancestors 'none'; base-uri 'none'"}

_PROBLEMS: dict[str, tuple[int, str, str, str, str]] = {
    # reason -> (status, Thai title, English title, Thai detail, English detail)
    ack.TokenProblem.malformed: (400, "ลิงก์ไม่สมบูรณ์", "Incomplete link",
                                 "ลิงก์นี้ถูกตัดหรือพิมพ์ไม่ครบ โปรดเปิดจากข้อความแจ้งเตือนอีกครั้ง",
                                 "The link was cut or mistyped: open it again from the notification."),
    ack.TokenProblem.forged: (403, "ลิงก์ไม่ถูกต้อง", "Invalid link",
                              "ลิงก์นี้ไม่ได้ออกโดยระบบแจ้งเตือน จึงใช้รับทราบไม่ได้",
                              "This link was not issued by the notifier and cannot acknowledge anything."),
    ack.TokenProblem.other_notification: (403, "ลิงก์นี้เป็นของการแจ้งเตือนอื่น", "Link of another notification",
                                          "ลิงก์รับทราบใช้ได้กับการแจ้งเตือนที่ส่งถึงท่านเท่านั้น",
                                          "An acknowledge link works only for the notification it came with."),
    ack.TokenProblem.expired: (410, "ลิงก์หมดอายุแล้ว", "Link expired",
                               "ลิงก์รับทราบนี้หมดอายุแล้ว โปรดใช้ลิงก์จากการแจ้งเตือนฉบับล่าสุด หรือติดต่อสำนักงาน ก.พ.ร.",
                               "This acknowledge link has expired: use the latest notification's link, or contact OPDC."),
    "not_found": (404, "ไม่พบการแจ้งเตือน", "Notification not found",
                  "ไม่พบการแจ้งเตือนนี้ หรือการแจ้งเตือนนี้ไม่ต้องรับทราบ",
                  "No such notification, or it is not one to acknowledge."),
}

_STATUS = {"missed": ("เลยกำหนด", "Missed"), "at_risk": ("มีความเสี่ยงจะล่าช้า", "At risk")}


def build_ack_router(acks: Acknowledgements, env: Environment) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    template = env.get_template("ack.html.j2")
    registry = get_registry()

    def page(status: int, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("page_title", "รับทราบการแจ้งเตือน · Acknowledge")
        ctx.setdefault("problem", None)
        html = template.render(**ctx)
        return HTMLResponse(html, status_code=status, headers=_HEADERS)

    def problem_page(reason: str) -> HTMLResponse:
        status, title_th, title_en, detail_th, detail_en = _PROBLEMS[reason]
        response = page(status, page_title=f"{title_th} · {title_en}",
                        problem={"title_th": title_th, "title_en": title_en, "detail_th": detail_th,
                                 "detail_en": detail_en, "reason": str(reason)})
        response.headers["X-Reason"] = str(reason)
        return response

    def view_page(view: AckView, request: Request, status: int = 200, form_error: ack.FormProblem | None = None,
                  note: str | None = None, forecast: str | None = None) -> HTMLResponse:
        doc, alert = view.doc, view.doc["alert"]
        agency = registry.get(alert.get("owner_agency"))
        due = date.fromisoformat(alert["due_date"])
        now = acks.clock()
        status_th, status_en = _STATUS.get(doc["alert_type"], ("แจ้งเตือน", "Alert"))
        return page(
            status, title_th=alert.get("title_th") or alert["milestone_id"],
            title_en=alert.get("title_en") or alert.get("title_th") or alert["milestone_id"],
            alert_type=doc["alert_type"], status_th=status_th, status_en=status_en, milestone_id=alert["milestone_id"],
            agency_th=agency.name_th if agency else alert.get("owner_agency"),
            agency_en=agency.name_en if agency else alert.get("owner_agency"),
            due_th=format_thai_date(due), due_en=due.strftime("%d %b %Y"),
            days_late=max(int(alert.get("days_late") or 0), (bangkok_today(now) - due).days, 0),
            percent=_percent(alert.get("percent_complete")), told=view.told,
            acknowledgements=[_ack_line(a) for a in view.acknowledgements], mine=view.mine,
            recipient_name=view.recipient_name, form_error=form_error, note=note, forecast=forecast,
            note_max=ack.NOTE_MAX_CHARS, today=bangkok_today(now).isoformat(),
            horizon=acks.settings.programme_horizon_end.isoformat(), action=str(request.url.path))

    @router.get("/ack/{notification_id}/{token}", response_class=HTMLResponse)
    async def show(notification_id: str, token: str, request: Request) -> Response:
        try:
            view = await acks.view(notification_id, token)
        except ack.TokenRefused as exc:
            return problem_page(exc.problem)
        except NotAcknowledgeable:
            return problem_page("not_found")
        return view_page(view, request)

    @router.post("/ack/{notification_id}/{token}", response_class=HTMLResponse)
    async def submit(notification_id: str, token: str, request: Request) -> Response:
        try:  # the link first: a forged or expired one costs no body read
            await acks.view(notification_id, token)
        except ack.TokenRefused as exc:
            return problem_page(exc.problem)
        except NotAcknowledgeable:
            return problem_page("not_found")
        body = await read_body(request, FORM_MAX_BYTES, timeout=acks.settings.http_body_timeout_seconds, what="the form")
        if isinstance(body, Response):
            return body
        note = forecast = None
        try:
            form = _form(body)
            note, forecast = _field(form, "note"), _field(form, "forecast")
            await acks.acknowledge(notification_id, token, note, forecast)
        except ack.TokenRefused as exc:  # expired between the two checks
            return problem_page(exc.problem)
        except NotAcknowledgeable:
            return problem_page("not_found")
        except ack.FormProblem as exc:
            view = await acks.view(notification_id, token)
            return view_page(view, request, 400, form_error=exc, note=note, forecast=forecast)
        # Post/Redirect/Get: a reload does not resubmit, and the page shows the recorded state.
        target = f"/ack/{quote(notification_id, safe='')}/{quote(token, safe='')}"
        return RedirectResponse(target, status_code=303, headers=_HEADERS)

    return router


def _form(body: bytes) -> dict[str, list[str]]:
    """The page's form (two fields); anything a browser would not send from it is refused as a form error."""
    try:
        text = body.decode("utf-8")
        return parse_qs(text, max_num_fields=FORM_MAX_FIELDS, strict_parsing=bool(text))
    except ValueError:  # not UTF-8, too many fields, or not `name=value&...`
        raise ack.FormProblem("form_invalid", "แบบฟอร์มไม่ถูกต้อง กรุณาส่งจากหน้านี้อีกครั้ง",
                              "the form is not the one this page sends; send it from the page again") from None


def _field(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _ack_line(a: dict[str, Any]) -> dict[str, Any]:
    at: datetime = a["acknowledged_at"]
    at = at if at.tzinfo else at.replace(tzinfo=UTC)  # MongoDB gives naive UTC back
    forecast = a.get("forecast_completion")
    return {"name": a.get("name") or a["recipient"], "at_th": format_thai_datetime(at),
            "forecast_th": format_thai_date(date.fromisoformat(forecast)) if forecast else None,
            "note": a.get("note")}


def _percent(value: Any) -> str:
    try:
        number = float(value or 0)
    except (TypeError, ValueError):
        return "0"
    return f"{number:.0f}" if number == int(number) else f"{number:.1f}"
