"""Channel payloads and outcome mapping, against httpx.MockTransport (no network)."""

from __future__ import annotations

import json
import uuid
from email import message_from_bytes, policy

import httpx
import pytest

from services.notifier.channels import (
    Delivery,
    EmailChannel,
    LineChannel,
    SlackChannel,
    TeamsChannel,
    WebhookChannel,
    make_msgid_from_key,
    verify_signature,
)
from services.notifier.domain import Outcome, retry_key_uuid
from services.notifier.settings import NotifierSettings
from services.notifier.templates import Renderer

ALERT_DOC = {
    "_id": "abc", "key": "missed:M-1:2026-09-30|pmo|webhook", "kind": "alert", "alert_type": "missed",
    "days_late_now": 3, "agency": "dga", "alert": {
        "milestone_id": "M-1", "title_th": "ระบบสารบรรณอิเล็กทรอนิกส์", "title_en": "e-Saraban", "workstream": "technology_access",
        "owner_agency": "dga", "due_date": "2026-09-30", "percent_complete": 62.5, "days_late": 3,
        "detected_at": "2026-10-03T02:00:00+00:00"}}


def settings(**kw) -> NotifierSettings:
    base = dict(notifier_webhook_secret="sekret", notifier_line_channel_access_token="line-token",
                notifier_webhook_urls={"hook": "https://hooks.example/abc"}, notifier_line_base_url="https://line.test")
    base.update(kw)
    return NotifierSettings(**base)


def delivery(address: str, text: str | None = None) -> Delivery:
    message = Renderer("https://dash.example").render(ALERT_DOC)
    if text is not None:
        message = type(message)(**{**message.__dict__, "text": text})
    return Delivery("abc", ALERT_DOC["key"], address, message, {"kind": "alert", "milestone": ALERT_DOC["alert"]})


def client_answering(status: int, seen: list[httpx.Request], headers: dict | None = None) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, headers=headers or {}, text="x")

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_webhook_is_signed_and_carries_the_idempotency_key():
    seen: list[httpx.Request] = []
    async with client_answering(200, seen) as client:
        result = await WebhookChannel(client, settings()).send(delivery("hook"))
    assert result.outcome is Outcome.sent
    req = seen[0]
    assert str(req.url) == "https://hooks.example/abc"
    assert req.headers["idempotency-key"] == ALERT_DOC["key"]
    assert verify_signature("sekret", req.content, req.headers["x-newnormal-signature"])
    body = json.loads(req.content)
    assert body["milestone"]["milestone_id"] == "M-1" and body["sent_at"] == req.headers["x-newnormal-timestamp"]


async def test_unknown_webhook_name_fails_without_a_request():
    seen: list[httpx.Request] = []
    async with client_answering(200, seen) as client:
        result = await WebhookChannel(client, settings()).send(delivery("not-configured"))
    assert result.outcome is Outcome.failed and not seen


@pytest.mark.parametrize("status, headers, outcome, retry_after", [
    (500, {}, Outcome.retry, None), (503, {"Retry-After": "7"}, Outcome.retry, 7.0),
    (429, {"Retry-After": "30"}, Outcome.retry, 30.0), (400, {}, Outcome.failed, None), (404, {}, Outcome.failed, None),
])
async def test_http_status_outcomes(status, headers, outcome, retry_after):
    async with client_answering(status, [], headers) as client:
        result = await SlackChannel(client, settings()).send(delivery("https://hooks.slack.test/x"))
    assert (result.outcome, result.retry_after, result.status) == (outcome, retry_after, status)


