"""The programme overview as a person sees it: a real headless Chromium on the live stack.

roadmap, training and feedback run as child processes (`newnormal run`) on the test Tansu + SecantusDB; the
agency simulator (`newnormal simulate`) sends them a plan, targets, training history and citizen feedback
through their HTTP intakes; the reports service runs with its own programme-office key and no answer cache,
so once the data has settled the page must show exactly what the read APIs say. Debian's chromium, driven by
Playwright, opens the overview and an agency page without any key, reads the figures by their data-*
attributes, compares them with the APIs and saves screenshots at 390x844 and 1440x900 into
.data/test-output/reports/.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from support import poll

from services.common import processes as px
from services.common.disclosure import plan_counts
from services.contracts.thai_calendar import BANGKOK
from services.localstack import _write_keys, _write_reports_key
from services.reports.domain import quarter_of

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / ".data" / "test-logs" / "reports-overview"
OUT = ROOT / ".data" / "test-output" / "reports"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORTS = ((390, 844), (1440, 900))
MIN_CELL = 10


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, mongo_uri, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reports-overview")
    db_name = f"t_reports_{uuid.uuid4().hex[:10]}"
    env = {
        "NEWNORMAL_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "NEWNORMAL_MONGO_URI": mongo_uri,
        "NEWNORMAL_MONGO_DB": db_name, "NEWNORMAL_HTTP_HOST": "127.0.0.1",
        "NEWNORMAL_KAFKA_CONSUMER_GROUP_PREFIX": f"rep-{uuid.uuid4().hex[:6]}",
        "NEWNORMAL_KAFKA_SESSION_TIMEOUT_MS": "6000", "NEWNORMAL_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "NEWNORMAL_KAFKA_TOPIC_PARTITIONS": "2", "NEWNORMAL_API_KEY_CACHE_SECONDS": "0",
        "NEWNORMAL_LOG_LEVEL": "WARNING", "NEWNORMAL_STATS_REFRESH_SECONDS": "1",
    }
    ports = {name: px.free_port() for name in ("roadmap", "training", "feedback", "notifier", "reports")}
    for name in ("roadmap", "training", "feedback", "notifier"):
        env[f"NEWNORMAL_{name.upper()}_URL"] = f"http://127.0.0.1:{ports[name]}"
    # The notifier answers the quarterly report's acknowledgement section. Its own consumer groups and no routes
    # (nothing to deliver): test_reports_quarterly_live.py starts the notifier that e-mails the report.
    routes = tmp / "routes.yaml"
    routes.write_text("recipients: {}\nroutes: []\n", encoding="utf-8")
    notifier_env = {**env, "NEWNORMAL_KAFKA_CONSUMER_GROUP_PREFIX": f"rep-ntf-{uuid.uuid4().hex[:6]}",
                    "NEWNORMAL_NOTIFIER_ROUTES_FILE": str(routes), "NEWNORMAL_NOTIFIER_SMTP_PORT": str(px.free_port())}
    procs: list[px.ManagedProcess] = []
    try:
        for name in ("roadmap", "training", "feedback"):
            procs.append(px.service(name, ports[name], env, LOGS).start())
        procs.append(px.service("notifier", ports["notifier"], notifier_env, LOGS).start())
        for proc, name in zip(procs, ("roadmap", "training", "feedback", "notifier"), strict=True):
            px.wait_until(lambda p=ports[name]: px.http_ok(f"http://127.0.0.1:{p}/readyz"), 120, name, proc=proc)
        keys_path = tmp / "api-keys.json"
        asyncio.run(_write_keys(mongo_uri, db_name, keys_path, tmp / "survey-keys.json"))
        reports_key = tmp / "reports-api-key"
        asyncio.run(_write_reports_key(mongo_uri, db_name, reports_key))
        # Simulated agencies: the plan, targets, training history, then a day of live traffic squeezed into 25 s.
        sim = px.ManagedProcess("simulator", [sys.executable, "-m", "services.cli", "simulate", "--duration", "25",
                                              "--rate", "300", "--speedup", "3456", "--kafka-share", "0",
                                              "--training-history", "800", "--keys", str(keys_path)],
                                LOGS / "simulator.log", env=env).start()
        procs.append(sim)
        px.wait_until(lambda: not sim.running, 240, "simulator run", interval=0.5)
        procs.append(px.service("reports", ports["reports"], {
            **env, "NEWNORMAL_REPORTS_API_KEY_FILE": str(reports_key), "NEWNORMAL_REPORTS_CACHE_SECONDS": "0",
            "NEWNORMAL_FEEDBACK_MIN_PUBLISHED_CELL": str(MIN_CELL)}, LOGS).start())
        px.wait_until(lambda: px.http_ok(f"http://127.0.0.1:{ports['reports']}/readyz"), 120, "reports", proc=procs[-1])
        keys = json.loads(keys_path.read_text(encoding="utf-8"))
        # env, tmp, the reports key file and survey keys: test_reports_quarterly_live.py starts more processes on this stack.
        yield {"ports": ports, "po_key": keys["programme_office"], "keys": keys, "env": env, "tmp": tmp,
               "reports_key_file": reports_key,
               "survey_keys": json.loads((tmp / "survey-keys.json").read_text(encoding="utf-8"))}
    finally:
        for proc in reversed(procs):
            proc.stop()


def api(stack, service: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack['ports'][service]}", timeout=30,
                             headers={"X-API-Key": stack["po_key"]})


async def settled(stack) -> dict:
    """Wait until the consumers have stored everything the simulator sent: no consumer behind its partitions'
    ends, and three equal readings in a row (a loaded 2-core machine pauses a consumer for seconds)."""
    today = datetime.now(BANGKOK).date()
    q = quarter_of(today)
    params = {"from": q.start.isoformat(), "to": today.isoformat()}
    previous: list = [None]
    agreed = [0]

    async def reading():
        async with api(stack, "feedback") as fb, api(stack, "training") as tr, api(stack, "roadmap") as rm:
            lag = 0.0
            for client in (fb, tr, rm):
                for line in (await client.get("/metrics")).text.splitlines():
                    if line.startswith("newnormal_consumer_lag_records{"):
                        lag += float(line.rsplit(" ", 1)[1])
            exp = (await fb.get("/v1/experience", params=params)).json()
            ready = (await tr.get("/v1/readiness", params={"fiscal_year": q.fiscal_year})).json()
            ms = (await rm.get("/v1/milestones", params={"limit": 1})).json()["total"]
            summary = (await rm.get("/v1/summary")).json()
        now = (exp["overall"]["responses"], sum(r["ready_learners"] for r in ready["rows"]), ms,
               json.dumps(summary["programme"]["counts"], sort_keys=True))
        same = now == previous[0] and now[0] > 0 and now[2] > 0 and lag == 0
        agreed[0] = agreed[0] + 1 if same else 0
        previous[0] = now
        return agreed[0] >= 2

    # Settled: three readings 2 s apart agree with no consumer lag (the poll's interval is the window).
    await poll(reading, timeout=120, interval=2.0, what="stored figures settled")
    return {"quarter": q, "params": params}


async def figures_in(page) -> dict[str, str]:
    return await page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('[data-figure][data-value]')]
                                    .map(e => [e.dataset.figure, e.dataset.value]))""")


