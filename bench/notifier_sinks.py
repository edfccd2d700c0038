"""Real local receivers for the notifier's channels, shared by its integration tests and benchmark.

- `HttpSink`: one HTTP server (uvicorn, in the caller's event loop) with a generic webhook, a Slack
  incoming webhook, a Teams workflow webhook and the LINE push endpoint, each checking the payload
  shape that service documents. Scriptable: a queue of status codes per path, and a gate that holds
  requests open (to kill the notifier mid-delivery).
- `SmtpSink`: aiosmtpd on a free port, parsing every message it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import uvicorn
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from services.common.processes import free_port
from services.contracts.webhooks import WebhookVerificationError, verify


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    at: float
    status: int = 0
    problems: list[str] = field(default_factory=list)


def check_slack(body: Any) -> list[str]:
    problems = []
    if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
        problems.append("slack: `text` missing")
    blocks = body.get("blocks") if isinstance(body, dict) else None
    if not isinstance(blocks, list) or not blocks or not all(isinstance(b, dict) and "type" in b for b in blocks):
        problems.append("slack: `blocks` must be a list of typed blocks")
    else:
        for b in blocks:
            if b["type"] == "section" and "text" in b and len(b["text"].get("text", "")) > 3000:
                problems.append("slack: section text over 3000 chars")
            if b["type"] == "header" and len(b["text"].get("text", "")) > 150:
                problems.append("slack: header over 150 chars")
    return problems


def check_teams(body: Any) -> list[str]:
    try:
        assert body["type"] == "message"
        att = body["attachments"]
        assert isinstance(att, list) and len(att) == 1
        assert att[0]["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = att[0]["content"]
        assert card["type"] == "AdaptiveCard" and card["version"] in ("1.2", "1.3", "1.4", "1.5")
        assert isinstance(card["body"], list) and card["body"]
        assert all("type" in el for el in card["body"])
    except (AssertionError, KeyError, TypeError, IndexError):
        return ["teams: not a workflow message with one Adaptive Card attachment"]
    return []


def _line_message_ok(m: dict[str, Any]) -> bool:
    """LINE Messaging API limits: text <= 5000 chars; a buttons template: altText <= 400, text <= 160 (no
    title or image), 1-4 actions, a URI action's label <= 20 chars and uri <= 1000 (http, https, line, tel)."""
    if m["type"] == "text":
        return 0 < len(m["text"]) <= 5000
    t = m["template"]
    return (m["type"] == "template" and 0 < len(m["altText"]) <= 400 and t["type"] == "buttons"
            and 0 < len(t["text"]) <= 160 and 1 <= len(t["actions"]) <= 4
            and all(a["type"] == "uri" and 0 < len(a["label"]) <= 20 and len(a["uri"]) <= 1000
                    and a["uri"].split(":", 1)[0] in ("http", "https", "line", "tel") for a in t["actions"]))


def check_line(headers: dict[str, str], body: Any, token: str) -> list[str]:
    problems = []
    if headers.get("authorization") != f"Bearer {token}":
        problems.append("line: bad Authorization")
    retry_key = headers.get("x-line-retry-key")
    try:
        uuid.UUID(retry_key or "")
    except ValueError:
        problems.append("line: X-Line-Retry-Key is not a UUID")
    try:
        assert isinstance(body["to"], str) and body["to"]
        msgs = body["messages"]
        assert isinstance(msgs, list) and 1 <= len(msgs) <= 5
        assert all(_line_message_ok(m) for m in msgs)
    except (AssertionError, KeyError, TypeError):
        problems.append("line: body is not {to, messages: [text <= 5000 | buttons template with URI actions]}")
    return problems


def check_webhook_signature(raw: bytes, headers: dict[str, str], secrets: Sequence[str]) -> list[str]:
    try:
        verify(raw, headers, secrets)
    except WebhookVerificationError as exc:
        return [f"webhook signature: {exc.reason}"]
    return []


