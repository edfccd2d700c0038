"""Owners acknowledge from the message, over the real broker, database and SMTP (issue: acknowledgement).

A milestone goes missed; the e-mail is read back from the real mail sink's Maildir; its personal link is
followed by a real HTTP client; the page is submitted; the acknowledgement event reaches `roadmap.events`;
reminders and escalation of that milestone stop while an unacknowledged twin escalates; bad links are refused.
"""

from __future__ import annotations

import asyncio
import json
import mailbox
import re
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest
import yaml
from support import MovableClock, cloudevent, db_of, make_key, poll, produce_events, read_topic, running, serving
from test_notifier import alert_event

from services.common import processes as px
from services.contracts.thai_calendar import BANGKOK
from services.contracts.topics import ROADMAP_ALERTS, ROADMAP_EVENTS
from services.mailsink import serve
from services.notifier import ack
from services.notifier.main import create_app
from services.notifier.settings import NotifierSettings
from services.roadmap.main import create_app as create_roadmap
from services.roadmap.settings import RoadmapSettings

pytestmark = pytest.mark.integration
LINK = re.compile(r"http://127\.0\.0\.1:\d+/ack/\S+")
BATCH = "application/cloudevents-batch+json"


@pytest.fixture
async def mail_sink(tmp_path: Path):
    """The local mail sink on a free port: (port, Maildir)."""
    port, maildir = px.free_port(), tmp_path / "mail"
    stopping, started = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(maildir, port=port, stopping=stopping, started=started))
    await asyncio.wait_for(started.wait(), 10)
    yield port, maildir
    stopping.set()
    await asyncio.wait_for(task, 10)


def write_routes(tmp_path: Path) -> Path:
    doc = {
        "recipients": {
            "dga-owner": {"name": "ผู้รับผิดชอบภารกิจ สพร.", "email": "owner@dga.go.th"},
            "opdc-director": {"name": "ผู้อำนวยการกองติดตามประเมินผล", "email": "director@opdc.go.th"},
        },
        "routes": [{"name": "dga", "match": {"agency": "dga", "type": ["at_risk", "missed", "recovered"]},
                    "recipients": ["dga-owner"], "channels": ["email"], "reminder_interval": "1h",
                    "escalate_after_days": 1, "escalation_recipients": ["opdc-director"]}],
    }
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def mails(maildir: Path, to: str) -> list:
    if not maildir.exists():
        return []
    box = mailbox.Maildir(maildir, create=False)
    out = [message_from_bytes(box.get_bytes(k), policy=policy.default) for k in box.keys()]
    return [m for m in out if to in (m.get_all("Delivered-To") or [])]


