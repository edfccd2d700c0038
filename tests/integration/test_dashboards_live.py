"""Every dashboard panel's query returns sensible data from a real Prometheus scraping the real services.

The five services run as child processes (`newnormal run <service>`) on the test Tansu + SecantusDB;
Prometheus scrapes them every second and evaluates the committed recording rules. Realistic traffic goes
in through the services' own intakes in two waves (counters computed from the database need a first
scrape before an increase can be seen): milestones (one past due, one at risk, one completed), training
targets and completions, citizen feedback over every age group and channel, a poison record (dead
letter) and an Alertmanager alert for the notifier, which delivers to a small local webhook.
Then every panel target, with its template variables substituted as Grafana would, is run through
Prometheus' HTTP API and must return a non-empty, finite result inside the panel's min/max.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from support import cloudevent, make_key, poll, produce

from services.common import processes as px
from services.contracts import topics
from services.contracts.common_types import AgeGroup, Channel, Competency, TechDifficulty, Workstream
from services.contracts.thai_calendar import bangkok_day, fiscal_year_of
from services.contracts.webhooks import generate_secret
from services.dashboards.generate import render_all

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / ".data" / "test-logs" / "dashboards-live"
SERVICES = {"roadmap": 0, "training": 0, "feedback": 0, "notifier": 0, "reports": 0}
REPORTS_KEY: dict[str, str] = {}  # the programme-office key the reports service reads with (made by the fixture)
AGENCIES = ("dga", "ocsc", "dbd", "cgd")
BATCH = "application/cloudevents-batch+json"
# Grafana's built-in interval variables, at values that fit a test a few minutes long.
BUILTINS = {"$__rate_interval": "2m", "$__interval": "2m", "$__range": "15m"}
ALERTMANAGER_TOKEN = f"live-test-{uuid.uuid4().hex}"


class WebhookSink:
    """Receives the notifier's webhook deliveries and answers 200."""

    def __init__(self):
        self.received: list[bytes] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                sink.received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


async def prom_query(base: str, expr: str) -> list[dict]:
    """Instant query; raises AssertionError with Prometheus' message when the query is refused."""
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(f"{base}/api/v1/query", params={"query": expr})
    body = resp.json()
    assert body["status"] == "success", f"{body.get('errorType')}: {body.get('error')}"
    result = body["data"]["result"]
    if body["data"]["resultType"] == "scalar":
        return [{"metric": {}, "value": result}]
    return result


def substitute(expr: str, fiscal_year: int) -> str:
    for name, value in BUILTINS.items():
        expr = expr.replace(name, value)
    expr = expr.replace("$fiscal_year", str(fiscal_year))
    # Every other variable is multi-value with "All" = ".*", used with =~.
    return re.sub(r"\$(\w+)", ".*", expr)


async def _programme_office_key(mongo_uri: str, db_name: str) -> str:
    from pymongo import AsyncMongoClient

    from services.common.auth import Role, create_key

    client = AsyncMongoClient(mongo_uri)
    try:
        return await create_key(client[db_name], "opdc", Role.programme_office, "reports")
    finally:
        await client.close()


async def view_reports(port: int, fy: int, quarter: int) -> None:
    """What readers do: the overview, an agency page, a quarterly XLSX (the programme office's key). A client
    of its own: a connection pooled since the last wave may be closed by the server's keep-alive timeout."""
    async with httpx.AsyncClient(timeout=30) as client:
        await _view_reports(client, port, fy, quarter)


