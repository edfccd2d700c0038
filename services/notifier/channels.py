"""Delivery channels: one small class per channel with `async send(delivery) -> DeliveryResult`.

Every request carries the notification's idempotency key (Idempotency-Key header, LINE
X-Line-Retry-Key, e-mail Message-ID) so receivers that deduplicate turn our at-least-once
delivery into exactly-once on their side.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Protocol

import aiosmtplib
import httpx

from services.common.clock import utc_now
from services.contracts import webhooks
from services.notifier.domain import (
    Channel,
    Outcome,
    RoutingError,
    RoutingTable,
    classify_status,
    parse_retry_after,
    retry_key_uuid,
)
from services.notifier.settings import NotifierSettings
from services.notifier.templates import Message

log = logging.getLogger(__name__)
LINE_TEXT_LIMIT = 5000
LINE_BUTTONS_TEXT_LIMIT = 160  # a buttons template without an image or title
SLACK_SECTION_LIMIT = 3000


@dataclass(frozen=True)
class Delivery:
    """What a channel needs: the message, where to send it, and identity for deduplication."""

    notification_id: str
    key: str
    address: str
    message: Message
    payload: dict[str, Any]  # structured facts for machine receivers (generic webhook)
    attachments: tuple[Any, ...] = ()  # files for e-mail (reports.Attachment); other channels carry the link


@dataclass(frozen=True)
class DeliveryResult:
    outcome: Outcome
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None
    receipt: str = ""  # the channel's own identifier of the attempt: SMTP reply (queue id), an HTTP request id


# Response headers that name a request at the receiver (LINE, Slack, Microsoft, AWS, common gateways).
REQUEST_ID_HEADERS = ("x-line-request-id", "x-slack-req-id", "request-id", "x-ms-request-id", "x-request-id",
                      "x-amzn-requestid", "x-correlation-id")


def receipt_of(response: httpx.Response) -> str:
    """`HTTP <status>` and the receiver's request id, if it sent one: what finds the attempt in its logs."""
    for name in REQUEST_ID_HEADERS:
        value = response.headers.get(name)
        if value:
            return f"HTTP {response.status_code}; {name}: {value[:120]}"
    return f"HTTP {response.status_code}"


class ChannelSender(Protocol):
    channel: Channel

    async def send(self, delivery: Delivery) -> DeliveryResult: ...


def _from_response(response: httpx.Response, *, now: datetime | None = None) -> DeliveryResult:
    outcome = classify_status(response.status_code)
    retry_after = parse_retry_after(response.headers.get("retry-after"), now or utc_now())
    detail = "" if outcome is Outcome.sent else response.text[:300]
    return DeliveryResult(outcome, response.status_code, detail, retry_after if outcome is Outcome.retry else None,
                          receipt_of(response))


class _HttpChannel:
    """A JSON POST to a webhook URL; subclasses only say how a delivery becomes a request body."""

    channel: Channel
    label: str  # how an unknown address is named in the failure detail

    def __init__(self, client: httpx.AsyncClient, settings: NotifierSettings):
        self.client = client
        self.settings = settings

    def resolve_url(self, address: str) -> str | None:
        """A recipient names a configured webhook (secret URL kept in settings) or gives an http(s) URL."""
        named = self.settings.notifier_webhook_urls.get(address)
        if named is not None:
            return named.get_secret_value()
        if address.startswith(("http://", "https://")):
            return address
        return None

    async def post(self, url: str, *, content: bytes, headers: dict[str, str]) -> DeliveryResult:
        try:
            response = await self.client.post(url, content=content, headers={"Content-Type": "application/json", **headers})
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            return DeliveryResult(Outcome.retry, None, f"{type(exc).__name__}")
        return _from_response(response)

    async def send(self, delivery: Delivery) -> DeliveryResult:
        url = self.resolve_url(delivery.address)
        if url is None:
            return DeliveryResult(Outcome.failed, None, f"unknown {self.label} {delivery.address!r}")
        raw, headers = self.encode(delivery)
        return await self.post(url, content=raw, headers={"Idempotency-Key": delivery.key, **headers})

    def encode(self, delivery: Delivery) -> tuple[bytes, dict[str, str]]:
        raise NotImplementedError


