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
import copy
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import schemathesis
import schemathesis.transport.requests as st_requests
import uvicorn
from schemathesis.config import SchemathesisConfig
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES
from schemathesis.engine import events, from_schema
from support import make_key, poll

from services.common import openapi
from services.common import processes as px
from services.contracts import dates
from services.contracts.events import EVENT_TYPES

pytestmark = [pytest.mark.integration,
              # raised inside schemathesis' own strategies, not in this project's code
              pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")]

MAX_EXAMPLES = int(os.environ.get("NEWNORMAL_FUZZ_MAX_EXAMPLES", "20"))
SEED = int(os.environ.get("NEWNORMAL_FUZZ_SEED", "12"))  # fixed: CI reruns are reproducible; vary it to explore
ALERTMANAGER_TOKEN = "fuzz-alertmanager-credential-0123456789"
LEARNER_SECRET = "fuzz-learner-secret-0123456789abcdef"

# grafana-client pulls in niquests, whose urllib3-future replaces urllib3 in this environment; its pool
# container has no `keys()`, which schemathesis only uses to decide whether to resend a request on a dropped
# keep-alive connection. Counting no connections keeps that resend off; everything else is unchanged.
if not hasattr(getattr(__import__("urllib3").PoolManager(), "pools", {}), "keys"):
    st_requests._count_opened_connections = lambda session: 0


def _body_rules(body: Any) -> None:
    """Rules across fields that JSON Schema cannot state and the documents state in words: an event's `source`
    lies in its agency's namespace and the agency named in its data is its `agency`; a birth year gives an age
    of 0-120 when the response was submitted; a milestone does not depend on itself."""
    if isinstance(body, list):
        for item in body:
            _body_rules(item)
        return
    if not isinstance(body, dict):
        return
    _date_rules(body)
    agency = body.get("agency")
    if isinstance(agency, str) and isinstance(body.get("source"), str):
        body["source"] = f"/agencies/{agency}/" + body["source"].split("/", 3)[-1]
    data = body.get("data")
    if isinstance(data, dict):
        data = body["data"] = copy.deepcopy(data)  # generated batches may share one data object between events
        for name in ("agency", "owner_agency"):
            if isinstance(agency, str) and name in data:
                data[name] = agency
        if isinstance(agency, str) and isinstance(data.get("voided_source"), str):  # retractions: own namespace
            data["voided_source"] = f"/agencies/{agency}/" + data["voided_source"].split("/", 3)[-1]
        _body_rules(data)
    birth, submitted = body.get("birth_year"), body.get("submitted_at")
    if isinstance(birth, int | float) and not isinstance(birth, bool) and isinstance(submitted, str):
        year = int(submitted[:4])
        if not 0 <= year - (birth - 543 if birth > 2400 else birth) <= 120:
            if 1900 <= year - 30 <= 2400:  # above 2400 a birth year is read as Buddhist era
                body["birth_year"] = year - 30
            else:
                body.pop("birth_year")
                body["age_group"] = body.get("age_group") or "25_34"
    if isinstance(body.get("depends_on"), list) and body.get("milestone_id") in body["depends_on"]:
        body["depends_on"] = [d for d in body["depends_on"] if d != body["milestone_id"]]


def _in_window(value: Any, kind: dates.Window, now: datetime) -> bool:
    """Whether a generated date text lies in its documented window (docs/platform.md "Dates")."""
    try:
        parsed = datetime.fromisoformat(value) if kind is dates.Window.observed else date.fromisoformat(value)
        if kind is dates.Window.observed:
            return dates._instant_refusal("x", parsed, now, dates.DateWindow()) is None and parsed.year < 2400
        return dates._date_refusal("x", parsed, kind, now, dates.DateWindow()) is None
    except (TypeError, ValueError, OverflowError):
        return True  # not a date this rule judges: left as generated


def _date_rules(body: dict[str, Any]) -> None:
    """Dates in the windows the documents state in words (relative to now, which JSON Schema cannot express): an
    event's `time` and its data's windowed fields (by the contracts' own types), a survey form's `submitted_at`,
    and an xAPI statement's `timestamp` (its completion day). A value already inside is kept as generated."""
    now = datetime.now(UTC)
    earlier = (now - timedelta(days=1)).isoformat()
    if isinstance(body.get("time"), str) and not _in_window(body["time"], dates.Window.observed, now):
        body["time"] = earlier
    if "actor" in body and isinstance(body.get("timestamp"), str) \
            and not _in_window(body["timestamp"][:10], dates.Window.done_readable_fy, now):
        body["timestamp"] = earlier
    if isinstance(body.get("submitted_at"), str) and not _in_window(body["submitted_at"], dates.Window.observed, now):
        body["submitted_at"] = earlier  # a survey form (POST /v1/responses) becomes an event with this field
    event_type = EVENT_TYPES.get(body.get("type")) if isinstance(body.get("type"), str) else None
    data = body.get("data")
    if event_type is None or not isinstance(data, dict):
        return
    for name, kind in dates.windowed_fields(event_type.model):
        if isinstance(data.get(name), str) and not _in_window(data[name], kind, now):
            data[name] = earlier if kind is dates.Window.observed else (
                (now + timedelta(days=30)).date() if kind is dates.Window.horizon else (now - timedelta(days=1)).date()
            ).isoformat()


def _query_rules(case: Any) -> None:
    """`from` <= `to`, and at most a year between them (the read routes' documented range)."""
    query = case.query if isinstance(case.query, dict) else {}
    start, end = query.get("from"), query.get("to")
    try:
        start_day = date.fromisoformat(start) if isinstance(start, str) else None
        end_day = date.fromisoformat(end) if isinstance(end, str) else None
    except ValueError:
        return
    if start_day and end_day and not timedelta(0) <= end_day - start_day <= timedelta(days=366):
        query["to"] = (start_day + timedelta(days=30)).isoformat()
    elif start_day and not end_day:
        query["to"] = (start_day + timedelta(days=30)).isoformat()
    elif end_day and not start_day:
        query["from"] = (end_day - timedelta(days=30)).isoformat()


def _path_rules(case: Any) -> None:
    """PUT /xapi/statements: the statement's own id, if any, is the `statementId` it is stored under; GET: see below."""
    query = case.query if isinstance(case.query, dict) else {}
    if isinstance(case.body, dict) and "id" in case.body and isinstance(query.get("statementId"), str):
        case.body["id"] = query["statementId"]
    if str(getattr(case, "method", "")).upper() == "GET" and getattr(case, "path", "") == "/xapi/statements":
        # GET /xapi/statements: `statementId` / `voidedStatementId` stand alone (`format` aside), as its description
        # says; `more` is only ever a cursor the service issued.
        query.pop("more", None)
        alone = next((n for n in ("statementId", "voidedStatementId") if n in query), None)
        if alone:
            for name in [n for n in query if n not in (alone, "format")]:
                query.pop(name)


def _consistent(context, case):
    # Positive cases only: a negative case stays exactly as schemathesis made it.
    if str(getattr(getattr(getattr(case, "meta", None), "generation", None), "mode", "")).endswith("positive"):
        _body_rules(case.body)
        _query_rules(case)
        _path_rules(case)
    return case


@dataclass
class Finding:
    operation: str
    check: str
    title: str
    message: str
    reproduce: str
    answer: str = ""  # the service's status and body: the refusal's reason code when a case was refused

    def __str__(self) -> str:
        return (f"{self.operation} [{self.check}] {self.title}: {self.message[:400]}\n    answer: {self.answer[:600]}"
                f"\n    {self.reproduce[:3000]}")


def load_schema(base_url: str, key: str, max_examples: int = MAX_EXAMPLES) -> Any:
    config = SchemathesisConfig.from_dict({
        "workers": 1,
        "continue-on-failure": True,
        "seed": SEED,
        "cache": {"enabled": False},
        # JSON text is UTF-8 (RFC 8259): strings with lone surrogates cannot be sent, so none are generated.
        "generation": {"max-examples": max_examples, "no-shrink": True, "codec": "utf-8"},
        # 413 is how the services refuse a batch over its documented maxItems: a refusal like 400.
        "checks": {"negative_data_rejection": {"expected-statuses": [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES,
                                                                     "413"]}},
        "phases": {"stateful": {"enabled": False}},
        "auth": {"openapi": {openapi.API_KEY_SCHEME: {"api_key": key},
                             openapi.ALERTMANAGER_SCHEME: {"bearer": ALERTMANAGER_TOKEN}}},
        "request-timeout": 30,
    })
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    schema.hook("map_case")(_consistent)
    return schema


def fuzz(base_url: str, key: str, max_examples: int = MAX_EXAMPLES) -> tuple[list[Finding], list[str], int]:
    """Run schemathesis' engine (what `st run --checks all` runs) and collect every failed check."""
    schema = load_schema(base_url, key, max_examples)
    findings: list[Finding] = []
    errors: list[str] = []
    cases = 0
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            cases += len(event.recorder.cases)
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    info = check.failure_info
                    if info is not None:
                        findings.append(Finding(event.recorder.label, check.name, info.failure.title,
                                                " ".join(info.failure.message.split()), info.code_sample,
                                                _answer(event.recorder.interactions.get(case_id))))
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.value!r}"[:500])
        elif isinstance(event, events.FatalError):
            errors.append(f"fatal: {event.exception!r}"[:500])
    return findings, errors, cases


