"""Who may read and write what, over the real broker and database, on the roadmap, training and feedback
services at once: every read route with no key, a survey (kiosk) key, an agency key and the programme
office's key; small-cell suppression; the key life cycle (list, revoke within 10 s, expiry, last used)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import date, timedelta

import pytest
from support import cloudevent, db_of, make_key, point_cli_at, poll, produce_events, running

from services import cli
from services.common.auth import create_key, hash_key, key_id_of, list_keys
from services.contracts import topics
from services.feedback.main import create_app as feedback_app
from services.feedback.settings import FeedbackSettings
from services.localstack import _write_keys
from services.roadmap.main import create_app as roadmap_app
from services.roadmap.settings import RoadmapSettings
from services.training.main import create_app as training_app
from services.training.settings import TrainingSettings

pytestmark = pytest.mark.integration
BATCH = "application/cloudevents-batch+json"
MARCH = {"from": "2026-03-01", "to": "2026-03-31"}
FY = 2569

# route -> (service, query): every read route that needs a key.
READS = {
    "/v1/milestones": ("roadmap", {}),
    "/v1/milestones/M-DGA": ("roadmap", {}),
    "/v1/summary": ("roadmap", {}),
    "/v1/readiness": ("training", {"fiscal_year": FY}),
    "/v1/readiness/laggards": ("training", {"fiscal_year": FY}),
    "/v1/experience": ("feedback", MARCH),
    "/v1/experience/gaps": ("feedback", MARCH),
}
OPEN = ("/v1/agencies", "/healthz", "/openapi.json", "/metrics", "/docs")


def plan(mid: str, agency: str) -> dict:
    due = (date.today() + timedelta(days=90)).isoformat()
    return cloudevent("roadmap.milestone.planned", {
        "milestone_id": mid, "title_th": f"หมุดหมาย {mid}", "title_en": f"Milestone {mid}", "workstream": "technology_access",
        "owner_agency": agency, "due_date": due, "weight": 1, "depends_on": []}, agency=agency, id=f"plan-{mid}")


def target(agency: str, headcount: int) -> dict:
    return cloudevent("training.target.set", {"agency": agency, "competency": "mindset", "fiscal_year": FY,
                                              "headcount": headcount}, agency=agency)


def response(agency: str, age_group: str, channel: str, satisfaction: int = 4) -> dict:
    return cloudevent("feedback.response.submitted", {
        "agency": agency, "service_name": "ต่ออายุใบอนุญาต", "channel": channel, "age_group": age_group,
        "satisfaction": satisfaction, "tech_difficulty": "none", "aware_of_digital_channels": True,
        "submitted_at": "2026-03-15T09:30:00+07:00"}, agency=agency, source=f"/agencies/{agency}/kiosk")


def h(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


@pytest.fixture
def stack(settings_for):
    # A real key cache (5 s), so revocation is shown to pass through it.
    common = {"api_key_cache_seconds": 5.0}
    return {"roadmap": settings_for(RoadmapSettings, **common),
            "training": settings_for(TrainingSettings, learner_hmac_secret="integration-secret", **common),
            "feedback": settings_for(FeedbackSettings, feedback_min_published_cell=10, **common)}


async def test_roles_read_access_suppression_and_key_life_cycle(stack, kafka_bootstrap, monkeypatch, capsys):
    settings = stack["roadmap"]
    office, dga, rd = (await make_key(settings, "opdc", "programme_office"), await make_key(settings, "dga"),
                       await make_key(settings, "rd"))
    kiosk = await make_key(settings, "dga", "survey")
    db = db_of(settings)
    apps = {"roadmap": roadmap_app(stack["roadmap"]), "training": training_app(stack["training"]),
            "feedback": feedback_app(stack["feedback"])}
    try:
        async with contextlib.AsyncExitStack() as exits:
            http = {name: await exits.enter_async_context(running(app)) for name, app in apps.items()}

            # --- Seed: a milestone per agency, a target per agency, feedback with small cells.
            r = await http["roadmap"].post("/v1/events", content=json.dumps([plan("M-DGA", "dga"), plan("M-RD", "rd")]),
                                           headers={**h(office), "Content-Type": BATCH})
            assert r.status_code == 202, r.text
            for agency, key, n in (("dga", dga, 40), ("rd", rd, 10)):
                r = await http["training"].post("/v1/events", content=json.dumps([target(agency, n)]),
                                                headers={**h(key), "Content-Type": BATCH})
                assert r.status_code == 202, r.text
            # dga: 30 + 12 in two cells, one lone older citizen at a walk-in office; rd: 2 young online.
            feedback = ([response("dga", "25_34", "online_web", 5) for _ in range(30)]
                        + [response("dga", "35_44", "mobile_app", 3) for _ in range(12)]
                        + [response("dga", "60_plus", "walk_in", 1)]
                        + [response("rd", "18_24", "online_web", 2) for _ in range(2)])
            await produce_events(kafka_bootstrap, topics.FEEDBACK_EVENTS, feedback)

            async def seeded():
                m = await http["roadmap"].get("/v1/milestones", headers=h(office))
                # The summary's figures are refreshed after the milestones are written, by a task of their own.
                s = await http["roadmap"].get("/v1/summary", headers=h(office))
                t = await http["training"].get("/v1/readiness", params={"fiscal_year": FY}, headers=h(office))
                f = await http["feedback"].get("/v1/experience", params=MARCH, headers=h(office))
                ok = (m.json()["total"] == 2 and s.json()["programme"]["total"] == 2 and len(t.json()["rows"]) == 2
                      and f.json()["overall"]["responses"] == 45)
                return ok or None

            await poll(seeded, 90, what="seed data visible to the programme office")

            # --- No key: 401; a survey key: 403 role_not_allowed, on every read route. Platform routes stay open.
            for path, (service, params) in READS.items():
                r = await http[service].get(path, params=params)
                assert r.status_code == 401 and r.json()["reason"] == "missing_api_key", path
                assert r.headers["content-type"].startswith("application/problem+json")
                r = await http[service].get(path, params=params, headers=h(kiosk))
                assert r.status_code == 403 and r.json()["reason"] == "role_not_allowed", (path, r.text)
                r = await http[service].get(path, params=params, headers={"Authorization": "Bearer nnk_dga_forged"})
                assert r.status_code == 401 and r.json()["reason"] == "invalid_api_key", path
                for key in (office, dga):
                    r = await http[service].get(path, params=params, headers=h(key))
                    assert r.status_code == 200, (path, r.text)
            for service in http:
                for path in OPEN:
                    assert (await http[service].get(path)).status_code == 200, (service, path)

            # --- A survey key writes only /v1/responses of its own agency.
            for service, client in http.items():
                r = await client.post("/v1/events", content=json.dumps([response("dga", "25_34", "online_web")]),
                                      headers={**h(kiosk), "Content-Type": BATCH})
                assert r.status_code == 403 and r.json()["reason"] == "role_not_allowed", (service, r.text)
            r = await http["training"].post("/xapi/statements", json={}, headers={**h(kiosk), "X-Experience-API-Version": "1.0.3"})
            assert r.status_code == 403 and r.json()["reason"] == "role_not_allowed"
            form = {k: v for k, v in response("dga", "45_59", "walk_in")["data"].items()}
            assert (await http["feedback"].post("/v1/responses", json=form, headers=h(kiosk))).status_code == 202
            other = {**form, "agency": "rd"}
            assert (await http["feedback"].post("/v1/responses", json=other, headers=h(kiosk))).status_code == 403

            # --- Roadmap: own milestones, another agency's by id is 404 exactly like a missing one.
            listed = (await http["roadmap"].get("/v1/milestones", headers=h(dga))).json()
            assert [m["milestone_id"] for m in listed["items"]] == ["M-DGA"] and listed["total"] == 1
            r = await http["roadmap"].get("/v1/milestones", params={"agency": "rd"}, headers=h(dga))
            assert r.status_code == 403 and r.json()["reason"] == "agency_not_allowed"
            hidden = await http["roadmap"].get("/v1/milestones/M-RD", headers=h(dga))
            missing = await http["roadmap"].get("/v1/milestones/M-NONE", headers=h(dga))
            assert hidden.status_code == missing.status_code == 404 and hidden.json()["reason"] == missing.json()["reason"]
            assert (await http["roadmap"].get("/v1/milestones/M-RD", headers=h(office))).status_code == 200
            office_list = (await http["roadmap"].get("/v1/milestones", params={"agency": "rd"}, headers=h(office))).json()
            assert [m["milestone_id"] for m in office_list["items"]] == ["M-RD"]
            summary = (await http["roadmap"].get("/v1/summary", headers=h(dga))).json()
            assert summary["programme"]["total"] == 2  # national figures
            assert {m["owner_agency"] for m in summary["next_due"]} == {"dga"} and summary["next_due_agency"] == "dga"
            office_summary = (await http["roadmap"].get("/v1/summary", headers=h(office))).json()
            assert {m["owner_agency"] for m in office_summary["next_due"]} == {"dga", "rd"}

            # --- Training: own rows and the national total; laggards show only the reader's own entry.
            ready = (await http["training"].get("/v1/readiness", params={"fiscal_year": FY}, headers=h(dga))).json()
            assert {row["agency"] for row in ready["rows"]} == {"dga"} and ready["agency"] == "dga"
            assert ready["total"]["target"] == 40 and ready["national"]["target"] == 50
            r = await http["training"].get("/v1/readiness", params={"fiscal_year": FY, "agency": "rd"}, headers=h(dga))
            assert r.status_code == 403 and r.json()["reason"] == "agency_not_allowed"
            lag = (await http["training"].get("/v1/readiness/laggards", params={"fiscal_year": FY}, headers=h(dga))).json()
            assert [a["agency"] for a in lag["agencies"]] == ["dga"] and lag["agencies_ranked"] == 2
            office_lag = (await http["training"].get("/v1/readiness/laggards", params={"fiscal_year": FY},
                                                     headers=h(office))).json()
            assert {a["agency"] for a in office_lag["agencies"]} == {"dga", "rd"}

            # --- Feedback: small cells suppressed for agency readers, complemented so the overall gives nothing away.
            async def dga_experience():
                body = (await http["feedback"].get("/v1/experience", params={**MARCH, "agency": "dga"}, headers=h(dga))).json()
                return body if body["overall"]["responses"] == 44 else None

            own = await poll(dga_experience, 60, what="kiosk response stored")  # 42 + the lone one + the kiosk's = 44
            cells = {(c["age_group"], c["channel"]): c for c in own["cells"]}
            assert cells[("45_59", "walk_in")]["suppressed"] is True  # the kiosk's lone response
            lone = cells[("60_plus", "walk_in")]
            assert lone["suppressed"] is True and lone["responses"] is None and lone["mean_satisfaction"] is None
            assert lone["satisfaction_levels"] is None
            assert cells[("25_34", "online_web")]["suppressed"] is False and cells[("25_34", "online_web")]["responses"] == 30
            hidden_total = own["overall"]["responses"] - sum(c["responses"] for c in own["cells"] if not c["suppressed"])
            assert hidden_total >= 10, "overall minus published cells must not single anyone out"
            assert own["suppression"]["applied"] and own["suppression"]["min_cell_responses"] == 10
            national = (await http["feedback"].get("/v1/experience", params=MARCH, headers=h(dga))).json()
            ncells = {(c["age_group"], c["channel"]): c for c in national["cells"]}
            assert ncells[("18_24", "online_web")]["suppressed"] is True  # rd's two citizens
            r = await http["feedback"].get("/v1/experience", params={**MARCH, "agency": "rd"}, headers=h(dga))
            assert r.status_code == 403 and r.json()["reason"] == "agency_not_allowed"
            r = await http["feedback"].get("/v1/experience/gaps", params={**MARCH, "agency": "rd"}, headers=h(dga))
            assert r.status_code == 403
            gaps = (await http["feedback"].get("/v1/experience/gaps", params={**MARCH, "agency": "dga"}, headers=h(dga))).json()
            assert gaps["suppression"]["applied"] and gaps["overall"]["suppressed"] is False
            everything = (await http["feedback"].get("/v1/experience", params={**MARCH, "agency": "dga"},
                                                     headers=h(office))).json()
            assert not any(c["suppressed"] for c in everything["cells"]) and not everything["suppression"]["applied"]
            assert {(c["age_group"], c["channel"]): c["responses"] for c in everything["cells"]}[("60_plus", "walk_in")] == 1
            assert {(c["age_group"], c["channel"]): c["responses"] for c in everything["cells"]}[("45_59", "walk_in")] == 1

            # --- Key life cycle through the CLI: list shows ids, roles and last use; revoke reaches every service in 10 s.
            point_cli_at(monkeypatch, settings)
            dga_id = key_id_of(hash_key(dga))

            async def used():
                keys = {k["key_id"]: k for k in await list_keys(db, "dga")}
                return keys if keys[dga_id]["last_used_at"] is not None else None

            listed_keys = await poll(used, 30, what="last_used_at recorded")
            assert listed_keys[key_id_of(hash_key(kiosk))]["role"] == "survey"
            capsys.readouterr()
            assert await asyncio.to_thread(cli.main, ["keys", "list", "--agency", "dga"]) == 0
            table = capsys.readouterr().out
            assert dga_id in table and "survey" in table and "KEY ID" in table and dga not in table

            assert await asyncio.to_thread(cli.main, ["keys", "revoke", dga_id]) == 0
            assert f"key {dga_id}" in capsys.readouterr().out
            revoked_at = time.monotonic()

            async def refused_everywhere():
                codes = [(await http[s].get(p, params=q, headers=h(dga))).status_code for p, (s, q) in READS.items()]
                return codes if set(codes) == {401} else None

            await poll(refused_everywhere, 10, what="revoked key refused by every service")
            assert time.monotonic() - revoked_at < 10
            assert (await http["roadmap"].get("/v1/milestones", headers=h(office))).status_code == 200  # others unaffected
            assert await asyncio.to_thread(cli.main, ["keys", "revoke", "0" * 12]) == 1

            # --- Expiry: a key created with a short life is refused once it has passed, cached or not.
            brief = await create_key(db, "rd", expires_in=timedelta(seconds=2))
            assert (await http["training"].get("/v1/readiness", params={"fiscal_year": FY}, headers=h(brief))).status_code == 200

            async def expired():
                r = await http["training"].get("/v1/readiness", params={"fiscal_year": FY}, headers=h(brief))
                return r if r.status_code == 401 else None

            assert (await poll(expired, 8, what="expired key refused")).json()["reason"] == "invalid_api_key"
            assert await asyncio.to_thread(cli.main, ["keys", "create", "--agency", "rd", "--expires-in", "soon"]) == 2
            capsys.readouterr()
            assert await asyncio.to_thread(cli.main, ["keys", "create", "--agency", "rd", "--role", "survey",
                                                      "--expires-in", "90d", "--label", "kiosk 3", "--json"]) == 0
            made = json.loads(capsys.readouterr().out)
            stored = await db.api_keys.find_one({"_id": hash_key(made["key"])})
            assert stored["role"] == "survey" and stored["label"] == "kiosk 3"
            life = stored["expires_at"] - stored["created_at"]
            assert life == timedelta(days=90)
    finally:
        await db.client.close()


async def test_local_stack_demo_keys_survey_keys_and_operator_keys_survive(settings_for, tmp_path):
    settings = settings_for(RoadmapSettings)
    db = db_of(settings)
    try:
        operator = await create_key(db, "dga", label="made by an operator")
        keys_file, survey_file = tmp_path / "api-keys.json", tmp_path / "survey-keys.json"
        survey = await _write_keys(settings.mongo_uri.get_secret_value(), settings.mongo_db, keys_file, survey_file)
        await _write_keys(settings.mongo_uri.get_secret_value(), settings.mongo_db, keys_file, survey_file)  # a restart
        assert json.loads(survey_file.read_text()) != survey  # fresh demo keys each start
        survey = json.loads(survey_file.read_text())
        agency_keys = json.loads(keys_file.read_text())
        assert oct(survey_file.stat().st_mode & 0o777) == "0o600" and oct(keys_file.stat().st_mode & 0o777) == "0o600"
        for code in ("dga", "rd"):
            doc = await db.api_keys.find_one({"_id": hash_key(survey[code])})
            assert doc["role"] == "survey" and doc["agency"] == code and not doc["revoked"]
            assert (await db.api_keys.find_one({"_id": hash_key(agency_keys[code])}))["role"] == "agency"
        assert (await db.api_keys.find_one({"_id": hash_key(agency_keys["programme_office"])}))["role"] == "programme_office"
        assert not (await db.api_keys.find_one({"_id": hash_key(operator)}))["revoked"]
        live_demo = await db.api_keys.count_documents({"agency": "dga", "label": "demo", "revoked": False})
        assert live_demo == 2  # one agency key and one survey key after two starts
    finally:
        await db.client.close()
