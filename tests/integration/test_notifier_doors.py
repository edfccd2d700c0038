"""The notifier's doors over the real broker and database: the Alertmanager receiver is always
authenticated (bearer or basic, checked before the body is read) and bounded; the test-notification
route checks key and role before reading its body; an agency key reads only its own notifications;
services refuse to start without their secrets. A real Alertmanager sends with basic auth from a file."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
import yaml
from support import db_of, make_key, poll, produce_events, running, serving

from bench.notifier_sinks import HttpSink
from services.common import processes as px
from services.common.settings import SecretMissing
from services.contracts.envelope import make_event
from services.contracts.topics import ROADMAP_ALERTS
from services.notifier.main import create_app
from services.notifier.settings import NotifierSettings
from services.training.main import create_app as create_training_app
from services.training.settings import TrainingSettings

pytestmark = pytest.mark.integration
LOGS = Path(__file__).resolve().parents[2] / ".data" / "test-logs"
TOKEN = "doors-alertmanager-credential-0123456789"
USER = "alertmanager"
MAX_BODY = 64 * 1024
MAX_ALERTS = 5


def write_routes(tmp_path: Path, sink: HttpSink) -> Path:
    slack = sink.url("/slack")
    doc = {"recipients": {"dga-desk": {"slack": slack}, "mdes-desk": {"slack": slack}, "ops": {"slack": slack}},
           "routes": [{"name": "dga", "match": {"agency": "dga", "type": ["at_risk", "missed", "recovered"]},
                       "recipients": ["dga-desk"], "channels": ["slack"]},
                      {"name": "mdes", "match": {"agency": "mdes", "type": ["at_risk", "missed", "recovered"]},
                       "recipients": ["mdes-desk"], "channels": ["slack"]},
                      {"name": "ops", "match": {"type": "operational"}, "recipients": ["ops"], "channels": ["slack"]}]}
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def doors_settings(settings_for, tmp_path: Path, sink: HttpSink, **extra) -> NotifierSettings:
    return settings_for(NotifierSettings, notifier_routes_file=write_routes(tmp_path, sink),
                        notifier_alertmanager_token=TOKEN, notifier_alertmanager_max_body_bytes=MAX_BODY,
                        notifier_alertmanager_max_alerts=MAX_ALERTS, notifier_scheduler_tick_seconds=0.2, **extra)


def am_payload(name: str, n: int = 1, **labels: str) -> dict:
    now = datetime.now(UTC).isoformat()
    alerts = [{"status": "firing", "labels": {"alertname": name, "severity": "warning", **labels},
               "annotations": {"summary": f"{name} {i}"}, "startsAt": now, "fingerprint": f"{uuid.uuid4().hex[:16]}"}
              for i in range(n)]
    return {"version": "4", "status": "firing", "receiver": "notifier", "groupKey": name, "alerts": alerts,
            "commonLabels": {"alertname": name}}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def alert_event(kind: str, milestone: str, agency: str) -> dict:
    now = datetime.now(UTC)
    due = date(2026, 11, 20)
    data = {"milestone_id": milestone, "title_th": f"งาน {milestone}", "title_en": f"Work {milestone}",
            "workstream": "technology_access", "owner_agency": agency, "due_date": due.isoformat(),
            "percent_complete": 40, "days_late": 3, "detected_at": now.isoformat()}
    return make_event(f"roadmap.milestone.{kind}", data, agency=agency, source="/services/roadmap/watcher",
                      id=f"{kind}:{milestone}:{due.isoformat()}", time=now, partitionkey=agency).to_json_dict()


async def test_alertmanager_receiver_is_always_authenticated_bounded_and_works_with_real_alertmanager(
        settings_for, tmp_path):
    sink = await HttpSink().start()
    settings = doors_settings(settings_for, tmp_path, sink)
    db = db_of(settings)
    am = None
    office = {"X-API-Key": await make_key(settings, "opdc", "programme_office")}
    try:
        async with serving(create_app(settings), settings.http_port) as client:
            async def stored() -> int:
                return await db.notifications.count_documents({})

            forged = am_payload("ForgedAlert", 1, agency="dga")
            wrong = [{}, {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": f"Bearer {TOKEN}x"},
                     {"Authorization": "Bearer"}, {"Authorization": f"Token {TOKEN}"},
                     {"Authorization": basic("someone", TOKEN)}, {"Authorization": basic(USER, TOKEN[:-1])},
                     {"Authorization": basic(USER, "")}, {"Authorization": "Basic !!!not-base64!!!"},
                     {"Authorization": "Basic " + base64.b64encode(TOKEN.encode()).decode()},  # no colon
                     {"X-API-Key": office["X-API-Key"]}]  # an API key is not the receiver's credential
            for headers in wrong:
                r = await client.post("/v1/alertmanager", json=forged, headers=headers)
                assert r.status_code == 401, (headers, r.text)
                assert r.headers["content-type"].startswith("application/problem+json")
                assert r.json()["reason"] == "unauthorized" and "Bearer" in r.headers["www-authenticate"]
                assert TOKEN not in r.text
            # Authentication comes before the body: a forged 3 MB body is 401, not 413 or 400.
            r = await client.post("/v1/alertmanager", content=b"[" * (3 * 1024 * 1024),
                                  headers={"Content-Type": "application/json"})
            assert r.status_code == 401, r.text
            assert await stored() == 0, "a forged call stored a notification"

            auth = {"Authorization": f"Bearer {TOKEN}"}
            # Body limit before parsing, declared or streamed.
            big = json.dumps(am_payload("TooBig", 1, padding="x" * (MAX_BODY + 1))).encode()
            r = await client.post("/v1/alertmanager", content=big, headers={**auth, "Content-Type": "application/json"})
            assert r.status_code == 413 and r.json()["reason"] == "request_too_large", r.text

            async def chunks():
                for _ in range(4):
                    yield b" " * (MAX_BODY // 2)

            r = await client.post("/v1/alertmanager", content=chunks(), headers=auth)  # chunked, no length
            assert r.status_code == 413 and r.json()["reason"] == "request_too_large", r.text
            # Hostile JSON answers 400 with a reason, never 500.
            r = await client.post("/v1/alertmanager", content=b"[" * 5000 + b"]" * 5000, headers=auth)
            assert r.status_code == 400 and r.json()["reason"] == "json_too_deep", r.text
            r = await client.post("/v1/alertmanager", content=b"\xff\xfe{", headers=auth)
            assert r.status_code == 400 and r.json()["reason"] == "invalid_json", r.text
            r = await client.post("/v1/alertmanager", json=[1, 2], headers=auth)
            assert r.status_code == 400 and r.json()["reason"] == "invalid_alertmanager_payload", r.text
            # The alert count is capped: over it, nothing is stored, not even the first alerts.
            r = await client.post("/v1/alertmanager", json=am_payload("TooMany", MAX_ALERTS + 1), headers=auth)
            assert r.status_code == 413 and r.json()["reason"] == "too_many_alerts", r.text
            assert await stored() == 0

            # The right bearer and the right basic credential are accepted.
            r = await client.post("/v1/alertmanager", json=am_payload("BearerAlert", MAX_ALERTS), headers=auth)
            assert r.status_code == 200 and r.json()["alerts"] == MAX_ALERTS, r.text
            r = await client.post("/v1/alertmanager", json=am_payload("BasicAlert"),
                                  headers={"Authorization": basic(USER, TOKEN)})
            assert r.status_code == 200 and r.json()["notifications_created"] == 1, r.text

            # A real Alertmanager with basic_auth.password_file, as an operator may configure it.
            secret_file = tmp_path / "am-password"
            secret_file.write_text(TOKEN + "\n", encoding="utf-8")
            secret_file.chmod(0o600)
            am_port = px.free_port()
            config = tmp_path / "alertmanager.yml"
            config.write_text(yaml.safe_dump({
                "route": {"receiver": "notifier", "group_by": ["alertname"], "group_wait": "1s",
                          "group_interval": "1s", "repeat_interval": "1h"},
                "receivers": [{"name": "notifier", "webhook_configs": [{
                    "url": f"http://127.0.0.1:{settings.http_port}/v1/alertmanager", "max_alerts": MAX_ALERTS,
                    "http_config": {"basic_auth": {"username": USER, "password_file": str(secret_file)}}}]}]}))
            am = px.alertmanager(am_port, config, tmp_path / "am-data", LOGS).start()
            am_url = f"http://127.0.0.1:{am_port}"
            await poll(lambda: asyncio.to_thread(px.http_ok, f"{am_url}/-/ready"), 30, what="alertmanager ready")
            fired = {"labels": {"alertname": "RealAlertmanagerBasic", "severity": "warning"},
                     "annotations": {"summary": "through basic auth"}, "startsAt": datetime.now(UTC).isoformat()}
            async with httpx.AsyncClient(base_url=am_url) as am_client:
                assert (await am_client.post("/api/v2/alerts", json=[fired])).status_code == 200

            async def from_alertmanager():
                return await db.notifications.count_documents({"operational.alertname": "RealAlertmanagerBasic"})

            await poll(from_alertmanager, 30, what="the real Alertmanager's alert stored")
            names = {d["operational"]["alertname"] async for d in db.notifications.find({}, {"operational": 1})}
            assert names == {"BearerAlert", "BasicAlert", "RealAlertmanagerBasic"}, names
            assert not any("ForgedAlert" in json.dumps(r.body) for r in sink.received), "a forged alert was sent"
    finally:
        if am is not None:
            am.stop()
        await db.client.close()
        await sink.stop()


async def test_test_notification_checks_key_and_role_before_reading_its_body(settings_for, tmp_path):
    sink = await HttpSink().start()
    settings = doors_settings(settings_for, tmp_path, sink)
    db = db_of(settings)
    office = {"X-API-Key": await make_key(settings, "opdc", "programme_office")}
    agency = {"X-API-Key": await make_key(settings, "dga", "agency")}
    huge = b"{" + b" " * (10 * 1024 * 1024) + b"}"
    try:
        async with running(create_app(settings)) as client:
            r = await client.post("/v1/test-notification", content=huge, headers={"Content-Type": "application/json"})
            assert r.status_code == 401 and r.json()["reason"] == "missing_api_key", r.text
            r = await client.post("/v1/test-notification", content=huge,
                                  headers={"X-API-Key": "nnk_dga_" + "A" * 43, "Content-Type": "application/json"})
            assert r.status_code == 401, r.text
            r = await client.post("/v1/test-notification", content=huge, headers=agency)
            assert r.status_code == 403 and r.json()["reason"] == "role_not_allowed", r.text
            r = await client.post("/v1/test-notification", content=huge, headers=office)
            assert r.status_code == 413 and r.json()["reason"] == "request_too_large", r.text
            for body, reason in ((b"{not json", "invalid_json"), (b"[" * 100 + b"]" * 100, "json_too_deep"),
                                 (b'{"route": ""}', "invalid_request"), (b'{"route": "ops", "wait_seconds": 1e9}',
                                                                         "invalid_request")):
                r = await client.post("/v1/test-notification", content=body, headers=office)
                assert r.status_code == 400 and r.json()["reason"] == reason, (body[:30], r.text)
                assert r.headers["content-type"].startswith("application/problem+json")
            assert await db.notifications.count_documents({}) == 0
            r = await client.post("/v1/test-notification", json={"route": "nope"}, headers=office)
            assert r.status_code == 404 and r.json()["reason"] == "unknown_route"
            r = await client.post("/v1/test-notification", json={"route": "ops", "alert_type": "operational"},
                                  headers=office)
            assert r.status_code == 200 and [i["route"] for i in r.json()["items"]] == ["ops"], r.text
            # The retry route has no body and stays with the programme office.
            nid = r.json()["items"][0]["id"]
            r = await client.post(f"/v1/notifications/{nid}/retry", headers=agency)
            assert r.status_code == 403, r.text
    finally:
        await db.client.close()
        await sink.stop()


async def test_notifications_are_scoped_by_role(settings_for, tmp_path, kafka_bootstrap):
    sink = await HttpSink().start()
    settings = doors_settings(settings_for, tmp_path, sink)
    db = db_of(settings)
    keys = {"office": await make_key(settings, "opdc", "programme_office"), "dga": await make_key(settings, "dga"),
            "mdes": await make_key(settings, "mdes"), "survey": await make_key(settings, "dga", "survey")}
    try:
        async with running(create_app(settings)) as client:
            await produce_events(kafka_bootstrap, ROADMAP_ALERTS, [
                alert_event("missed", "DGA-1", "dga"), alert_event("at_risk", "DGA-2", "dga"),
                alert_event("missed", "MDES-1", "mdes")])
            # An operational alert labelled with an agency goes to the operators, not to that agency's readers.
            r = await client.post("/v1/alertmanager", json=am_payload("OpsAboutDga", 1, agency="dga"),
                                  headers={"Authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 200, r.text

            async def listed(who: str, **params):
                r = await client.get("/v1/notifications", params=params, headers={"X-API-Key": keys[who]})
                return r

            async def all_four():
                r = await listed("office")
                return r.json()["count"] == 4

            await poll(all_four, 30, what="three milestone alerts and one operational notification stored")
            office = (await listed("office")).json()["items"]
            assert {(i["agency"], i["kind"]) for i in office} == {("dga", "alert"), ("mdes", "alert"),
                                                                 ("dga", "operational")}
            dga = (await listed("dga")).json()["items"]
            assert sorted(i["milestone_id"] for i in dga) == ["DGA-1", "DGA-2"]
            assert {i["agency"] for i in dga} == {"dga"} and {i["recipient"] for i in dga} == {"dga-desk"}
            mdes = (await listed("mdes")).json()["items"]
            assert [i["milestone_id"] for i in mdes] == ["MDES-1"]
            # Filters never widen the scope: another agency's milestone id or agency filter shows nothing / 403.
            assert (await listed("dga", milestone="MDES-1")).json()["items"] == []
            r = await listed("dga", agency="mdes")
            assert r.status_code == 403 and r.json()["reason"] == "agency_not_allowed"
            assert (await listed("office", agency="mdes")).json()["count"] == 1
            # No address (personal data) in any view.
            assert not any("address" in i for i in office + dga + mdes)
            r = await listed("survey")
            assert r.status_code == 403 and r.json()["reason"] == "role_not_allowed", r.text
            assert (await client.get("/v1/notifications")).status_code == 401
            # One bad id, one answer on every route that takes it.
            office_key = {"X-API-Key": keys["office"]}
            for method, path in (("GET", "/v1/notifications/{}"), ("POST", "/v1/notifications/{}/retry")):
                r = await client.request(method, path.format("x" * 300), headers=office_key)
                assert r.status_code == 400 and r.json()["reason"] == "invalid_request", (method, r.text)
    finally:
        await db.client.close()
        await sink.stop()


def test_services_refuse_to_start_without_their_secrets(settings_for, tmp_path, monkeypatch):
    monkeypatch.delenv("NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET", raising=False)
    monkeypatch.delenv("NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN", raising=False)
    with pytest.raises(SecretMissing, match="NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET is not set"):
        create_training_app(settings_for(TrainingSettings))
    with pytest.raises(SecretMissing, match="NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET is shorter"):
        create_training_app(settings_for(TrainingSettings, learner_hmac_secret="CHANGE-ME"))
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump({"recipients": {"o": {"email": "o@opdc.go.th"}},
                                      "routes": [{"name": "r", "match": {}, "recipients": ["o"], "channels": ["email"]}]}))
    with pytest.raises(SecretMissing, match="NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN is not set"):
        create_app(settings_for(NotifierSettings, notifier_routes_file=routes))
    with pytest.raises(SecretMissing, match="NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN_FILE"):
        create_app(settings_for(NotifierSettings, notifier_routes_file=routes,
                                notifier_alertmanager_token_file=tmp_path / "absent"))


def test_run_command_refuses_to_start_without_the_learner_secret(tmp_path):
    """`newnormal run training` as a process: exit status 2 and a message naming the variable, no traceback."""
    env = {k: v for k, v in os.environ.items() if k != "NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET"}
    proc = subprocess.run([sys.executable, "-m", "services.cli", "run", "training"], capture_output=True, text=True,
                          env={**env, "NEWNORMAL_HTTP_PORT": str(px.free_port())}, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 2, proc.stderr
    assert "NEWNORMAL_TRAINING_LEARNER_HMAC_SECRET is not set" in proc.stderr and "Traceback" not in proc.stderr

