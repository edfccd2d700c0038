"""Channel payloads and outcome mapping, against httpx.MockTransport (no network)."""

from __future__ import annotations

import json
import uuid
from email import message_from_bytes, policy

import httpx
import pytest
import yaml

from services.contracts.webhooks import WebhookVerificationError, generate_secret, verify
from services.notifier.channels import (
    Delivery,
    EmailChannel,
    LineChannel,
    SlackChannel,
    TeamsChannel,
    WebhookChannel,
    check_webhook_signing,
    make_msgid_from_key,
)
from services.notifier.contacts import Contact
from services.notifier.domain import Outcome, RoutingError, parse_routing, retry_key_uuid
from services.notifier.main import load_routing
from services.notifier.settings import NotifierSettings
from services.notifier.templates import Renderer

ALERT_DOC = {
    "_id": "abc", "key": "missed:M-1:2026-09-30|pmo|webhook", "kind": "alert", "alert_type": "missed",
    "days_late_now": 3, "agency": "dga", "alert": {
        "milestone_id": "M-1", "title_th": "ระบบสารบรรณอิเล็กทรอนิกส์", "title_en": "e-Saraban", "workstream": "technology_access",
        "owner_agency": "dga", "due_date": "2026-09-30", "percent_complete": 62.5, "days_late": 3,
        "detected_at": "2026-10-03T02:00:00+00:00"}}


SECRET, NEW_SECRET, OWN_SECRET = generate_secret(), generate_secret(), generate_secret()