class WebhookChannel(_HttpChannel):
    """Generic JSON webhook, signed as the Standard Webhooks specification says (services.contracts.webhooks).

    `webhook-id` is derived from the notification id, so every retry of one notification carries the same id
    (receivers de-duplicate on it) while `webhook-timestamp` is the attempt's own time (receivers refuse replays
    older than their tolerance). Addresses listed in `unsigned` (routes file `webhook_signing: none`) go out
    without a signature; any other address without a secret is refused here too, not only at load.
    """

    channel = Channel.webhook
    label = "webhook"

    def __init__(self, client: httpx.AsyncClient, settings: NotifierSettings, *,
                 unsigned: Collection[str] = frozenset(), clock: Callable[[], float] = time.time):
        super().__init__(client, settings)
        self.unsigned = frozenset(unsigned)
        self.clock = clock

    async def send(self, delivery: Delivery) -> DeliveryResult:
        url = self.resolve_url(delivery.address)
        if url is None:
            return DeliveryResult(Outcome.failed, None, f"unknown {self.label} {delivery.address!r}")
        secrets = () if delivery.address in self.unsigned else webhook_secrets(self.settings, delivery.address)
        if delivery.address not in self.unsigned and not secrets:
            # Fail closed: the routes check at start-up makes this unreachable unless the two disagree.
            return DeliveryResult(Outcome.failed, None, "no webhook signing secret is configured for this address")
        raw, headers = self.encode(delivery)
        timestamp = int(self.clock())
        msg_id = webhook_id(delivery.notification_id)
        if secrets:
            headers.update(webhooks.sign_headers(secrets, msg_id, raw, timestamp=timestamp))
        else:
            headers.update({webhooks.HEADER_ID: msg_id, webhooks.HEADER_TIMESTAMP: str(timestamp)})
        return await self.post(url, content=raw, headers={"Idempotency-Key": delivery.key, **headers})

    def encode(self, delivery: Delivery) -> tuple[bytes, dict[str, str]]:
        body = {"id": delivery.notification_id, "idempotency_key": delivery.key,
                "subject": delivery.message.subject, "text": delivery.message.text, "link": delivery.message.link,
                "severity": delivery.message.severity, **delivery.payload}
        if delivery.message.ack_url:
            body["acknowledge_url"] = delivery.message.ack_url
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode()
        return raw, {"User-Agent": "newnormal-notifier/1"}


def webhook_id(notification_id: str) -> str:
    """`msg_<notification id>`: stable across retries and instances (the id derives from the idempotency key)."""
    return f"msg_{notification_id}"


def webhook_secrets(settings: NotifierSettings, address: str) -> tuple[str, ...]:
    """The address's own secrets (NOTIFIER_WEBHOOK_SECRETS[address]), else the shared NOTIFIER_WEBHOOK_SECRET."""
    own = settings.notifier_webhook_secrets.get(address)
    value = own if own is not None else settings.notifier_webhook_secret
    return webhooks.split_secrets(value.get_secret_value()) if value is not None else ()


def check_webhook_signing(routing: RoutingTable, settings: NotifierSettings) -> None:
    """Refuse a configuration that would send a webhook unsigned by accident, or with a malformed secret.

    Called when the routes file is loaded (start-up and `newnormal notifier check-routes`). Messages name the
    setting and the webhook, never a secret value."""
    configured = [("NEWNORMAL_NOTIFIER_WEBHOOK_SECRET", settings.notifier_webhook_secret)]
    configured += [(f"NEWNORMAL_NOTIFIER_WEBHOOK_SECRETS[{name!r}]", value)
                   for name, value in settings.notifier_webhook_secrets.items()]
    for where, value in configured:
        if value is None:
            continue
        for part in webhooks.split_secrets(value.get_secret_value()):  # empty = unset: caught as missing below
            try:
                webhooks.parse_secret(part)
            except webhooks.WebhookSecretError as exc:
                raise RoutingError(f"{where}: {exc}") from None
    missing = sorted({f"{recipient} ({address})" for recipient, channels in routing.recipients.items()
                      for address in channels.get(Channel.webhook, ())
                      if address not in routing.unsigned_webhooks and not webhook_secrets(settings, address)})
    if missing:
        raise RoutingError(
            f"webhook recipient(s) {', '.join(missing)} have no signing secret: set NEWNORMAL_NOTIFIER_WEBHOOK_SECRETS "
            "(per webhook) or NEWNORMAL_NOTIFIER_WEBHOOK_SECRET, or opt out explicitly with `webhook_signing: none` "
            "on the recipient in the routes file")