async def test_an_owner_acknowledges_from_the_email_and_the_chain_stops_for_that_milestone_only(
        settings_for, kafka_bootstrap, tmp_path, mail_sink):
    smtp_port, maildir = mail_sink
    port = px.free_port()
    settings = settings_for(NotifierSettings, http_port=port, notifier_routes_file=write_routes(tmp_path),
                            notifier_smtp_port=smtp_port, notifier_scheduler_tick_seconds=0.2,
                            notifier_public_url=f"http://127.0.0.1:{port}")
    roadmap_settings = settings_for(RoadmapSettings, watcher_max_tick_seconds=0.5, alert_settle_seconds=0.5)
    # Wednesday 25 Nov 2026, 10:00 Bangkok: a working day, inside working hours. Both milestones were due on
    # Friday 20 Nov: the roadmap finds them missed and publishes the alerts the notifier turns into e-mail.
    clock = MovableClock(datetime(2026, 11, 25, 10, 0, tzinfo=BANGKOK))
    app = create_app(settings, clock=clock)
    roadmap = create_roadmap(roadmap_settings, clock=clock)
    office = {"X-API-Key": await make_key(settings, "opdc", "programme_office")}
    dga_roadmap = {"X-API-Key": await make_key(roadmap_settings, "dga"), "Content-Type": BATCH}
    async with serving(app, port) as api, running(roadmap) as roadmap_api, \
            httpx.AsyncClient(follow_redirects=False, timeout=30) as person:
        plans = [cloudevent("roadmap.milestone.planned", {
            "milestone_id": mid, "title_th": f"ระบบสารบรรณอิเล็กทรอนิกส์ {mid}", "title_en": f"e-Saraban {mid}",
            "workstream": "technology_access", "owner_agency": "dga", "due_date": "2026-11-20"},
            agency="dga", id=f"plan-{mid}", time=datetime(2026, 10, 1, 3, 0, tzinfo=UTC).isoformat())
            for mid in ("M-ACK", "M-TWIN")]
        r = await roadmap_api.post("/v1/events", content=json.dumps(plans), headers=dga_roadmap)
        assert r.status_code == 202, r.text

        async def two_emails():
            got = mails(maildir, "owner@dga.go.th")
            return got if len(got) == 2 else None

        emails = await poll(two_emails, 30, what="both missed e-mails in the Maildir")
        email = next(m for m in emails if "M-ACK" in m.get_body(("plain",)).get_content())
        text = email.get_body(("plain",)).get_content()
        [link] = set(LINK.findall(text))
        assert link in email.get_body(("html",)).get_content()  # the HTML button carries the same link
        twin = next(m for m in emails if m is not email)
        [twin_link] = set(LINK.findall(twin.get_body(("plain",)).get_content()))

        # --- Opening the link shows the page; it acknowledges nothing by itself (scanners only GET).
        page = await person.get(link)
        assert page.status_code == 200, page.text
        assert page.headers["referrer-policy"] == "no-referrer" and page.headers["cache-control"] == "no-store"
        assert "ระบบสารบรรณอิเล็กทรอนิกส์ M-ACK" in page.text and "20 พ.ย. 2569" in page.text
        assert "ผู้รับผิดชอบภารกิจ สพร." in page.text and "owner@dga.go.th" not in page.text
        assert page.text.index("รับทราบ") < page.text.index("Acknowledge")  # Thai first
        db = db_of(settings)
        assert await db.notifier_acknowledgements.count_documents({}) == 0

        # --- Bad links are refused with a clear page.
        nid, token = link.rsplit("/", 2)[-2:]
        twin_nid = twin_link.rsplit("/", 2)[-2]
        for url, status, reason in [
            (f"http://127.0.0.1:{port}/ack/{twin_nid}/{token}", 403, "ack_token_for_another_notification"),
            (f"http://127.0.0.1:{port}/ack/{nid}/{token[:-3]}xyA", 403, "ack_token_invalid"),  # canonical, not signed
            (f"http://127.0.0.1:{port}/ack/{nid}/garbage", 400, "ack_token_malformed"),
            (f"http://127.0.0.1:{port}/ack/{nid}/v1.%E0%B8%81.{token.rsplit('.', 1)[1]}", 400, "ack_token_malformed"),
            (f"http://127.0.0.1:{port}/ack/{nid}/{token}%3D%3D", 400, "ack_token_malformed"),
            (f"http://127.0.0.1:{port}/ack/{nid}/" + ack.make_token(
                settings.ack_secrets(), nid, "dga-owner", clock() - timedelta(seconds=1)), 410, "ack_token_expired"),
        ]:
            for method in ("GET", "POST"):
                r = await person.request(method, url, data={"note": "x"})
                assert (r.status_code, r.headers.get("x-reason")) == (status, reason), (method, url)
                assert "ลิงก์" in r.text
        assert await db.notifier_acknowledgements.count_documents({}) == 0

        # --- A forecast in the past is explained on the page, nothing recorded.
        r = await person.post(link, data={"note": "x", "forecast": "2026-01-01"})
        assert r.status_code == 400 and "ต้องไม่ก่อนวันนี้" in r.text
        # --- A form the page never sends (too many fields, not UTF-8, not name=value): refused on the page.
        for body in ("a=1&" * 1000, b"note=\xff\xfe", "note"):
            r = await person.post(link, content=body, headers={"content-type": "application/x-www-form-urlencoded"})
            assert r.status_code == 400 and "แบบฟอร์มไม่ถูกต้อง" in r.text, body

        # --- Acknowledging: a POST from the page, with a recovery note (a phone number in it) and a forecast.
        r = await person.post(link, data={"note": "เร่งติดตั้งแล้ว ติดต่อ 081-234-5678", "forecast": "2026-12-15"})
        assert r.status_code == 303 and r.headers["location"].endswith(token)
        done = await person.get(link)
        assert "รับทราบแล้ว" in done.text and "15 ธ.ค. 2569" in done.text
        assert "081-234-5678" not in done.text and "[REDACTED:PHONE]" in done.text
        again = await person.post(link, data={"note": "second", "forecast": ""})
        assert again.status_code == 303
        [record] = [d async for d in db.notifier_acknowledgements.find({})]
        assert record["note"].startswith("เร่งติดตั้งแล้ว") and record["forecast_completion"] == "2026-12-15"

        # --- The acknowledgement is an event on roadmap.events, from the notifier, once.
        async def ack_events():
            got = [json.loads(r.value) for r in await read_topic(kafka_bootstrap, ROADMAP_EVENTS)]
            got = [e for e in got if e["type"] == "roadmap.milestone.acknowledged"]
            return got or None

        events = await poll(ack_events, 20, what="acknowledgement event")
        assert len({e["id"] for e in events}) == 1  # one acknowledgement, one event id (the second POST: none)
        event = events[0]
        assert event["source"] == "/services/notifier" and event["agency"] == "dga"
        data = event["data"]
        assert (data["milestone_id"], data["due_date"], data["acknowledged_by"]) == ("M-ACK", "2026-11-20",
                                                                                   "dga-owner")
        assert data["forecast_completion"] == "2026-12-15" and "081-234-5678" not in json.dumps(event)

        # --- The roadmap records it: who, when, the note; the owner's forecast is the projected finish.
        async def recorded():
            got = (await roadmap_api.get("/v1/milestones/M-ACK", headers=dga_roadmap)).json()
            return got if got.get("acknowledged_by") == "dga-owner" else None

        milestone = await poll(recorded, 30, what="the acknowledgement in the roadmap read API")
        assert milestone["status"] == "missed" and milestone["acknowledgement_note"].startswith("เร่งติดตั้งแล้ว")
        assert milestone["projected_finish"] == "2026-12-15" and milestone["projected_finish_th"] == "15 ธ.ค. 2569"
        assert milestone["projected_finish_source"] == "owner_forecast"
        assert [a["by"] for a in milestone["acknowledgements"]] == ["dga-owner"]
        twin_record = (await roadmap_api.get("/v1/milestones/M-TWIN", headers=dga_roadmap)).json()
        assert twin_record["acknowledged_by"] is None

        # --- Reminders and escalation: the twin gets both, the acknowledged milestone neither.
        clock.advance(timedelta(hours=1, minutes=1))

        async def twin_reminder():
            return [m for m in mails(maildir, "owner@dga.go.th") if "แจ้งเตือนซ้ำ" in m["Subject"]] or None

        reminders = await poll(twin_reminder, 30, what="the twin's reminder")
        assert all("M-TWIN" in m.get_body(("plain",)).get_content() for m in reminders)
        clock.advance(timedelta(days=1))
        escalations = await poll(lambda: _ready(mails(maildir, "director@opdc.go.th")), 30,
                                 what="the twin's escalation")
        assert [("M-TWIN" in m.get_body(("plain",)).get_content()) for m in escalations] == [True]
        for _ in range(3):  # more scheduler passes: still nothing for the acknowledged milestone
            await app.state.notifier.schedule_once()
        assert not [m for m in mails(maildir, "owner@dga.go.th") + mails(maildir, "director@opdc.go.th")
                    if "แจ้งเตือนซ้ำ" in m["Subject"] and "M-ACK" in m.get_body(("plain",)).get_content()]
        assert await db.notifications.count_documents({"milestone_id": "M-ACK", "kind": {"$ne": "alert"}}) == 0

        # --- The API shows who acknowledged, on every notification of the episode.
        r = await api.get("/v1/notifications", params={"milestone": "M-ACK"}, headers=office)
        [item] = r.json()["items"]
        assert item["acknowledged_by"] == "dga-owner" and item["acknowledged_at"]
        # --- The summary the quarterly report reads: 2 episodes, 1 acknowledged, the twin escalated once.
        summary = (await api.get("/v1/acknowledgements/summary", headers=office,
                                 params={"from": "2026-11-01", "to": "2026-11-30"})).json()
        assert (summary["episodes"], summary["acknowledged"], summary["escalations_by_level"]) == (2, 1, {"1": 1})
        assert summary["unacknowledged"]["1d_to_3d"] == 1 and 0 <= summary["median_hours_to_acknowledge"] < 1
        assert [a["agency"] for a in summary["agencies"]] == ["dga"]
        # --- One notification: the SMTP receipt names the message in the Maildir; the acknowledgement is shown.
        one = (await api.get(f"/v1/notifications/{nid}", headers=office)).json()
        [delivery] = one["deliveries"]
        maildir_keys = mailbox.Maildir(maildir, create=False).keys()
        assert delivery["outcome"] == "sent" and delivery["status"] == 250
        assert any(f"queued as {k}" in delivery["receipt"] for k in maildir_keys), delivery
        [acknowledged] = one["acknowledgements"]
        assert acknowledged["name"] == "ผู้รับผิดชอบภารกิจ สพร." and acknowledged["forecast_completion"] == "2026-12-15"
        dga = {"X-API-Key": await make_key(settings, "dga", "agency")}
        dopa = {"X-API-Key": await make_key(settings, "dopa", "agency")}
        assert (await api.get(f"/v1/notifications/{nid}", headers=dga)).status_code == 200
        assert (await api.get(f"/v1/notifications/{nid}", headers=dopa)).status_code == 404