class HttpSink:
    PATHS = ("/webhook", "/slack", "/teams", "/v2/bot/message/push")

    def __init__(self, line_token: str = "line-test-token", record_bodies: bool = True,
                 webhook_secrets: Sequence[str] = ()):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.line_token = line_token
        self.record_bodies = record_bodies
        # When set, /webhook verifies Standard Webhooks signatures as a real receiver would (401 otherwise).
        self.webhook_secrets = tuple(webhook_secrets)
        self.received: list[Received] = []
        self.script: dict[str, list[int | tuple[int, dict[str, str]]]] = defaultdict(list)
        self.fail_addresses: dict[str, int] = {}   # LINE `to` -> status returned (permanent errors)
        self.gate: asyncio.Event | None = None     # when set to an unset Event, /webhook requests wait on it
        self.hold_after = 0                        # ... except the first `hold_after` ones
        self.held = 0
        self.accepted_line: dict[str, str] = {}    # retry key -> accepted request id (LINE dedupe)
        self.counts: dict[str, int] = defaultdict(int)
        self.first_at: dict[str, float] = {}       # idempotency/retry key -> first successful receipt time
        app = Starlette(routes=[Route(p, self.handle, methods=["POST"]) for p in self.PATHS]
                        + [Route("/stats", self.stats, methods=["GET"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="off", backlog=2048))
        self.task: asyncio.Task | None = None

    async def start(self) -> HttpSink:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.02)
        return self

    async def stop(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 10)

    def url(self, path: str) -> str:
        return self.base_url + path

    def of(self, path: str, ok_only: bool = False) -> list[Received]:
        return [r for r in self.received if r.path == path and (not ok_only or 200 <= r.status < 300)]

    async def stats(self, request: Request) -> Response:
        return JSONResponse({"counts": dict(self.counts), "ok": sum(1 for r in self.received if 200 <= r.status < 300)})

    async def handle(self, request: Request) -> Response:
        raw = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        path = request.url.path
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        rec = Received(path, headers, body if self.record_bodies else None, raw if self.record_bodies else b"",
                       time.perf_counter())
        if path == "/slack":
            rec.problems = check_slack(body)
        elif path == "/teams":
            rec.problems = check_teams(body)
        elif path == "/v2/bot/message/push":
            rec.problems = check_line(headers, body, self.line_token)
        elif not isinstance(body, dict):
            rec.problems = ["webhook: body is not a JSON object"]
        elif self.webhook_secrets:
            rec.problems = check_webhook_signature(raw, headers, self.webhook_secrets)
        self.received.append(rec)
        self.counts[path] += 1
        if rec.problems:
            rec.status = 401 if rec.problems[0].startswith("webhook signature") else 400
            return JSONResponse({"message": "; ".join(rec.problems)}, status_code=rec.status)
        if path == "/webhook" and self.gate is not None and not self.gate.is_set() and self.counts[path] > self.hold_after:
            self.held += 1
            try:
                await self.gate.wait()
            finally:
                self.held -= 1
        if self.script[path]:
            step = self.script[path].pop(0)
            status, extra = step if isinstance(step, tuple) else (step, {})
            rec.status = status
            return PlainTextResponse("scripted", status_code=status, headers=extra)
        if path == "/v2/bot/message/push":
            if body["to"] in self.fail_addresses:
                rec.status = self.fail_addresses[body["to"]]
                return JSONResponse({"message": "The property, 'to', in the request body is invalid"}, status_code=rec.status)
            key = headers["x-line-retry-key"]
            if key in self.accepted_line:  # LINE: a retry of an accepted request is refused with 409
                rec.status = 409
                return JSONResponse({"message": "The retry key is already accepted"}, status_code=409,
                                    headers={"x-line-request-id": uuid.uuid4().hex,
                                             "x-line-accepted-request-id": self.accepted_line[key]})
            self.accepted_line[key] = uuid.uuid4().hex
            self.first_at.setdefault(key, rec.at)
            rec.status = 200
            # LINE names every request it answers (x-line-request-id): the sender keeps it as the receipt.
            return JSONResponse({"sentMessages": [{"id": str(len(self.accepted_line)), "quoteToken": "q"}]},
                                headers={"x-line-request-id": self.accepted_line[key]})
        key = headers.get("idempotency-key")
        if key:
            self.first_at.setdefault(key, rec.at)
        rec.status = 202 if path == "/teams" else 200
        return PlainTextResponse("ok" if path == "/slack" else "", status_code=rec.status)


class _SmtpHandler:
    def __init__(self, sink: SmtpSink):
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.content, policy=policy.default)
        self.sink.messages.append((list(envelope.rcpt_tos), msg))
        self.sink.received_at.setdefault(msg["Message-ID"], time.perf_counter())
        return "250 Message accepted for delivery"


class SmtpSink:
    def __init__(self):
        self.port = free_port()
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.received_at: dict[str, float] = {}
        self.controller = Controller(_SmtpHandler(self), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for rcpts, m in self.messages if address in rcpts]


def main() -> None:
    """`python -m bench.notifier_sinks --port P`: the HTTP sink as its own process (benchmarks)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--line-token", default="bench-token")
    parser.add_argument("--webhook-secret", action="append", default=[], help="verify /webhook signatures")
    args = parser.parse_args()

    async def run() -> None:
        sink = HttpSink(args.line_token, record_bodies=False, webhook_secrets=args.webhook_secret)
        sink.port, sink.base_url = args.port, f"http://127.0.0.1:{args.port}"
        sink.server.config.port = args.port
        await sink.start()
        await sink.task

    asyncio.run(run())


if __name__ == "__main__":
    main()