class SlackChannel(_HttpChannel):
    """Slack-compatible incoming webhook: `text` (fallback/notifications) plus Block Kit `blocks`."""

    channel = Channel.slack
    label = "slack webhook"

    def encode(self, delivery: Delivery) -> tuple[bytes, dict[str, str]]:
        m = delivery.message
        fields = [{"type": "mrkdwn", "text": f"*{slack_escape(label)}*\n{slack_escape(value)}"}
                  for label, value in m.facts[:10]]
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": m.title[:150], "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": slack_escape(m.text)[:SLACK_SECTION_LIMIT]}},
        ]
        if fields:
            blocks.append({"type": "section", "fields": fields})
        buttons: list[dict[str, Any]] = []
        if m.ack_url:
            buttons.append({"type": "button", "style": "primary", "url": m.ack_url,
                            "text": {"type": "plain_text", "text": "รับทราบ · Acknowledge"}})
        buttons.append({"type": "button", "text": {"type": "plain_text", "text": "แดชบอร์ด · Dashboard"}, "url": m.link})
        blocks.append({"type": "actions", "elements": buttons})
        body = {"text": slack_escape(m.title), "blocks": blocks}
        return json.dumps(body, ensure_ascii=False).encode(), {}


def slack_escape(text: str) -> str:
    """Agency text (a milestone's title, a reason) as Slack mrkdwn shows it, never as its control sequences:
    `<!channel>` would ping a whole channel, `<https://x|ยืนยัน>` disguise a link, `<@U123>` mention someone.
    Slack's rule: escape exactly &, < and > (plain URLs are still linked)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class TeamsChannel(_HttpChannel):
    """Microsoft Teams workflow ("Post to a channel when a webhook request is received"): an Adaptive Card."""

    channel = Channel.teams
    label = "teams webhook"

    def encode(self, delivery: Delivery) -> tuple[bytes, dict[str, str]]:
        m = delivery.message
        card = {
            "type": "AdaptiveCard", "version": "1.4",
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            # Title and text hold the agency's words (a milestone's title): TextRuns show them as typed, where a
            # TextBlock would read them as Markdown (`[ยืนยัน](https://evil.test)` a disguised link).
            "body": [
                {"type": "RichTextBlock", "inlines": [
                    {"type": "TextRun", "text": m.title, "weight": "Bolder", "size": "Medium",
                     "color": "Attention" if m.severity == "critical" else "Default"}]},
                {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in m.facts]},
                {"type": "RichTextBlock", "inlines": [{"type": "TextRun", "text": m.text, "isSubtle": True}]},
            ],
            "actions": ([{"type": "Action.OpenUrl", "title": "รับทราบ · Acknowledge", "url": m.ack_url,
                          "style": "positive"}] if m.ack_url else [])
                       + [{"type": "Action.OpenUrl", "title": "แดชบอร์ด · Dashboard", "url": m.link}],
        }
        body = {"type": "message", "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}
        return json.dumps(body, ensure_ascii=False).encode(), {}


class LineChannel(_HttpChannel):
    """LINE Messaging API push message (`POST /v2/bot/message/push`) to a userId or groupId.

    X-Line-Retry-Key makes LINE deduplicate: a retry of an accepted request gets 409, which
    means "already delivered", so it counts as sent.
    """

    channel = Channel.line
    label = "LINE recipient"

    async def send(self, delivery: Delivery) -> DeliveryResult:
        token = self.settings.notifier_line_channel_access_token
        if token is None:
            return DeliveryResult(Outcome.failed, None, "LINE channel access token is not configured")
        text = delivery.message.text
        if len(text) > LINE_TEXT_LIMIT:
            text = text[:LINE_TEXT_LIMIT - 1] + "…"
        messages: list[dict[str, Any]] = [{"type": "text", "text": text}]
        if delivery.message.ack_url:
            # A buttons template with a URI action: one tap opens the acknowledge page (labels: 20 chars at most).
            messages.append({"type": "template", "altText": "รับทราบการแจ้งเตือน · Acknowledge", "template": {
                "type": "buttons", "text": delivery.message.title[:LINE_BUTTONS_TEXT_LIMIT],
                "actions": [{"type": "uri", "label": "รับทราบ Acknowledge", "uri": delivery.message.ack_url}]}})
        body = {"to": delivery.address, "messages": messages}
        url = self.settings.notifier_line_base_url.rstrip("/") + "/v2/bot/message/push"
        try:
            response = await self.client.post(url, content=json.dumps(body, ensure_ascii=False).encode(), headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {token.get_secret_value()}",
                "X-Line-Retry-Key": retry_key_uuid(delivery.key)})
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            return DeliveryResult(Outcome.retry, None, type(exc).__name__)
        if response.status_code == 409 and response.headers.get("x-line-accepted-request-id"):
            accepted = response.headers["x-line-accepted-request-id"][:120]
            return DeliveryResult(Outcome.sent, 409, "already accepted (retry key)",
                                  receipt=f"HTTP 409; x-line-accepted-request-id: {accepted}")
        return _from_response(response)


class EmailChannel:
    """SMTP with optional STARTTLS/implicit TLS and auth; multipart/alternative (plain text + HTML)."""

    channel = Channel.email

    def __init__(self, settings: NotifierSettings):
        self.settings = settings

    def build(self, delivery: Delivery) -> EmailMessage:
        m = delivery.message
        msg = EmailMessage()
        msg["Subject"] = m.subject
        msg["From"] = self.settings.notifier_email_from
        msg["To"] = delivery.address
        msg["Date"] = format_datetime(utc_now())
        # Same key -> same Message-ID: mail systems and clients can drop a repeated delivery.
        msg["Message-ID"] = make_msgid_from_key(delivery.key)
        msg["X-NewNormal-Idempotency-Key"] = delivery.key
        msg["Content-Language"] = "th, en"
        msg.set_content(m.text, charset="utf-8")
        msg.add_alternative(m.html, subtype="html", charset="utf-8")
        for a in delivery.attachments:
            msg.add_attachment(a.content, maintype=a.maintype, subtype=a.subtype, filename=a.filename)
        return msg

    async def send(self, delivery: Delivery) -> DeliveryResult:
        s = self.settings
        if "@" not in delivery.address:
            return DeliveryResult(Outcome.failed, None, "invalid e-mail address")
        password = s.notifier_smtp_password.get_secret_value() if s.notifier_smtp_password else None
        try:
            _, reply = await aiosmtplib.send(  # the envelope names the address itself, never what To: parses to
                self.build(delivery), recipients=[delivery.address], hostname=s.notifier_smtp_host, port=s.notifier_smtp_port,
                start_tls=s.notifier_smtp_starttls, use_tls=s.notifier_smtp_tls, username=s.notifier_smtp_username,
                password=password, timeout=s.notifier_smtp_timeout_seconds)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            permanent = all(500 <= c < 600 for c in codes)
            return DeliveryResult(Outcome.failed if permanent else Outcome.retry, codes[0] if codes else None,
                                  "recipient refused")
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600  # 4xx SMTP replies are transient by definition
            return DeliveryResult(Outcome.failed if permanent else Outcome.retry, exc.code, exc.message[:200],
                                  receipt=f"SMTP {exc.code}")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return DeliveryResult(Outcome.retry, None, type(exc).__name__)
        # The server's answer to DATA names its queue id: the receipt that finds the message in the mail logs.
        return DeliveryResult(Outcome.sent, 250, receipt=f"SMTP 250 {str(reply)[:200]}")


def make_msgid_from_key(key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:40]
    return f"<{digest}@notifier.newnormal>"


def build_channels(settings: NotifierSettings, client: httpx.AsyncClient,
                   unsigned_webhooks: Collection[str] = frozenset()) -> dict[Channel, ChannelSender]:
    return {Channel.email: EmailChannel(settings),
            Channel.webhook: WebhookChannel(client, settings, unsigned=unsigned_webhooks),
            Channel.slack: SlackChannel(client, settings), Channel.teams: TeamsChannel(client, settings),
            Channel.line: LineChannel(client, settings)}


__all__ = ["Delivery", "DeliveryResult", "EmailChannel", "LineChannel", "SlackChannel", "TeamsChannel", "WebhookChannel",
           "build_channels", "check_webhook_signing", "make_msgid", "webhook_id", "webhook_secrets"]