async def heat_cells(page, measure: str) -> dict[str, dict]:
    return await page.evaluate("""(m) => Object.fromEntries([...document.querySelectorAll(`svg[data-measure="${m}"] [data-cell]`)]
                                  .map(e => [e.dataset.cell, {...e.dataset}]))""", measure)


async def test_overview_and_agency_page_in_a_browser_show_the_apis_figures(stack):
    from playwright.async_api import async_playwright

    ctx = await settled(stack)
    q, params = ctx["quarter"], ctx["params"]
    base = f"http://127.0.0.1:{stack['ports']['reports']}"
    async with api(stack, "feedback") as fb, api(stack, "training") as tr, api(stack, "roadmap") as rm:
        exp = (await fb.get("/v1/experience", params=params)).json()
        readiness = (await tr.get("/v1/readiness", params={"fiscal_year": q.fiscal_year})).json()
        laggards = (await tr.get("/v1/readiness/laggards", params={"fiscal_year": q.fiscal_year, "limit": 5})).json()
        missed = (await rm.get("/v1/milestones", params={"status": "missed", "limit": 1})).json()["total"]
        at_risk = (await rm.get("/v1/milestones", params={"status": "at_risk", "limit": 1})).json()["total"]
        total = (await rm.get("/v1/milestones", params={"limit": 1})).json()["total"]
        agency = laggards["agencies"][0]["agency"]
        agency_ready = (await tr.get("/v1/readiness", params={"fiscal_year": q.fiscal_year, "agency": agency})).json()
        agency_total = (await rm.get("/v1/milestones", params={"agency": agency, "limit": 1})).json()["total"]
    OUT.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for width, height in VIEWPORTS:
                page = await browser.new_page(viewport={"width": width, "height": height})
                # No key anywhere: the overview is the public transparency view.
                response = await page.goto(base + "/")
                assert response.status == 200
                await page.screenshot(path=str(OUT / f"overview-{width}x{height}.png"), full_page=True)
                assert await page.evaluate("document.documentElement.scrollWidth") <= width, "no sideways page scroll"
                font = await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
                assert font >= 16
                f = await figures_in(page)
                assert float(f["access-share-satisfied"]) == exp["overall"]["share_satisfied"]
                assert int(f["access-responses"]) == exp["overall"]["responses"]
                assert int(f["readiness-ready"]) == sum(r["ready_learners"] for r in readiness["rows"])
                assert int(f["readiness-target"]) == sum(r["target"] for r in readiness["rows"])
                assert (int(f["roadmap-missed"]), int(f["roadmap-at-risk"]), int(f["roadmap-total"])) == (missed, at_risk, total)
                # Every heat-map cell: the API's figure, or hidden exactly where the agency readers' rule hides it.
                plan = plan_counts({(c["age_group"], c["channel"]): c["responses"] for c in exp["cells"]}, MIN_CELL)
                cells = await heat_cells(page, "mean_satisfaction")
                for c in exp["cells"]:
                    shown = cells[f"{c['age_group']}|{c['channel']}"]
                    if (c["age_group"], c["channel"]) in plan.cells:
                        assert shown.get("suppressed") == "true" and "value" not in shown
                    else:
                        assert float(shown["value"]) == c["mean_satisfaction"] and int(shown["responses"]) == c["responses"]
                laggard_rows = await page.eval_on_selector_all("[data-laggard]", "rs => rs.map(r => r.dataset.laggard)")
                assert laggard_rows == [a["agency"] for a in laggards["agencies"]]
                text = await page.inner_text("body")
                assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", text) and not re.search(r"\b\d{13}\b", text)
                assert "ไตรมาส" in text and str(q.fiscal_year) in text

                page = await browser.new_page(viewport={"width": width, "height": height})
                assert (await page.goto(f"{base}/agencies/{agency}?lang=en")).status == 200
                await page.screenshot(path=str(OUT / f"agency-{agency}-{width}x{height}.png"), full_page=True)
                assert await page.evaluate("document.documentElement.scrollWidth") <= width
                f = await figures_in(page)
                assert int(f["readiness-ready"]) == sum(r["ready_learners"] for r in agency_ready["rows"])
                assert int(f["roadmap-total"]) == agency_total
                assert await page.evaluate("document.documentElement.lang") == "en"

            page = await browser.new_page()
            response = await page.goto(base + "/agencies/" + "%3Cscript%3E" + "x" * 3000)
            assert response.status == 404 and "No such agency" not in await page.inner_text("body")
            assert "ไม่พบหน่วยงานนี้" in await page.inner_text("body")
        finally:
            await browser.close()
    for width, height in VIEWPORTS:
        assert (OUT / f"overview-{width}x{height}.png").stat().st_size > 10_000