def settings(**kw) -> NotifierSettings:
    base = dict(notifier_webhook_secret=SECRET, notifier_line_channel_access_token="line-token",
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


class Clock:
    def __init__(self, t: float = 1_790_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


async def send_webhook(cfg: NotifierSettings, address: str = "hook", *, unsigned=frozenset(), clock=None,
                       times: int = 1) -> list[httpx.Request]:
    seen: list[httpx.Request] = []
    async with client_answering(200, seen) as client:
        channel = WebhookChannel(client, cfg, unsigned=unsigned, clock=clock or Clock())
        for _ in range(times):
            assert (await channel.send(delivery(address))).outcome is Outcome.sent
    return seen


async def test_webhook_is_signed_per_standard_webhooks_and_carries_the_idempotency_key():
    clock = Clock()
    [req] = await send_webhook(settings(), clock=clock)
    assert str(req.url) == "https://hooks.example/abc"
    assert req.headers["idempotency-key"] == ALERT_DOC["key"]
    assert req.headers["webhook-id"] == "msg_abc" and req.headers["webhook-timestamp"] == "1790000000"
    assert req.headers["webhook-signature"].startswith("v1,") and " " not in req.headers["webhook-signature"]
    verify(req.content, req.headers, [SECRET], now=clock.t)
    assert "x-newnormal-signature" not in req.headers  # the old body-only signature is gone
    body = json.loads(req.content)
    assert body["milestone"]["milestone_id"] == "M-1" and body["id"] == "abc"


async def test_retries_keep_the_id_and_sign_a_fresh_timestamp():
    clock = Clock()
    seen: list[httpx.Request] = []
    async with client_answering(200, seen) as client:
        channel = WebhookChannel(client, settings(), clock=clock)
        await channel.send(delivery("hook"))
        clock.t += 600  # the retry goes out ten minutes later
        await channel.send(delivery("hook"))
    first, retry = seen
    assert first.headers["webhook-id"] == retry.headers["webhook-id"]
    assert int(retry.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) == 600
    verify(retry.content, retry.headers, [SECRET], now=clock.t)
    with pytest.raises(WebhookVerificationError) as info:  # the first attempt replayed now is stale
        verify(first.content, first.headers, [SECRET], now=clock.t)
    assert info.value.reason == "timestamp_too_old"


async def test_rotation_signs_with_every_configured_secret():
    [req] = await send_webhook(settings(notifier_webhook_secret=f"{NEW_SECRET} {SECRET}"))
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    for known in ([SECRET], [NEW_SECRET]):
        verify(req.content, req.headers, known, now=Clock().t)


async def test_a_webhook_with_its_own_secret_is_signed_with_that_one_only():
    [req] = await send_webhook(settings(notifier_webhook_secrets={"hook": OWN_SECRET}))
    verify(req.content, req.headers, [OWN_SECRET], now=Clock().t)
    with pytest.raises(WebhookVerificationError):
        verify(req.content, req.headers, [SECRET], now=Clock().t)


async def test_unsigned_only_for_an_explicitly_opted_out_address():
    [req] = await send_webhook(settings(notifier_webhook_secret=None), unsigned={"hook"})
    assert "webhook-signature" not in req.headers
    assert req.headers["webhook-id"] == "msg_abc" and req.headers["webhook-timestamp"] == "1790000000"
    seen: list[httpx.Request] = []
    async with client_answering(200, seen) as client:  # no secret and no opt-out: refused, nothing sent
        result = await WebhookChannel(client, settings(notifier_webhook_secret=None)).send(delivery("hook"))
    assert result.outcome is Outcome.failed and "signing secret" in result.detail and not seen


ROUTES = """
recipients:
  signed: {webhook: hook}
  legacy: {webhook: "https://legacy.example/hook", webhook_signing: none}
routes:
  - {name: all, recipients: [signed, legacy], channels: [webhook]}
"""


def test_routes_opt_out_per_recipient_and_the_check_accepts_a_complete_configuration():
    table = parse_routing(yaml.safe_load(ROUTES))
    assert table.unsigned_webhooks == frozenset({"https://legacy.example/hook"})
    check_webhook_signing(table, settings())
    check_webhook_signing(table, settings(notifier_webhook_secret=None, notifier_webhook_secrets={"hook": OWN_SECRET}))


def test_a_webhook_without_secret_or_opt_out_is_rejected_when_the_routes_file_is_loaded(tmp_path):
    path = tmp_path / "routes.yaml"
    path.write_text(ROUTES, encoding="utf-8")
    for unset in (None, "", " "):  # an empty variable is no secret
        with pytest.raises(RoutingError, match=r"signed \(hook\).*no signing secret.*webhook_signing: none"):
            load_routing(path, settings(notifier_webhook_secret=unset))
    assert load_routing(path, settings()).unsigned_webhooks == {"https://legacy.example/hook"}


@pytest.mark.parametrize("where, cfg", [
    ("NEWNORMAL_NOTIFIER_WEBHOOK_SECRET", {"notifier_webhook_secret": "sekret-passphrase"}),
    ("NEWNORMAL_NOTIFIER_WEBHOOK_SECRET", {"notifier_webhook_secret": f"{SECRET} whsec_short"}),
    ("NEWNORMAL_NOTIFIER_WEBHOOK_SECRETS['hook']", {"notifier_webhook_secrets": {"hook": "sekret-passphrase"}}),
])
def test_malformed_secrets_are_rejected_at_load_without_echoing_them(where, cfg):
    with pytest.raises(RoutingError) as info:
        check_webhook_signing(parse_routing(yaml.safe_load(ROUTES)), settings(**cfg))
    assert str(info.value).startswith(where) and "sekret" not in str(info.value) and "short" not in str(info.value)


@pytest.mark.parametrize("doc, message", [
    ("recipients: {a: {webhook: h, webhook_signing: off}}\nroutes: []", "webhook_signing must be"),
    ("recipients: {a: {webhook: h}, b: {webhook: h, webhook_signing: none}}\nroutes: []", "both signed"),
])
def test_routes_signing_mistakes_are_reported(doc, message):
    with pytest.raises(RoutingError, match=message):
        parse_routing(yaml.safe_load(doc))


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
    # The agency's words go in TextRuns, which Teams shows as typed (a TextBlock reads Markdown: links, emphasis).
    assert all(b["type"] != "TextBlock" for b in card["content"]["body"])
    runs = [i["text"] for b in card["content"]["body"] if b["type"] == "RichTextBlock" for i in b["inlines"]]
    assert runs[0].startswith("⚠️ ภารกิจเลยกำหนด") and "ระบบสารบรรณอิเล็กทรอนิกส์" in runs[0]


async def test_agency_text_never_becomes_slack_control_sequences():
    # A milestone title is the agency's text: in mrkdwn, `<!channel>` pings everyone and `<url|label>` hides a link.
    crafted = {**ALERT_DOC, "alert": {**ALERT_DOC["alert"], "title_th": "<!channel> ด่วน <https://evil.test|ยืนยัน> & <@U1>",
                                      "title_en": "<!here>"}}
    message = Renderer("https://dash.example").render(crafted)
    seen: list[httpx.Request] = []
    async with client_answering(200, seen) as client:
        await SlackChannel(client, settings()).send(Delivery("abc", crafted["key"], "https://hooks.slack.test/x", message,
                                                             {"kind": "alert"}))
    body = json.loads(seen[0].content)
    mrkdwn = [body["text"], *(b["text"]["text"] for b in body["blocks"] if b["type"] == "section" and "text" in b),
              *(f["text"] for b in body["blocks"] for f in b.get("fields", []))]
    assert any("&lt;!channel&gt;" in t for t in mrkdwn), mrkdwn
    for text in mrkdwn:
        assert "<!" not in text and "<http" not in text and "<@" not in text, text
        assert "& " not in text  # a bare & is escaped too (Slack's rule: &, < and >)
    assert body["blocks"][0]["text"]["type"] == "plain_text" and "<!channel>" in body["blocks"][0]["text"]["text"]


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


@pytest.mark.parametrize(("reason", "thai", "english"), [
    ("deadline_passed", "เหตุผล: เลยกำหนดแล้ว", "Reason: deadline passed"),
    ("projected_finish_after_due,dependency_at_risk_or_missed",
     "เหตุผล: คาดว่าจะเสร็จหลังกำหนด; หมุดหมายที่ต้องเสร็จก่อนเสี่ยงหรือพลาดกำหนด",
     "Reason: projected to finish after the due date; a milestone it depends on is at risk or missed"),
    ("งบประมาณล่าช้า, รอครุภัณฑ์", "เหตุผล: งบประมาณล่าช้า, รอครุภัณฑ์", "Reason: งบประมาณล่าช้า, รอครุภัณฑ์"),  # the agency's
])
def test_a_reason_reads_as_words_in_each_language_never_as_a_code(reason, thai, english):
    message = Renderer("https://dash.example").render({**ALERT_DOC, "alert": {**ALERT_DOC["alert"], "reason": reason}})
    assert thai in message.text and english in message.text
    assert message.text.index(thai) < message.text.index(english)  # Thai first
    assert "_" not in thai + english and thai.split(": ")[1] in message.html and english.split(": ")[1] in message.html


def test_operational_message():
    doc = {"kind": "operational", "alert_type": "operational", "agency": "dga", "operational": {
        "alertname": "NewnormalServiceDown", "status": "firing", "severity": "critical", "labels": {"job": "roadmap"},
        "summary": "roadmap is down", "startsAt": "2026-11-25T03:00:00.123456789Z"}}
    message = Renderer("https://dash.example").render(doc)
    assert message.subject.startswith("🔥 การแจ้งเตือนระบบ: NewnormalServiceDown")
    assert "เริ่มเมื่อ 25 พ.ย. 2569 10:00 น." in message.text and "job=roadmap" in message.text


@pytest.mark.parametrize("url", ["javascript:alert(document.domain)", "JavaScript:alert(1)", "data:text/html,<b>x",
                                 "vbscript:x", "//evil.example/x", "http://", "https://a b.example/", "http:evil",
                                 "https://x.example/\r\nBcc: y", 12])
def test_an_alert_link_that_is_no_web_address_is_never_made_a_link(url):
    doc = {"kind": "operational", "alert_type": "operational", "operational": {
        "alertname": "X", "status": "firing", "generatorURL": url, "externalURL": "javascript:void(0)"}}
    message = Renderer("https://dash.example").render(doc)
    assert message.link == "https://dash.example"
    assert "javascript:" not in message.html.lower() and "data:text" not in message.html


def test_an_alert_link_that_is_a_web_address_is_kept():
    doc = {"kind": "operational", "alert_type": "operational", "operational": {
        "alertname": "X", "status": "firing", "generatorURL": "javascript:x",
        "externalURL": "http://alertmanager.example:9093/#/alerts?x=1"}}
    message = Renderer("https://dash.example").render(doc)
    assert message.link == "http://alertmanager.example:9093/#/alerts?x=1"
    assert 'href="http://alertmanager.example:9093/#/alerts?x=1"' in message.html


def test_a_line_break_in_a_milestone_title_still_makes_a_sendable_email():
    # The title is the agency's text and the contract lets it hold line breaks; as a Subject they made the header
    # unwritable, so the delivery raised on every attempt and the owner was never told.
    crafted = {**ALERT_DOC, "alert": {**ALERT_DOC["alert"], "title_th": "ระบบ\r\nBcc: evil@x.test\r\n\r\nตัวจดหมาย",
                                      "title_en": "a\u2028b"}}
    message = Renderer("https://dash.example").render(crafted)
    msg = EmailChannel(settings()).build(Delivery("abc", crafted["key"], "pmo@opdc.go.th", message, {"kind": "alert"}))
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert parsed["Bcc"] is None and parsed["To"] == "pmo@opdc.go.th"
    assert "ระบบ Bcc: evil@x.test ตัวจดหมาย" in parsed["Subject"] and "\n" not in parsed["Subject"]


async def test_email_goes_to_the_address_itself_never_to_what_its_to_header_parses_to(monkeypatch):
    sent: list[dict] = []

    async def fake_send(message, **kwargs):
        sent.append(kwargs)
        return {}, "250 OK"

    monkeypatch.setattr("services.notifier.channels.aiosmtplib.send", fake_send)
    result = await EmailChannel(settings()).send(delivery("pmo@opdc.go.th"))
    assert result.outcome is Outcome.sent and sent[0]["recipients"] == ["pmo@opdc.go.th"]


@pytest.mark.parametrize("address", ["owner@dga.go.th", "somchai.probe+x@example.co.th", "ผู้ใช้@ตัวอย่าง.ไทย",
                                     "x_y-z@sub.dga.go.th"])
def test_a_contact_address_is_an_address(address):
    assert Contact(name="n", email=address).email == address


@pytest.mark.parametrize("address", [
    "javascript:alert(1)@example.com",  # a group "javascript:" holding alert@example.com
    "finance:someone@elsewhere.org", "a(comment)@x.com", "a[b]@x.com", "a\\b@x.com", '"a"@b.co', "a;b@x.com",
    "x@{{7*7}}.com", "x@%0d%0abcc.com", "x@b_c.com", "a@b", "a@@b.com", "a b@x.com",
])
def test_a_contact_address_that_a_mail_header_would_read_otherwise_is_refused(address):
    with pytest.raises(ValueError):
        Contact(name="n", email=address)