def _answer(interaction: Any) -> str:
    response = getattr(interaction, "response", None)
    if response is None:
        return "(no response)"
    try:
        body = response.content.decode("utf-8", "replace") if response.content else ""
    except Exception:
        body = "(unreadable body)"
    return f"{response.status_code} {body}"


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


async def start(service: str, settings_for, stack: contextlib.AsyncExitStack) -> tuple[str, Any]:
    """The service on a socket, and its settings (for keys). Reports reads the other three's APIs, so they run too."""
    if service != "reports":
        app, settings = build(service, settings_for)
        return await stack.enter_async_context(serve(app)), settings
    from services.reports.main import create_app
    from services.reports.settings import ReportsSettings

    urls = {}
    for upstream in ("roadmap", "training", "feedback"):
        urls[f"{upstream}_url"], settings = await start(upstream, settings_for, stack)
    office = await make_key(settings, "opdc", "programme_office")
    app = create_app(settings_for(ReportsSettings, reports_api_key=office, **urls))
    return await stack.enter_async_context(serve(app)), settings


@pytest.mark.timeout(900)
@pytest.mark.parametrize("service", ["roadmap", "training", "feedback", "notifier", "reports"])
async def test_openapi_document_holds_under_fuzzing(service, settings_for):
    report: list[str] = []
    # A quarterly report case renders a real PDF (seconds each): fewer examples keep the reports run near the others'.
    examples = max(3, MAX_EXAMPLES // 4) if service == "reports" else MAX_EXAMPLES
    async with contextlib.AsyncExitStack() as stack:
        base_url, settings = await start(service, settings_for, stack)
        keys = {"programme_office": await make_key(settings, "opdc", "programme_office"),
                "agency": await make_key(settings, "dga")}
        for who, key in keys.items():
            findings, errors, cases = await asyncio.to_thread(fuzz, base_url, key, examples)
            assert cases > 0, f"{service}: schemathesis generated nothing"
            distinct = {(f.operation, f.check, f.title): f for f in findings}
            report += [f"{who}: {f}" for f in distinct.values()] + [f"{who}: error {e}" for e in errors]
    assert not report, f"{service}: {len(report)} findings\n" + "\n".join(report)