async def test_reports_metrics_and_no_key_needed(stack):
    base = f"http://127.0.0.1:{stack['ports']['reports']}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/agencies/unknown-agency")).status_code == 404
        metrics = (await client.get("/metrics")).text
    assert re.search(r'newnormal_reports_page_renders_total\{outcome="ok",page="overview"\} [1-9]', metrics)
    assert re.search(r'newnormal_reports_page_renders_total\{outcome="ok",page="not_found"\} [1-9]', metrics)
    assert re.search(r'newnormal_reports_upstream_fetch_seconds_count\{outcome="ok",service="feedback"\} [1-9]', metrics)
    assert 'newnormal_reports_cache_lookups_total{result="miss",service="roadmap"}' in metrics


async def test_a_citizen_fills_the_survey_page_in_a_browser_under_its_content_security_policy(stack):
    """The survey page as a citizen at a kiosk uses it: the page's own style and script run under its CSP (a nonce
    per page), the answers arrive, and the phone number typed into the comment is stored redacted."""
    from playwright.async_api import async_playwright
    from pymongo import AsyncMongoClient

    base = f"http://127.0.0.1:{stack['ports']['feedback']}"
    refused: list[str] = []
    OUT.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
            response = await page.goto(f"{base}/survey/dga?key={stack['survey_keys']['dga']}&channel=walk_in")
            csp = response.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "'unsafe-inline'" not in csp and "script-src 'nonce-" in csp
            assert await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") >= 20  # its style ran
            await page.fill("#service_name", "ต่ออายุใบขับขี่ (CSP)")
            for name, value in (("age_group", "60_plus"), ("satisfaction", "4"), ("tech_difficulty", "some"),
                                ("aware_of_digital_channels", "false")):
                await page.click(f'label.choice:has(input[name="{name}"][value="{value}"])')
            await page.fill("#comment", "ช่วยโทรกลับ 081-234-5678 ค่ะ")
            await page.screenshot(path=str(OUT / "survey-390x844.png"), full_page=True)
            await page.click("button[type=submit]")
            await page.locator("#status.ok, #status.err").wait_for(timeout=20_000)  # no eval: the CSP forbids it
            assert "ขอบคุณ" in await page.inner_text("#status"), await page.inner_text("#status")
        finally:
            await browser.close()
    assert refused == []
    client = AsyncMongoClient(stack["env"]["NEWNORMAL_MONGO_URI"])
    try:
        events = client[stack["env"]["NEWNORMAL_MONGO_DB"]].events
        stored = await poll(lambda: events.find_one({"data.service_name": "ต่ออายุใบขับขี่ (CSP)"}), 30,
                            what="the browser's response stored")
        assert (stored["agency"], stored["data"]["channel"], stored["data"]["age_group"]) == ("dga", "walk_in", "60_plus")
        assert stored["data"]["comment"] == "ช่วยโทรกลับ [REDACTED:PHONE] ค่ะ"
    finally:
        await client.close()