async def _view_reports(client: httpx.AsyncClient, port: int, fy: int, quarter: int) -> None:
    for path in ("/", "/agencies/dga"):
        resp = await client.get(f"http://127.0.0.1:{port}{path}")
        assert resp.status_code == 200, (path, resp.status_code)
    resp = await client.get(f"http://127.0.0.1:{port}/v1/reports/quarterly",
                            params={"fiscal_year": fy, "quarter": quarter, "format": "xlsx"},
                            headers={"X-API-Key": REPORTS_KEY["key"]}, timeout=120)
    assert resp.status_code == 200, resp.text[:300]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, mongo_uri, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboards-live")
    sink = WebhookSink()
    closed_port = px.free_port()  # nothing listens: deliveries there fail (the failure panels need data)
    routes = tmp / "routes.yaml"
    routes.write_text(
        "defaults:\n  reminder_interval: 24h\n"
        "recipients:\n"
        f"  ops-ok:\n    name: ok\n    webhook: {sink.url}\n"
        f"  ops-broken:\n    name: broken\n    webhook: http://127.0.0.1:{closed_port}/hook\n"
        "routes:\n"
        "  - name: everything\n    match: {type: [at_risk, missed, recovered, operational]}\n"
        "    recipients: [ops-ok, ops-broken]\n    channels: [webhook]\n", encoding="utf-8")
    db_name = f"t_live_{uuid.uuid4().hex[:10]}"
    env = {
        "NEWNORMAL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "NEWNORMAL_MONGO_URI": mongo_uri,
        "NEWNORMAL_MONGO_DB": db_name, "NEWNORMAL_HTTP_HOST": "127.0.0.1",
        "NEWNORMAL_KAFKA_CONSUMER_GROUP_PREFIX": f"live-{uuid.uuid4().hex[:6]}",
        "NEWNORMAL_KAFKA_SESSION_TIMEOUT_MS": "6000", "NEWNORMAL_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "NEWNORMAL_KAFKA_TOPIC_PARTITIONS": "2", "NEWNORMAL_METRICS_CACHE_SECONDS": "0",
        "NEWNORMAL_API_KEY_CACHE_SECONDS": "0", "NEWNORMAL_LOG_LEVEL": "WARNING",
        "NEWNORMAL_NOTIFIER_ROUTES_FILE": str(routes), "NEWNORMAL_NOTIFIER_MAX_ATTEMPTS": "2",
        "NEWNORMAL_NOTIFIER_WEBHOOK_SECRET": generate_secret(),  # webhooks are signed unless opted out
        "NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN": ALERTMANAGER_TOKEN,  # the receiver is always authenticated
        "NEWNORMAL_NOTIFIER_RETRY_BASE_SECONDS": "0.2", "NEWNORMAL_NOTIFIER_RETRY_MAX_SECONDS": "0.5",
        "NEWNORMAL_NOTIFIER_HTTP_TIMEOUT_SECONDS": "2",
        "NEWNORMAL_WATCHER_RESCAN_SECONDS": "2",
    }
    procs: list[px.ManagedProcess] = []
    ports = {name: px.free_port() for name in SERVICES}
    # The reports service reads the other three's APIs with a programme-office key; every view fetches anew
    # (no cache), so its fetch histograms move with the traffic.
    REPORTS_KEY["key"] = asyncio.run(_programme_office_key(mongo_uri, db_name))
    env.update({"NEWNORMAL_REPORTS_API_KEY": REPORTS_KEY["key"], "NEWNORMAL_REPORTS_CACHE_SECONDS": "0",
                "NEWNORMAL_REPORTS_REFRESH_AHEAD": "false",
                **{f"NEWNORMAL_{n.upper()}_URL": f"http://127.0.0.1:{ports[n]}" for n in ("roadmap", "training", "feedback")}})
    try:
        for name, port in ports.items():
            procs.append(px.service(name, port, env, LOGS).start())
        for proc, (name, port) in zip(procs, ports.items()):
            px.wait_until(lambda p=port: px.http_ok(f"http://127.0.0.1:{p}/readyz"), 120, name, proc=proc)

        prom_port = px.free_port()
        rule_files = sorted(str(p) for p in (ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
        config = tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "rule_files:\n" + "".join(f"  - {f}\n" for f in rule_files) + "scrape_configs:\n"
            + "".join(f"  - job_name: {name}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
                      for name, port in ports.items()), encoding="utf-8")
        prom = px.prometheus(prom_port, config, tmp / "prometheus-data", LOGS).start()
        procs.append(prom)
        px.wait_until(lambda: px.http_ok(f"http://127.0.0.1:{prom_port}/-/ready"), 60, "prometheus", proc=prom)
        yield {"ports": ports, "prometheus": f"http://127.0.0.1:{prom_port}", "env": env, "sink": sink,
               "kafka": kafka_bootstrap, "mongo_uri": mongo_uri, "db": db_name}
    finally:
        for proc in reversed(procs):
            proc.stop()
        sink.close()


class Traffic:
    """A small generator of realistic agency traffic, sent through the services' HTTP intakes."""

    def __init__(self, ports: dict[str, int], keys: dict[str, str], now: datetime):
        self.ports, self.keys, self.now = ports, keys, now
        self.rng = random.Random(7)
        self.fy = fiscal_year_of(now)
        self.today = bangkok_day(now)

    async def post(self, client: httpx.AsyncClient, service: str, agency: str, events: list[dict]) -> None:
        resp = await client.post(f"http://127.0.0.1:{self.ports[service]}/v1/events",
                                 content=json.dumps(events, ensure_ascii=False).encode(),
                                 headers={"Content-Type": BATCH, "X-API-Key": self.keys[agency]})
        assert resp.status_code == 202, (service, resp.status_code, resp.text)
        body = resp.json()
        assert not (body.get("rejected") or body.get("errors")), body

    def milestones(self) -> dict[str, list[dict]]:
        t = self.now
        past, soon, later = self.today - timedelta(days=3), self.today + timedelta(days=30), self.today + timedelta(days=120)

        def planned(mid: str, ws: Workstream, agency: str, due) -> dict:
            return cloudevent("roadmap.milestone.planned", {
                "milestone_id": mid, "title_th": f"หมุดหมาย {mid}", "title_en": f"Milestone {mid}",
                "workstream": ws.value, "owner_agency": agency, "due_date": due.isoformat()},
                agency=agency, time=(t - timedelta(days=60)).isoformat())

        def progressed(mid: str, agency: str, pct: float, when: datetime) -> dict:
            return cloudevent("roadmap.milestone.progressed", {"milestone_id": mid, "percent_complete": pct,
                                                                "as_of": when.isoformat()},
                              agency=agency, time=when.isoformat())

        return {
            "dga": [planned("LIVE-MISSED", Workstream.technology_access, "dga", past),
                    planned("LIVE-RISK", Workstream.technology_access, "dga", soon),
                    progressed("LIVE-RISK", "dga", 5, t - timedelta(days=30)),
                    progressed("LIVE-RISK", "dga", 10, t - timedelta(hours=1))],
            "ocsc": [planned("LIVE-PEOPLE", Workstream.personnel_readiness, "ocsc", later),
                     progressed("LIVE-PEOPLE", "ocsc", 50, t - timedelta(hours=1))],
            "dbd": [planned("LIVE-RULES", Workstream.regulation_reform, "dbd", later),
                    planned("LIVE-DONE", Workstream.public_awareness, "dbd", soon),
                    cloudevent("roadmap.milestone.completed", {"milestone_id": "LIVE-DONE",
                                                               "completed_on": self.today.isoformat()}, agency="dbd")],
            "cgd": [planned("LIVE-GOV", Workstream.roadmap_governance, "cgd", later)],
        }

    def targets(self) -> dict[str, list[dict]]:
        return {a: [cloudevent("training.target.set", {"agency": a, "competency": c.value, "fiscal_year": self.fy,
                                                       "headcount": 40}, agency=a) for c in Competency]
                for a in AGENCIES}

    def completions(self, per_agency: int) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for a in AGENCIES:
            out[a] = [cloudevent("training.course.completed", {
                "agency": a, "learner_ref": f"L-{uuid.uuid4().hex[:12]}", "course_id": f"C-{c.value}",
                "course_title": f"หลักสูตร {c.value}", "competency": c.value, "hours": 6,
                "completed_on": self.today.isoformat(), "passed": True, "score": 80},
                agency=a) for c in Competency for _ in range(per_agency)]
        return out

    def feedback(self, per_cell: int) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {a: [] for a in AGENCIES}
        older = {AgeGroup("60_plus")}
        for i, (age, channel) in enumerate((a, c) for a in AgeGroup for c in Channel):
            for _ in range(per_cell):
                agency = AGENCIES[i % len(AGENCIES)]
                severe = age in older and self.rng.random() < 0.6
                out[agency].append(cloudevent("feedback.response.submitted", {
                    "agency": agency, "service_name": "ยื่นคำขอออนไลน์", "channel": channel.value, "age_group": age.value,
                    "satisfaction": self.rng.randint(1, 3) if age in older else self.rng.randint(3, 5),
                    "tech_difficulty": (TechDifficulty("severe") if severe else self.rng.choice(list(TechDifficulty))).value,
                    "aware_of_digital_channels": self.rng.random() < 0.6,
                    "ease": self.rng.randint(1, 5), "trust": self.rng.randint(2, 5),  # the trust and ease panels
                    "submitted_at": self.now.isoformat()}, agency=agency))
        return out

    async def send(self, client: httpx.AsyncClient, service: str, by_agency: dict[str, list[dict]]) -> None:
        for agency, events in by_agency.items():
            for i in range(0, len(events), 200):
                await self.post(client, service, agency, events[i:i + 200])


def alertmanager_payload() -> dict:
    now = datetime.now(UTC).isoformat()
    return {"version": "4", "groupKey": "{}:{alertname=\"ConsumerLagHigh\"}", "truncatedAlerts": 0, "status": "firing",
            "receiver": "notifier", "groupLabels": {"alertname": "ConsumerLagHigh"},
            "commonLabels": {"alertname": "ConsumerLagHigh", "category": "operational", "severity": "warning",
                             "service": "feedback"},
            "commonAnnotations": {"summary": "คิวค้าง · Consumer lag high"}, "externalURL": "http://alertmanager:9093",
            "alerts": [{"status": "firing", "labels": {"alertname": "ConsumerLagHigh", "category": "operational",
                                                        "severity": "warning", "service": "feedback",
                                                        "topic": "feedback.events"},
                        "annotations": {"summary": "คิวค้าง · Consumer lag high",
                                        "runbook_url": "docs/runbooks.md#consumer-lag-high"},
                        "startsAt": now, "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus:9090/graph",
                        "fingerprint": uuid.uuid4().hex[:16]}]}


def panel_targets() -> list[tuple[str, dict, dict]]:
    out = []
    for board in render_all().values():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append((board["title"], panel, target))
    return out


async def check_panel(base: str, panel: dict, target: dict, fiscal_year: int) -> str | None:
    """None when the query shows sensible data, else why not."""
    expr = substitute(target["expr"], fiscal_year)
    try:
        result = await prom_query(base, expr)
    except AssertionError as exc:  # a query Prometheus refuses is a broken panel
        return f"query failed: {exc}"
    if not result:
        return "no data"
    values = [float(r["value"][1]) for r in result]
    if any(math.isnan(v) or math.isinf(v) for v in values):
        return f"non-finite values {values}"
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    low, high = defaults.get("min"), defaults.get("max")
    if low is not None and min(values) < low - 1e-9 or high is not None and max(values) > high + 1e-9:
        return f"values {values} outside [{low}, {high}]"
    return None


async def test_every_panel_shows_data(stack):
    base, ports = stack["prometheus"], stack["ports"]

    class _S:  # make_key wants settings-like access to the DB
        mongo_uri = type("U", (), {"get_secret_value": staticmethod(lambda: stack["mongo_uri"])})()
        mongo_db = stack["db"]

    keys = {a: await make_key(_S, a) for a in AGENCIES}
    now = datetime.now(UTC)
    traffic = Traffic(ports, keys, now)

    # Template variables resolve to real values (Grafana's label_values via the series API).
    async with httpx.AsyncClient(timeout=30) as client:
        # Wave 1: plan, targets, first completions and responses.
        for agency, events in traffic.milestones().items():
            await traffic.post(client, "roadmap", agency, events)
        await traffic.send(client, "training", traffic.targets())
        await traffic.send(client, "training", traffic.completions(per_agency=2))
        await traffic.send(client, "feedback", traffic.feedback(per_cell=2))

        def scraped(expr: str):
            async def check():
                return await prom_query(base, expr)
            return check

        await poll(scraped("newnormal_feedback_responses_total"), 60, 0.5, "feedback totals scraped")
        await poll(scraped("newnormal_training_ready_learners > 0"), 60, 0.5, "training readiness scraped")
        await poll(scraped('newnormal_roadmap_milestones{status="missed"} > 0'), 60, 0.5, "missed milestone scraped")
        quarter = (bangkok_day(now).month - 10) % 12 // 3 + 1  # Thai fiscal quarter: Q1 = October-December
        await view_reports(ports["reports"], traffic.fy, quarter)
        await poll(scraped("newnormal_reports_page_render_seconds_count > 0"), 60, 0.5, "reports pages scraped")
        await poll(scraped("newnormal_reports_quarterly_seconds_count > 0"), 60, 0.5, "quarterly document scraped")

        # Wave 2: more of the same, a poison record, an operational alert for the notifier.
        await traffic.send(client, "training", traffic.completions(per_agency=3))
        await traffic.send(client, "feedback", traffic.feedback(per_cell=3))
        # cgd reports on dga's milestone: accepted at the edge, refused by the roadmap's ownership rule.
        await traffic.post(client, "roadmap", "cgd", [cloudevent(
            "roadmap.milestone.progressed", {"milestone_id": "LIVE-RISK", "percent_complete": 90,
                                             "as_of": datetime.now(UTC).isoformat()}, agency="cgd")])
        await produce(stack["kafka"], topics.FEEDBACK_EVENTS,
                      [(b"dga", b"{not a cloudevent", [("content-type", b"application/cloudevents+json")])])
        # The delivery-time panels need a delivery counted after Prometheus saw the histogram at zero
        # (a rate needs an increase between two scrapes): wait for that first sample, then alert.
        await poll(scraped("newnormal_notifier_delivery_seconds_count"), 60, 0.5, "notifier histogram scraped")
        resp = await client.post(f"http://127.0.0.1:{ports['notifier']}/v1/alertmanager", json=alertmanager_payload(),
                                 headers={"Authorization": f"Bearer {ALERTMANAGER_TOKEN}"})
        assert resp.status_code < 300, resp.text
        await poll(scraped("increase(newnormal_notifier_delivery_seconds_count[2m]) > 0"), 60, 0.5,
                   "a delivery counted in the histogram")
        await view_reports(ports["reports"], traffic.fy, quarter)

    fy = traffic.fy
    targets = panel_targets()
    assert len(targets) >= 40

    # A panel passes once it has shown sensible data. Windowed panels (rates over 2 minutes) show an event only
    # for that long, so they are not required to still show it when the slowest panel has settled.
    failing: dict[str, str] = {}
    shown: set[str] = set()

    async def every_panel_has_shown_data():
        for title, panel, target in targets:
            name = f"{title} / {panel['title']} [{target['refId']}]"
            if name in shown:
                continue
            why = await check_panel(base, panel, target, fy)
            if why:
                failing[name] = why
            else:
                shown.add(name)
                failing.pop(name, None)
        return not failing

    try:
        await poll(every_panel_has_shown_data, 90, 2.0, "every panel has data")
    except AssertionError:
        pass
    assert not failing, "panels without sensible data:\n" + "\n".join(f"  {k}: {v}" for k, v in failing.items()) + \
        f"\n(logs in {LOGS})"

    # Variables: each label_values() query has values; the fiscal year of the data is offered.
    for board in render_all().values():
        for var in board.get("templating", {}).get("list", []):
            m = re.fullmatch(r"label_values\((\w+), (\w+)\)", var["query"]["query"])
            assert m, var
            async with httpx.AsyncClient(timeout=10) as client:
                resp = await client.get(f"{base}/api/v1/label/{m.group(2)}/values", params={"match[]": m.group(1)})
            values = resp.json()["data"]
            assert values, f"variable {var['name']} of {board['title']} has no values"
            if var["name"] == "fiscal_year":
                assert str(fy) in values

    # A few figures that must be right, not merely present.
    assert await prom_query(base, 'workstream:newnormal_roadmap_milestone_overdue_days:max{workstream="technology_access"} >= 3')
    assert await prom_query(base, 'workstream_status:newnormal_roadmap_milestones:max{status="at_risk"} > 0')
    older = await prom_query(base, substitute('age_group:newnormal_feedback_satisfaction:mean7d{age_group="60_plus"}', fy))
    younger = await prom_query(base, substitute('age_group:newnormal_feedback_satisfaction:mean7d{age_group="25_34"}', fy))
    assert older and younger and float(older[0]["value"][1]) < 3.0 < float(younger[0]["value"][1])
    assert stack["sink"].received, "the notifier delivered to the webhook"

    # The committed alert rules see the same metrics: the dead letter fires at once (no `for`), the missed
    # and at-risk milestones are pending with the labels Alertmanager routes and inhibits on.
    async def alerts():
        got = {(a["metric"]["alertname"], a["metric"]["alertstate"], a["metric"].get("service"),
                a["metric"].get("workstream", a["metric"].get("topic")))
               for a in await prom_query(base, "ALERTS")}
        wanted = {("DeadLetterRecords", "firing", "feedback", topics.FEEDBACK_EVENTS),
                  ("DeadLetterRecords", "firing", "roadmap", topics.ROADMAP_EVENTS),
                  ("MilestoneMissed", "pending", "roadmap", "technology_access"),
                  ("MilestoneAtRisk", "pending", "roadmap", "technology_access")}
        return wanted <= got or None

    await poll(alerts, 30, 1.0, "alert rules evaluated on the live metrics")
    assert not await prom_query(base, 'ALERTS{alertname="ServiceDown"}'), "all four services are up"
