"""The same mistake gets the same answer (status and `reason`) in every service, over the real broker and database.

All five services run in this process against one database (one key store). Each mistake is walked over every
route where a client can make it: reads with no key, a wrong key, a survey key, another agency, an agency code
the registry does not hold, an invalid parameter; writes with no key, an over-limit body, a body that is not
JSON, another agency's or an unknown agency's data, invalid JSON. A service answering differently fails here.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json

import pytest
from support import cloudevent, make_key, running

from services.common import processes as px
from services.feedback.main import create_app as feedback_app
from services.feedback.settings import FeedbackSettings
from services.notifier.main import create_app as notifier_app
from services.notifier.settings import NotifierSettings
from services.reports.main import create_app as reports_app
from services.reports.settings import ReportsSettings
from services.roadmap.main import create_app as roadmap_app
from services.roadmap.settings import RoadmapSettings
from services.training.main import create_app as training_app
from services.training.settings import TrainingSettings

pytestmark = pytest.mark.integration
BATCH = "application/cloudevents-batch+json"
ALERTMANAGER_TOKEN = "consistent-errors-alertmanager-credential"
XAPI = {"X-Experience-API-Version": "1.0.3"}
UNKNOWN_KEY = "nnk_dga_" + "A" * 43  # the shape of a key, issued to nobody

# Every keyed read route that takes an `agency` filter: (service, path, a valid query, an invalid parameter).
READS = [
    ("roadmap", "/v1/milestones", {}, {"limit": "0"}),
    ("training", "/v1/readiness", {"fiscal_year": "2569"}, {"fiscal_year": "next"}),
    ("feedback", "/v1/experience", {"from": "2026-03-01", "to": "2026-03-31"}, {"from": "2026-02-30"}),
    ("notifier", "/v1/notifications", {}, {"limit": "0"}),
    ("reports", "/v1/reports/quarterly", {"fiscal_year": "2569", "quarter": "1"}, {"quarter": "first"}),
]
# Every keyed read route without a filter (the key checks only).
PLAIN_READS = [("roadmap", "/v1/summary", {}), ("training", "/v1/readiness/laggards", {"fiscal_year": "2569"}),
               ("feedback", "/v1/experience/gaps", {})]
# Every keyed JSON POST route: (service, path, extra headers). /v1/events in each producing service.
WRITES = [
    ("roadmap", "/v1/events", {"Content-Type": BATCH}),
    ("training", "/v1/events", {"Content-Type": BATCH}),
    ("feedback", "/v1/events", {"Content-Type": BATCH}),
    ("feedback", "/v1/responses", {"Content-Type": "application/json"}),
    ("training", "/xapi/statements", {**XAPI, "Content-Type": "application/json"}),
    ("notifier", "/v1/test-notification", {"Content-Type": "application/json"}),
]


def milestone(agency: str) -> dict:
    return cloudevent("roadmap.milestone.planned", {
        "milestone_id": f"M-{agency}", "title_th": "หมุดหมาย", "title_en": "Milestone", "workstream": "technology_access",
        "owner_agency": agency, "due_date": "2026-12-31", "weight": 1, "depends_on": []}, agency=agency)


def target(agency: str) -> dict:
    return cloudevent("training.target.set", {"agency": agency, "competency": "mindset", "fiscal_year": 2569,
                                              "headcount": 10}, agency=agency)


def response(agency: str) -> dict:
    return cloudevent("feedback.response.submitted", {
        "agency": agency, "service_name": "ต่ออายุใบอนุญาต", "channel": "walk_in", "age_group": "25_34",
        "satisfaction": 4, "tech_difficulty": "none", "aware_of_digital_channels": True,
        "submitted_at": "2026-03-15T09:30:00+07:00"}, agency=agency, source=f"/agencies/{agency}/kiosk")


EVENTS = {"roadmap": milestone, "training": target, "feedback": response}


def form(agency: str) -> dict:
    return {"agency": agency, "service_name": "ต่ออายุใบอนุญาต", "channel": "walk_in", "age_group": "25_34",
            "satisfaction": 4, "tech_difficulty": "none", "aware_of_digital_channels": True,
            "submitted_at": "2026-03-15T09:30:00+07:00"}


@pytest.fixture
async def stack(settings_for):
    """The five services on one database, and keys: programme office, two agencies, a survey key."""
    async with contextlib.AsyncExitStack() as exits:
        settings = settings_for(RoadmapSettings, watcher_enabled=False)
        keys = {"office": await make_key(settings, "opdc", "programme_office"), "dga": await make_key(settings, "dga"),
                "rd": await make_key(settings, "rd"), "survey": await make_key(settings, "dga", "survey")}
        apps = {
            "roadmap": roadmap_app(settings),
            "training": training_app(settings_for(TrainingSettings, learner_hmac_secret="consistent-errors-secret")),
            "feedback": feedback_app(settings_for(FeedbackSettings)),
            "notifier": notifier_app(settings_for(
                NotifierSettings, notifier_alertmanager_token=ALERTMANAGER_TOKEN, notifier_smtp_port=px.free_port(),
                notifier_webhook_secret="whsec_" + base64.b64encode(b"consistent-errors-webhook-secret").decode())),
            # The upstream read APIs are never reached: every answer here is refused before a fetch.
            "reports": reports_app(settings_for(ReportsSettings, reports_api_key=keys["office"],
                                                roadmap_url="http://127.0.0.1:9", training_url="http://127.0.0.1:9",
                                                feedback_url="http://127.0.0.1:9")),
        }
        clients = {name: await exits.enter_async_context(running(app)) for name, app in apps.items()}
        yield clients, keys


def same(answers: dict[str, object], status: int, reason: str | None) -> None:
    """Every answer has `status` and (when given) `reason`, as problem+json; the failure names the odd ones."""
    odd = {}
    for where, resp in answers.items():
        got = (resp.status_code, resp.json().get("reason") if "json" in resp.headers.get("content-type", "") else None)
        if got[0] != status or (reason is not None and got[1] != reason):
            odd[where] = got
        elif reason is not None:
            assert resp.headers["content-type"].startswith("application/problem+json"), where
    assert not odd, f"expected {status} {reason} everywhere; differs: {odd}"


async def test_every_service_answers_the_same_mistake_the_same_way(stack):
    http, keys = stack

    async def reads(query_of, key: str | None, routes=READS):
        headers = {"X-API-Key": key} if key else {}
        return {f"{svc} {path}": await http[svc].get(path, params=query_of(route), headers=headers)
                for route in routes for svc, path, *_ in [route]}

    # --- reads: the key checks and the agency filter
    for routes in (READS, PLAIN_READS):
        same(await reads(lambda r: r[2], None, routes), 401, "missing_api_key")
        same(await reads(lambda r: r[2], UNKNOWN_KEY, routes), 401, "invalid_api_key")
        same(await reads(lambda r: r[2], keys["survey"], routes), 403, "role_not_allowed")
    same(await reads(lambda r: {**r[2], "agency": "rd"}, keys["dga"]), 403, "agency_not_allowed")
    same(await reads(lambda r: {**r[2], "agency": "atlantis"}, keys["office"]), 400, "unknown_agency")
    same(await reads(lambda r: {**r[2], "agency": "atlantis"}, keys["dga"]), 400, "unknown_agency")
    same(await reads(lambda r: {**r[2], **r[3]}, keys["office"]), 400, "invalid_request")
    # Every integer query parameter of every document: its bounds published as JSON Schema says them, and its value
    # ASCII digits (int() would read "1_000", " 5" and "+5"), refused with the parameter named.
    checked = []
    for svc, client in http.items():
        spec = (await client.get("/openapi.json")).json()
        for path, ops in spec["paths"].items():
            params = ops.get("get", {}).get("parameters", [])
            ints = [q for q in params if q["in"] == "query" and q.get("schema", {}).get("type") == "integer"]
            if "{" in path or not ints:
                continue
            base = {q["name"]: str(q["schema"].get("minimum", 1)) for q in ints if q.get("required")}
            for q in ints:
                assert not {"ge", "le", "gt", "lt"} & set(q["schema"]), (svc, path, q)
                r = await client.get(path, params={**base, q["name"]: "1_000"}, headers={"X-API-Key": keys["office"], **XAPI})
                body = r.json()
                named = [e["field"] for e in body.get("errors", [])] == [f"query.{q['name']}"] or (
                    body["reason"] == "invalid_parameter" and body["detail"].startswith(q["name"]))  # xAPI's own words
                assert r.status_code == 400 and named, (svc, path, q["name"], r.text)
                checked.append(f"{svc} {path} {q['name']}")
    assert len(checked) >= 10, checked  # limits, offsets, fiscal years, quarters of the five services
    # A Buddhist-era year in a date filter: the wire's one date rule, as in an event's body (it was answered 200, with
    # no data or all of it); past the rule's last year, out of range.
    office, xapi = {"X-API-Key": keys["office"]}, {"X-API-Key": keys["office"], "X-Experience-API-Version": "1.0.3"}
    for year, reason in (("2569", "buddhist_era_date"), ("2899", "date_out_of_range")):
        same({"roadmap due_before": await http["roadmap"].get("/v1/milestones", params={"due_before": f"{year}-01-01"},
                                                              headers=office),
              "roadmap at": await http["roadmap"].get("/v1/overview", params={"at": f"{year}-01-01"}, headers=office),
              "feedback from": await http["feedback"].get("/v1/experience", params={"from": f"{year}-01-01"},
                                                          headers=office),
              "xapi since": await http["training"].get("/xapi/statements", params={"since": f"{year}-01-01T00:00:00Z"},
                                                       headers=xapi)}, 400, reason)
    # A parameter the route does not take (misspelt, or a filter it has not) is refused, not ignored: ignored, it
    # would answer with other data than asked for (an agency key's own summary for `?agency=rd`).
    for routes in (READS, PLAIN_READS):
        same(await reads(lambda r: {**r[2], "agnecy": "rd"}, keys["dga"], routes), 400, "unknown_parameter")
    same({"roadmap /v1/summary": await http["roadmap"].get("/v1/summary", params={"agency": "rd"},
                                                           headers={"X-API-Key": keys["dga"]})}, 400, "unknown_parameter")

    # A parameter that takes one value, given twice (`?agency=rd&agency=dga`): the route would take the last, a
    # proxy, a cache or an audit log the first. Refused, whichever values; a repeatable one (`at`) is fine.
    twice = {f"{svc} {path}": await http[svc].get(path, headers={"X-API-Key": keys["dga"]},
                                                  params=[*query.items(), ("agency", "rd"), ("agency", "dga")])
             for svc, path, query, _ in READS}
    twice["training /v1/readiness/laggards"] = await http["training"].get(
        "/v1/readiness/laggards", headers={"X-API-Key": keys["dga"]},
        params=[("fiscal_year", "2569"), ("fiscal_year", "2570")])
    same(twice, 400, "repeated_parameter")
    assert all("agency is given more than once" in r.json()["detail"] for k, r in twice.items() if "laggards" not in k)
    repeatable = await http["roadmap"].get("/v1/overview", headers={"X-API-Key": keys["dga"]},
                                           params=[("at", "2026-03-01"), ("at", "2026-04-01")])
    assert repeatable.status_code == 200, repeatable.text

    # --- an agency named in a path that the registry does not hold: 404 (reports answers with its HTML page)
    path_answers = {"feedback": await http["feedback"].get("/survey/atlantis"),
                    "reports": await http["reports"].get("/agencies/atlantis")}
    same({"feedback": path_answers["feedback"]}, 404, "unknown_agency")
    same(path_answers, 404, None)

    # --- writes: key, size, media type, JSON
    async def writes(body: bytes, key: str | None, content_type: str | None = None, routes=WRITES):
        out = {}
        for svc, path, headers in routes:
            headers = {**headers, **({"X-API-Key": key} if key else {})}
            if content_type is not None:
                headers["Content-Type"] = content_type
            out[f"{svc} {path}"] = await http[svc].post(path, content=body, headers=headers)
        return out

    same(await writes(b"[]", None), 401, "missing_api_key")
    same(await writes(b"[]", UNKNOWN_KEY), 401, "invalid_api_key")
    # Two keys in one request (a key header twice, or X-API-Key and Bearer naming different keys): which one
    # counts must never be the server's choice. Refused on every keyed route, before a body is read.
    for credentials in ([("X-API-Key", keys["dga"]), ("X-API-Key", keys["rd"])],
                        [("X-API-Key", keys["dga"]), ("Authorization", f"Bearer {keys['rd']}")],
                        [("Authorization", f"Bearer {keys['dga']}"), ("Authorization", f"Bearer {keys['dga']}")]):
        same({f"{svc} {path}": await http[svc].get(path, params=query, headers=credentials)
              for svc, path, query, *_ in READS + PLAIN_READS}, 400, "ambiguous_credentials")
        same({f"{svc} {path}": await http[svc].post(path, content=b"[]", headers=[*headers.items(), *credentials])
              for svc, path, headers in WRITES}, 400, "ambiguous_credentials")
    alertmanager_twice = await http["notifier"].post("/v1/alertmanager", content=b"{}", headers=[
        ("Content-Type", "application/json"), ("Authorization", f"Bearer {ALERTMANAGER_TOKEN}"),
        ("Authorization", "Bearer another")])
    same({"notifier /v1/alertmanager": alertmanager_twice}, 400, "ambiguous_credentials")
    # The same key both ways is one credential.
    same({"feedback /v1/experience/gaps": await http["feedback"].get("/v1/experience/gaps", headers=[
        ("X-API-Key", "nnk_dga_" + "B" * 43), ("Authorization", "Bearer nnk_dga_" + "B" * 43)])}, 401, "invalid_api_key")
    same(await writes(b"[" + b" " * (2 << 20) + b"]", keys["office"]), 413, "request_too_large")
    same(await writes(b"{}", keys["office"], "text/plain"), 415, "unsupported_media_type")
    same(await writes(b"{nope", keys["office"]), 400, "invalid_json")
    # A compressed body is refused unread, saying so (read as it is, it was "not UTF-8").
    gzipped = [(svc, path, {**headers, "Content-Encoding": "gzip"}) for svc, path, headers in WRITES]
    compressed = await writes(gzip.compress(b"[]"), keys["office"], routes=gzipped)
    same(compressed, 415, "unsupported_content_encoding")
    assert all(r.headers["accept-encoding"] == "identity" for r in compressed.values())
    # What RFC 8259 leaves to the reader is refused, never stored or answered with a 500: NaN and infinities
    # (our answers would then not be JSON), integers past Python's 4,300 digits, and unpaired surrogates (no
    # UTF-8 encoder, BSON's included, can write them; a survey form with one was a 500).
    # And a name twice in one object (which one counts is the reader's choice: another reader of the topic could
    # take the agency we did not).
    for body in (b'[{"a": NaN}]', b'[{"a": -Infinity}]', b'[{"a": 1e400}]', b'[{"a": 1' + b"0" * 5000 + b"}]",
                 b'{"a": "\\ud800"}', '{"a": "\ud800"}'.encode("utf-8", "surrogatepass"), b'[{"a": 1, "a": 2}]'):
        answers = await writes(body, keys["office"])
        if body.startswith(b"{"):  # a batch must be an array: its own reason comes first there
            answers = {k: v for k, v in answers.items() if not k.endswith("/v1/events")}
        if len(body) > 4096:  # the test-notification's size limit comes first there
            answers.pop("notifier /v1/test-notification")
        same(answers, 400, "invalid_json")
        assert all("JSON number" in r.json()["detail"] or "double" in r.json()["detail"] or "digits" in
                   r.json()["detail"] or "surrogate" in r.json()["detail"] or "same name twice" in r.json()["detail"]
                   for r in answers.values())
    unpaired = {"feedback /v1/responses": await http["feedback"].post(
        "/v1/responses", content=json.dumps({**form("dga"), "comment": "a\ud800b"}),
        headers={"X-API-Key": keys["dga"], "Content-Type": "application/json"})}
    for svc in EVENTS:  # in a batch, the event holding one is refused alone; its neighbours are accepted
        good, made = json.dumps(EVENTS[svc]("dga")), {**EVENTS[svc]("dga"), "id": "odd"}
        odd = [json.dumps({**made, "subject": "x\udc00"}), json.dumps(made)[:-1] + ', "subject": NaN}',
               json.dumps(made)[:-1] + ', "source": "/agencies/rd/x"}']
        r = await http[svc].post("/v1/events", content=f"[{good}, {', '.join(odd)}]",
                                 headers={"Content-Type": BATCH, "X-API-Key": keys["dga"]})
        assert r.status_code == 202, r.text
        assert [a["index"] for a in r.json()["accepted"]] == [0], r.text
        assert [(e["index"], e["reason"], e.get("id")) for e in r.json()["rejected"]] == [
            (i, "invalid_json", "odd") for i in (1, 2, 3)], r.text
    same(unpaired, 400, "invalid_json")
    alertmanager = {"Authorization": f"Bearer {ALERTMANAGER_TOKEN}"}
    same({"notifier /v1/alertmanager": await http["notifier"].post(
        "/v1/alertmanager", content=b"{}", headers={**alertmanager, "Content-Type": "text/plain"})},
        415, "unsupported_media_type")

    # --- data of another agency, of an agency nobody registered, or a role that may not send it
    async def events(make, key: str):
        return {f"{svc} /v1/events": await http[svc].post("/v1/events", content=json.dumps([make(svc)]),
                                                          headers={"Content-Type": BATCH, "X-API-Key": key})
                for svc in EVENTS}

    other = await events(lambda svc: EVENTS[svc]("rd"), keys["dga"])
    other["feedback /v1/responses"] = await http["feedback"].post("/v1/responses", json=form("rd"),
                                                                  headers={"X-API-Key": keys["dga"]})
    same(other, 403, "agency_not_allowed")

    def unknown(svc: str) -> dict:
        event = EVENTS[svc]("dga")
        return {**event, "agency": "atlantis", "source": "/agencies/atlantis/x"}

    nowhere = await events(unknown, keys["dga"])
    nowhere["feedback /v1/responses"] = await http["feedback"].post("/v1/responses", json=form("atlantis"),
                                                                    headers={"X-API-Key": keys["dga"]})
    same(nowhere, 400, "unknown_agency")

    survey = await events(lambda svc: EVENTS[svc]("dga"), keys["survey"])
    survey.pop("feedback /v1/events")  # a survey key's own job: citizen responses
    survey["notifier /v1/test-notification"] = await http["notifier"].post(
        "/v1/test-notification", json={"route": "x"}, headers={"X-API-Key": keys["survey"]})
    same(survey, 403, "role_not_allowed")
