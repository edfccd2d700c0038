"""Agencies keep their own contacts (PUT/GET /v1/contacts/{agency}) and routes name `owner_contacts` instead of
people: over the real broker and database, with e-mail through a real SMTP server."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from support import MovableClock, db_of, make_key, poll, produce_events, serving
from test_notifier import alert_event

from bench.notifier_sinks import SmtpSink
from services.common import processes as px
from services.contracts.thai_calendar import BANGKOK
from services.contracts.topics import ROADMAP_ALERTS
from services.notifier.main import create_app
from services.notifier.settings import NotifierSettings

pytestmark = pytest.mark.integration

CONTACTS = {"workstreams": {
    "technology_access": {"responsible": [{"name": "นางสาวสมศรี ดิจิทัล", "email": "somsri@dga.or.th"}],
                          "escalation": [{"name": "ผู้อำนวยการ สพร.", "email": "director@dga.or.th"}]},
    "*": {"responsible": [{"name": "ฝ่ายแผน สพร.", "email": "plan@dga.or.th",
                           "line": "U0123456789abcdef0123456789abcdef"}]},
}}


def write_routes(tmp_path: Path) -> Path:
    doc = {"recipients": {"pmo": {"name": "กองบริหารโครงการ", "email": "pmo@opdc.go.th"}},
           "routes": [{"name": "owners", "match": {"type": ["missed", "at_risk", "recovered"]},
                       "recipients": ["owner_contacts", "pmo"], "channels": ["email"], "reminder_interval": "24h",
                       "escalate_after_days": 1, "escalation_recipients": ["owner_escalation_contacts"]}]}
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


async def _ready(value):
    return value or None


async def test_agencies_set_their_contacts_and_routes_reach_them(settings_for, kafka_bootstrap, tmp_path, caplog):
    smtp = SmtpSink().__enter__()
    port = px.free_port()
    settings = settings_for(NotifierSettings, http_port=port, notifier_routes_file=write_routes(tmp_path),
                            notifier_smtp_port=smtp.port, notifier_scheduler_tick_seconds=0.2)
    clock = MovableClock(datetime(2026, 11, 25, 10, 0, tzinfo=BANGKOK))  # a Wednesday, working hours
    app = create_app(settings, clock=clock)
    dga = {"X-API-Key": await make_key(settings, "dga", "agency")}
    dopa = {"X-API-Key": await make_key(settings, "dopa", "agency")}
    office = {"X-API-Key": await make_key(settings, "opdc", "programme_office")}
    kiosk = {"X-API-Key": await make_key(settings, "dga", "survey")}
    try:
        with caplog.at_level(logging.DEBUG):
            async with serving(app, port) as api:
                # --- The agency sets its own contacts; nobody else may, nor read them.
                r = await api.put("/v1/contacts/dga", json=CONTACTS, headers=dga)
                assert r.status_code == 200, r.text
                stored = r.json()["workstreams"]
                assert stored["*"]["escalation"] == [] and r.json()["version"] == 1  # normalised: no escalation
                assert {**stored, "*": {"responsible": stored["*"]["responsible"]}} == CONTACTS["workstreams"]
                for headers, status in ((dopa, 403), (kiosk, 403), ({}, 401)):
                    assert (await api.put("/v1/contacts/dga", json=CONTACTS, headers=headers)).status_code == status
                    assert (await api.get("/v1/contacts/dga", headers=headers)).status_code == status
                assert (await api.get("/v1/contacts/nosuch", headers=office)).status_code == 404
                for bad in ({"workstreams": {"space_program": CONTACTS["workstreams"]["*"]}},
                            {"workstreams": {"*": {"responsible": [{"name": "x"}]}}},
                            {"workstreams": {"*": {"responsible": [{"name": "x", "email": "not-an-address"}]}}},
                            {"workstreams": {"*": {"responsible": []}}}, {"workstreams": {}}, [1]):
                    r = await api.put("/v1/contacts/dga", json=bad, headers=dga)
                    assert r.status_code == 400 and r.json()["reason"] == "invalid_contacts", (bad, r.text)
                big = {"workstreams": {"*": {"responsible": [{"name": "x" * 200, "email": "a@b.go.th"}] * 10}},
                       "pad": "x" * 70_000}
                assert (await api.put("/v1/contacts/dga", json=big, headers=dga)).status_code == 413
                # The programme office may set them too; every change is audited (who, which, never the addresses).
                changed = {"workstreams": {**CONTACTS["workstreams"], "public_awareness": CONTACTS["workstreams"]["*"]}}
                r = await api.put("/v1/contacts/dga", json=changed, headers=office)
                assert r.status_code == 200 and r.json()["version"] == 2
                history = (await api.get("/v1/contacts/dga", headers=dga)).json()["history"]
                assert [(h["version"], h["role"], h["changed_workstreams"]) for h in history] == [
                    (2, "programme_office", ["public_awareness"]), (1, "agency", ["*", "technology_access"])]
                db = db_of(settings)
                audit = [d async for d in db.agency_contacts_audit.find({})]
                assert len(audit) == 2 and "dga.or.th" not in str(audit)

                # --- A missed milestone reaches the owner agency's contacts for its workstream, and the office.
                await produce_events(kafka_bootstrap, ROADMAP_ALERTS, [alert_event("missed", "M-C1", now=clock())])
                await poll(lambda: _ready(smtp.to("somsri@dga.or.th") and smtp.to("pmo@opdc.go.th")), 30,
                           what="e-mail to the registered contact and the office")
                assert not smtp.to("plan@dga.or.th")  # the workstream's own entry wins over `*`
                doc = await db.notifications.find_one({"address": "somsri@dga.or.th"})
                assert doc["recipient"].startswith("contact:dga:") and doc["recipient_name"] == "นางสาวสมศรี ดิจิทัล"
                # ... and the escalation goes to the agency's escalation contact after the route's day.
                clock.advance(timedelta(days=1, minutes=1))
                await poll(lambda: _ready(smtp.to("director@dga.or.th")), 30, what="escalation to the contact")
                # An agency without registered contacts: the office is still told, nothing breaks.
                await produce_events(kafka_bootstrap, ROADMAP_ALERTS,
                                     [alert_event("missed", "M-C2", agency="dopa", now=clock())])
                await poll(lambda: _ready([m for m in smtp.to("pmo@opdc.go.th") if "M-C2" in m["Subject"]
                                           or "M-C2" in m.get_body(("plain",)).get_content()]), 30,
                           what="the office told about an agency without contacts")
    finally:
        smtp.__exit__(None, None, None)
    # Addresses are personal data: never in a log line of ours (pymongo's own DEBUG command log is off in service).
    ours = [r for r in caplog.records if r.name.startswith(("services", "faststream", "uvicorn", "aiokafka"))]
    assert ours and not [r for r in ours if "dga.or.th" in r.getMessage() or "dga.or.th" in str(r.__dict__)]