async def _ready(value):
    return value or None


def write_chain_routes(tmp_path: Path) -> Path:
    doc = {
        "recipients": {
            "dga-owner": {"name": "ผู้รับผิดชอบภารกิจ สพร.", "email": "owner@dga.go.th"},
            "opdc-director": {"name": "ผู้อำนวยการกองติดตามประเมินผล", "email": "director@opdc.go.th"},
            "ps-office": {"name": "สำนักงานปลัดกระทรวง", "email": "ps@mdes.go.th"},
        },
        # Another agency than the first test's: this module's broker still holds that test's dga alerts.
        "routes": [{"name": "chain", "match": {"agency": "mdes", "type": ["missed", "recovered"]},
                    "recipients": ["dga-owner"], "channels": ["email"], "reminder_interval": "30d",
                    "escalation": [{"after": "1 working day", "recipients": ["opdc-director"]},
                                   {"after": "3 working days", "recipients": ["ps-office"]}]}],
    }
    path = tmp_path / "chain-routes.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


async def test_an_unacknowledged_milestone_climbs_the_chain_in_working_hours_across_a_weekend_a_holiday_and_a_restart(
        settings_for, kafka_bootstrap, tmp_path, mail_sink):
    smtp_port, maildir = mail_sink
    port = px.free_port()
    settings = settings_for(NotifierSettings, http_port=port, notifier_routes_file=write_chain_routes(tmp_path),
                            notifier_smtp_port=smtp_port, notifier_scheduler_tick_seconds=0.2)
    # Missed on Friday 4 Dec 2026 at 15:00; Saturday 5 and Monday 7 Dec are public holidays. Level 1 (one working
    # day = 8 office hours) is due on Tuesday 8 Dec at 15:00; level 2 (three working days) on Thursday 10 Dec... which
    # is Constitution Day, so Friday 11 Dec at 15:00.
    clock = MovableClock(bkk(2026, 12, 4, 15, 0))
    db = db_of(settings)

    def escalations(to: str) -> list:
        return [m for m in mails(maildir, to) if "ยกระดับ" in m["Subject"]]

    app = create_app(settings, clock=clock)
    async with serving(app, port):
        await produce_events(kafka_bootstrap, ROADMAP_ALERTS,
                             [alert_event("missed", "M-CHAIN", agency="mdes", now=clock(), due=date(2026, 12, 4),
                                          days_late=0)])
        await poll(lambda: _ready(mails(maildir, "owner@dga.go.th")), 30, what="the missed e-mail")
        for moment in (bkk(2026, 12, 5, 10, 0), bkk(2026, 12, 7, 16, 0), bkk(2026, 12, 8, 14, 59)):
            clock.set(moment)
            await app.state.notifier.schedule_once()
            assert await db.notifications.count_documents({"kind": "escalation"}) == 0, moment
        clock.set(bkk(2026, 12, 8, 15, 1))
        await poll(lambda: _ready(escalations("director@opdc.go.th")), 30, what="level 1 on Tuesday 15:00")
        assert not escalations("ps@mdes.go.th")
    # --- Restart mid-chain: the new instance neither repeats level 1 nor skips level 2.
    clock.set(bkk(2026, 12, 11, 14, 59))
    app = create_app(settings, clock=clock)
    async with serving(app, port):
        await app.state.notifier.schedule_once()
        assert not escalations("ps@mdes.go.th")  # Thursday was a holiday: not yet
        clock.set(bkk(2026, 12, 14, 9, 0))  # the notifier slept through Friday 15:00: level 2 at the next pass
        await poll(lambda: _ready(escalations("ps@mdes.go.th")), 30, what="level 2 after the restart")
        for _ in range(3):
            await app.state.notifier.schedule_once()
    assert len(escalations("director@opdc.go.th")) == 1 and len(escalations("ps@mdes.go.th")) == 1
    [schedule] = [d async for d in db.notifier_reminders.find({"milestone_id": "M-CHAIN"})]
    assert schedule["level"] == 2


def bkk(*args) -> datetime:
    return datetime(*args, tzinfo=BANGKOK)