async def test_a_survey_form_is_sent_once_while_its_answer_is_pending_and_a_missing_answer_is_named(stack):
    """A citizen on a slow connection presses again, or changes an answer, while the form is being sent: the
    answers and the button are locked until the service answered, so one filled form is one response. Pressing
    submit with questions unanswered names them (Thai, then English), marks them invalid and moves focus there."""
    from playwright.async_api import async_playwright
    from pymongo import AsyncMongoClient

    base = f"http://127.0.0.1:{stack['ports']['feedback']}"
    posts: list[str] = []
    release = asyncio.Event()

    async def slow(route):
        posts.append(route.request.headers.get("idempotency-key", ""))
        await release.wait()
        await route.continue_()

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})
            await page.goto(f"{base}/survey/dga?key={stack['survey_keys']['dga']}")
            await page.click("button[type=submit]")
            text = await page.inner_text("#status")
            assert text.startswith("กรุณาตอบให้ครบทุกข้อ: บริการที่ได้รับ, ช่องทางที่ใช้บริการ"), text
            assert "Please answer every question: Service received, Channel used" in text
            assert await page.locator("#service_name:focus").count() == 1
            assert await page.get_attribute('input[name="channel"] >> nth=0', "aria-invalid") == "true"

            await page.route("**/v1/responses", slow)
            await page.fill("#service_name", "ส่งครั้งเดียว (slow)")
            for name, value in (("channel", "walk_in"), ("age_group", "25_34"), ("satisfaction", "2"),
                                ("tech_difficulty", "none"), ("aware_of_digital_channels", "true")):
                await page.click(f'label.choice:has(input[name="{name}"][value="{value}"])')
            await page.click("button[type=submit]")
            await page.locator('form[aria-busy="true"]').wait_for(timeout=10_000)
            assert await page.locator("button[type=submit]").is_disabled()
            assert await page.locator('input[name="satisfaction"][value="5"]').is_disabled()  # answers locked
            await page.evaluate("document.getElementById('survey').requestSubmit()")  # a second press, by any means
            release.set()
            await page.locator("#status.ok, #status.err").wait_for(timeout=20_000)
            assert "ขอบคุณ" in await page.inner_text("#status")
            assert not await page.locator("button[type=submit]").is_disabled()
            assert await page.locator("[aria-invalid]").count() == 0
        finally:
            await browser.close()
    assert len(posts) == 1, posts
    client = AsyncMongoClient(stack["env"]["NEWNORMAL_MONGO_URI"])
    try:
        events = client[stack["env"]["NEWNORMAL_MONGO_DB"]].events
        await poll(lambda: events.find_one({"data.service_name": "ส่งครั้งเดียว (slow)"}), 30, what="the response stored")
        assert await events.count_documents({"data.service_name": "ส่งครั้งเดียว (slow)"}) == 1
    finally:
        await client.close()
