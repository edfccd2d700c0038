"""Schemathesis against every service's own OpenAPI document, from outside, over the real broker and database.

Each service runs on a real socket (uvicorn in this test's event loop); schemathesis reads `/openapi.json` and
sends what it generates (examples, coverage of boundaries, random fuzzing) with ALL its checks, once with a
programme-office key and once with an agency key: no 5xx, no status or media type the document does not
list, answers that match their schemas, schema-valid requests accepted and schema-violating ones refused.
Bounded in examples per operation so the four services fit a CI run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
import schemathesis.transport.requests as st_requests
import uvicorn
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema
from support import make_key, poll

from services.common import openapi
from services.common import processes as px

pytestmark = pytest.mark.integration

MAX_EXAMPLES = int(os.environ.get("NEWNORMAL_FUZZ_MAX_EXAMPLES", "15"))
ALERTMANAGER_TOKEN = "fuzz-alertmanager-credential-0123456789"
LEARNER_SECRET = "fuzz-learner-secret-0123456789abcdef"

# grafana-client pulls in niquests, whose urllib3-future replaces urllib3 in this environment; its pool
# container has no `keys()`, which schemathesis only uses to decide whether to resend a request on a dropped
# keep-alive connection. Counting no connections keeps that resend off; everything else is unchanged.
if not hasattr(getattr(__import__("urllib3").PoolManager(), "pools", {}), "keys"):
    st_requests._count_opened_connections = lambda session: 0


@dataclass
class Finding:
    operation: str
    check: str
    title: str
    message: str
    reproduce: str

    def __str__(self) -> str:
        return f"{self.operation} [{self.check}] {self.title}: {self.message[:400]}\n    {self.reproduce[:400]}"


def fuzz(base_url: str, key: str, max_examples: int = MAX_EXAMPLES) -> tuple[list[Finding], list[str], int]:
    """Run schemathesis' engine (what `st run --checks all` runs) and collect every failed check."""
    config = SchemathesisConfig.from_dict({
        "workers": 1,
        "continue-on-failure": True,
        "seed": 12,
        "cache": {"enabled": False},
        "generation": {"max-examples": max_examples, "no-shrink": True},
        "phases": {"stateful": {"enabled": False}},
        "auth": {"openapi": {openapi.API_KEY_SCHEME: {"api_key": key},
                             openapi.ALERTMANAGER_SCHEME: {"bearer": ALERTMANAGER_TOKEN}}},
        "request-timeout": 30,
    })
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    findings: list[Finding] = []
    errors: list[str] = []
    cases = 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases += len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    info = check.failure_info
                    if info is not None:
                        findings.append(Finding(event.recorder.label, check.name, info.failure.title,
                                                " ".join(info.failure.message.split()), info.code_sample))
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.value!r}"[:500])
        elif isinstance(event, events.FatalError):
            errors.append(f"fatal: {event.exception!r}"[:500])
    return findings, errors, cases


@contextlib.asynccontextmanager
async def serve(app) -> AsyncIterator[str]:
    port = px.free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on",
                                           access_log=False))
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        if task.done():
            task.result()  # a start-up failure surfaces here
        return server.started

    await poll(started, 90, what="service started")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 60)


def build(service: str, settings_for) -> Any:
    if service == "roadmap":
        from services.roadmap.main import create_app
        from services.roadmap.settings import RoadmapSettings as Settings
        return create_app(settings_for(Settings, watcher_enabled=False)), settings_for(Settings)
    if service == "training":
        from services.training.main import create_app
        from services.training.settings import TrainingSettings as Settings
        settings = settings_for(Settings, learner_hmac_secret=LEARNER_SECRET)
        return create_app(settings), settings
    if service == "feedback":
        from services.feedback.main import create_app
        from services.feedback.settings import FeedbackSettings as Settings
        # Generous limits: the fuzz measures documents and validation, not the rate limiter (tested elsewhere).
        settings = settings_for(Settings, feedback_rate_per_second=1000, feedback_rate_burst=1000)
        return create_app(settings), settings
    from services.notifier.main import create_app
    from services.notifier.settings import NotifierSettings as Settings
    settings = settings_for(Settings, notifier_alertmanager_token=ALERTMANAGER_TOKEN,
                            notifier_webhook_secret="whsec_" + base64.b64encode(b"fuzz-webhook-secret-32-bytes-x").decode(),
                            notifier_smtp_port=px.free_port(), notifier_max_attempts=1)
    return create_app(settings), settings


@pytest.mark.timeout(900)
@pytest.mark.parametrize("service", ["roadmap", "training", "feedback", "notifier"])
async def test_openapi_document_holds_under_fuzzing(service, settings_for):
    app, settings = build(service, settings_for)
    keys = {"programme_office": await make_key(settings, "opdc", "programme_office"),
            "agency": await make_key(settings, "dga")}
    report: list[str] = []
    async with serve(app) as base_url:
        for who, key in keys.items():
            findings, errors, cases = await asyncio.to_thread(fuzz, base_url, key)
            assert cases > 0, f"{service}: schemathesis generated nothing"
            distinct = {(f.operation, f.check, f.title): f for f in findings}
            report += [f"{who}: {f}" for f in distinct.values()] + [f"{who}: error {e}" for e in errors]
    assert not report, f"{service}: {len(report)} findings\n" + "\n".join(report)