async def test_timeouts_are_retried():
    def handler(request):
        raise httpx.ReadTimeout("slow", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await TeamsChannel(client, settings()).send(delivery("https://teams.test/x"))
    assert result.outcome is Outcome.retry


async def test_slack_and_teams_shapes():
    seen: list[httpx.Request] = []
    async with client_answering(200, seen) as client:
        await SlackChannel(client, settings()).send(delivery("https://hooks.slack.test/x"))
        await TeamsChannel(client, settings()).send(delivery("https://teams.test/x"))
    slack, teams = (json.loads(r.content) for r in seen)
    assert slack["text"].startswith("⚠️ ภารกิจเลยกำหนด") and slack["blocks"][0]["type"] == "header"
    assert len(slack["blocks"][0]["text"]["text"]) <= 150
    assert teams["type"] == "message"
    card = teams["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["type"] == "AdaptiveCard" and card["content"]["version"] == "1.4"
    facts = next(b for b in card["content"]["body"] if b["type"] == "FactSet")["facts"]
    assert {"title": "กำหนดเสร็จ / Due", "value": "30 ก.ย. 2569"} in facts


async def test_line_push_request_and_retry_key_conflict_counts_as_delivered():
    seen: list[httpx.Request] = []
    async with client_answering(200, seen) as client:
        result = await LineChannel(client, settings()).send(delivery("U123", text="ก" * 6000))
    req = seen[0]
    assert result.outcome is Outcome.sent
    assert str(req.url) == "https://line.test/v2/bot/message/push"
    assert req.headers["authorization"] == "Bearer line-token"
    assert req.headers["x-line-retry-key"] == retry_key_uuid(ALERT_DOC["key"]) and uuid.UUID(req.headers["x-line-retry-key"])
    body = json.loads(req.content)
    assert body["to"] == "U123" and len(body["messages"][0]["text"]) == 5000
    async with client_answering(409, [], {"x-line-accepted-request-id": "r1"}) as client:
        assert (await LineChannel(client, settings()).send(delivery("U123"))).outcome is Outcome.sent
    async with client_answering(409, [], {}) as client:  # a 409 that is not a retry-key conflict
        assert (await LineChannel(client, settings()).send(delivery("U123"))).outcome is Outcome.failed
    async with client_answering(200, []) as client:
        assert (await LineChannel(client, settings(notifier_line_channel_access_token=None)).send(
            delivery("U123"))).outcome is Outcome.failed


def test_email_is_multipart_thai_first_with_a_stable_message_id():
    msg = EmailChannel(settings()).build(delivery("pmo@opdc.go.th"))
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["Message-ID"] == make_msgid_from_key(ALERT_DOC["key"])
    text = parsed.get_body(("plain",)).get_content()
    assert text.splitlines()[0] == "⚠️ ภารกิจเลยกำหนด"
    assert "กำหนดเสร็จ 30 ก.ย. 2569 · ล่าช้า 3 วัน · ความคืบหน้า 62.5%" in text
    assert "หน่วยงาน: สำนักงานพัฒนารัฐบาลดิจิทัล" in text
    assert text.index("ล่าช้า") < text.index("Milestone missed") < text.index("3 days late")
    assert "https://dash.example/d/newnormal-roadmap?var-milestone=M-1" in text
    html = parsed.get_body(("html",)).get_content()
    assert "<td>30 ก.ย. 2569</td>" in html


def test_html_escapes_untrusted_text():
    doc = {**ALERT_DOC, "alert": {**ALERT_DOC["alert"], "title_th": "<script>x</script>"}}
    message = Renderer("https://dash.example").render(doc)
    assert "<script>" not in message.html and "&lt;script&gt;" in message.html


def test_operational_message():
    doc = {"kind": "operational", "alert_type": "operational", "agency": "dga", "operational": {
        "alertname": "NewnormalServiceDown", "status": "firing", "severity": "critical", "labels": {"job": "roadmap"},
        "summary": "roadmap is down", "startsAt": "2026-11-25T03:00:00.123456789Z"}}
    message = Renderer("https://dash.example").render(doc)
    assert message.subject.startswith("🔥 การแจ้งเตือนระบบ: NewnormalServiceDown")
    assert "เริ่มเมื่อ 25 พ.ย. 2569 10:00 น." in message.text and "job=roadmap" in message.text
