# ruff: noqa: F811  (tests take the imported `stack` fixture by name)
"""The quarterly report to Cabinet on the live stack (the overview test's: roadmap, training and feedback with the
simulator's data, the reports service with no answer cache).

Two reschedules are sent first (one with a stated reason, one 45 days with none). Then: the XLSX read back with
openpyxl equals the read APIs; the PDF read back with pdftotext holds the Thai section titles and the same
figures; the HTML is the same document; the route's key rules; the CLI writes a file; and the scheduled delivery
announces the report on Kafka and the notifier e-mails it to the programme office with the archived PDF attached.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from openpyxl import load_workbook
from support import cloudevent, poll
from test_reports_overview import api, settled, stack  # noqa: F401  (the shared live stack fixture)

from bench.notifier_sinks import SmtpSink
from services.common import processes as px
from services.reports import pages
from services.reports.quarterly import SLIP_FLAG_DAYS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / ".data" / "test-logs" / "reports-quarterly"
OUT = ROOT / ".data" / "test-output" / "reports"
REASON = "รอผลการพิจารณาของคณะกรรมการกฤษฎีกา"


def reports(stack, key: str | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{stack['ports']['reports']}", timeout=120,
                             headers={"X-API-Key": key} if key else {})


async def all_milestones(stack) -> list[dict]:
    items: list[dict] = []
    async with api(stack, "roadmap") as rm:
        while True:
            page = (await rm.get("/v1/milestones", params={"limit": 1000, "offset": len(items)})).json()
            items.extend(page["items"])
            if len(items) >= page["total"] or not page["items"]:
                return items


async def reschedule_two(stack) -> dict[str, str]:
    """Two open milestones moved 45 days by the programme office: one rescheduled with a reason, one re-planned."""
    await settled(stack)
    chosen = [m for m in await all_milestones(stack)
              if m["status"] in ("planned", "in_progress") and m["due_date"] == m["baseline_due_date"]][:2]
    assert len(chosen) == 2, "the simulator's plan has open milestones"
    # A reschedule always states a reason (the contract requires one); a re-sent plan with a new date does not.
    late = lambda m: (date.fromisoformat(m["due_date"]) + timedelta(days=45)).isoformat()
    first, second = chosen
    plan = {k: second[k] for k in ("milestone_id", "title_th", "title_en", "workstream", "owner_agency", "weight",
                                   "depends_on") if second.get(k) is not None}
    events = [cloudevent("roadmap.milestone.rescheduled",
                         {"milestone_id": first["milestone_id"], "new_due_date": late(first), "reason": REASON},
                         agency=first["owner_agency"]),
              cloudevent("roadmap.milestone.planned", {**plan, "due_date": late(second)}, agency=second["owner_agency"])]
    async with api(stack, "roadmap") as rm:
        answer = await rm.post("/v1/events", content=json.dumps(events),
                               headers={"Content-Type": "application/cloudevents-batch+json"})
        assert answer.status_code == 202 and not answer.json()["rejected"], answer.text

        seen: list = []

        async def moved():
            got = [(await rm.get(f"/v1/milestones/{m['milestone_id']}")).json() for m in chosen]
            seen[:] = [{k: g.get(k) for k in ("milestone_id", "due_date", "baseline_due_date", "event_count",
                                                "ignored")} for g in got]
            return all(g["due_date"] != g["baseline_due_date"] for g in got)

        try:
            await poll(moved, timeout=120, what="reschedules applied")
        except AssertionError as exc:  # say what the roadmap holds, so a failure explains itself
            raise AssertionError(f"{exc}; milestones now: {seen}; sent: {answer.json()}") from None
    return {"with_reason": chosen[0]["milestone_id"], "without_reason": chosen[1]["milestone_id"]}


def quarter_params(stack_quarter) -> dict:
    return {"fiscal_year": stack_quarter.fiscal_year, "quarter": stack_quarter.quarter}


async def test_xlsx_pdf_and_html_hold_the_read_apis_figures(stack):
    rescheduled = await reschedule_two(stack)
    q = (await settled(stack))["quarter"]
    async with reports(stack, stack["po_key"]) as rp:
        xlsx = await rp.get("/v1/reports/quarterly", params={**quarter_params(q), "format": "xlsx"})
        pdf = await rp.get("/v1/reports/quarterly", params={**quarter_params(q), "format": "pdf"})
        html = await rp.get("/v1/reports/quarterly", params={**quarter_params(q), "format": "html"})
    assert xlsx.status_code == pdf.status_code == html.status_code == 200, xlsx.text[:300]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "quarterly.pdf").write_bytes(pdf.content)
    (OUT / "quarterly.xlsx").write_bytes(xlsx.content)
    milestones = await all_milestones(stack)
    async with api(stack, "training") as tr:
        readiness = (await tr.get("/v1/readiness", params={"fiscal_year": q.fiscal_year})).json()
    book = load_workbook(io.BytesIO(xlsx.content))

    # Schedule changes: exactly the milestones whose due date moved, with variance, reason and flag.
    moved = {m["milestone_id"]: m for m in milestones if m.get("baseline_due_date") and m["due_date"] != m["baseline_due_date"]}
    rows = {r[0]: r for r in book["schedule_changes"].iter_rows(min_row=2, values_only=True)}
    assert set(rows) == set(moved)
    for mid, row in rows.items():
        expected = (date.fromisoformat(moved[mid]["due_date"]) - date.fromisoformat(moved[mid]["baseline_due_date"])).days
        assert (row[6], row[7], row[8]) == (moved[mid]["baseline_due_date"], moved[mid]["due_date"], expected)
    assert rows[rescheduled["with_reason"]][9] == REASON and rows[rescheduled["with_reason"]][10] is False
    assert rows[rescheduled["without_reason"]][8] == 45 > SLIP_FLAG_DAYS and rows[rescheduled["without_reason"]][10] is True

    # Readiness per competency: the training API's rows summed.
    sheet = {r[1]: r for r in book["readiness"].iter_rows(min_row=2, values_only=True)}
    for comp in {r["competency"] for r in readiness["rows"]}:
        of = [r for r in readiness["rows"] if r["competency"] == comp]
        assert sheet[comp][3:5] == (sum(r["target"] for r in of), sum(r["ready_learners"] for r in of))
    total_target = sum(r["target"] for r in readiness["rows"])
    total_ready = sum(r["ready_learners"] for r in readiness["rows"])
    assert sheet["all"][3:5] == (total_target, total_ready)

    # The PDF: Thai section titles and the same figures, pages numbered, fonts embedded.
    text = subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf.content, capture_output=True,
                          check=True).stdout.decode()
    assert "การปรับปรุงกฎระเบียบ" in text and "การเข้าถึงเทคโนโลยีของประชาชน" in text and "สารบัญ" in text
    assert f"{total_target:,}" in text and f"{total_ready:,}" in text and REASON[:6] in text  # a cell wraps
    assert "หน้า 2 /" in text
    # The HTML: the same document for the web.
    body = html.text
    assert all(f'id="{k}"' in body for k in ("roadmap", "regulation", "readiness", "access", "awareness", "schedule"))
    assert f"{total_target:,}" in body and REASON in body and pages.SECTION_TITLES["readiness"][0] in body


async def test_the_route_follows_the_read_apis_key_rules(stack):
    q = (await settled(stack))["quarter"]
    own = "dga"
    cases = [(None, {}, 401, "missing_api_key"), (stack["survey_keys"][own], {}, 403, "role_not_allowed"),
             (stack["keys"][own], {"agency": "rd"}, 403, "agency_not_allowed"),
             (stack["po_key"], {"fiscal_year": 2026}, 400, "invalid_fiscal_year"),
             (stack["po_key"], {"quarter": "x"}, 400, "invalid_request"),
             (stack["po_key"], {"format": "docx"}, 400, "invalid_request"),
             (stack["po_key"], {"agency": "no-such"}, 400, "unknown_agency")]
    for key, extra, status, reason in cases:
        async with reports(stack, key) as rp:
            answer = await rp.get("/v1/reports/quarterly", params={**quarter_params(q), **extra})
        assert (answer.status_code, answer.json()["reason"]) == (status, reason), (key and key[:8], extra)
        assert answer.headers["content-type"].startswith("application/problem+json")
    async with reports(stack, stack["keys"][own]) as rp:
        mine = await rp.get("/v1/reports/quarterly", params={**quarter_params(q), "format": "xlsx"})
    about = dict(load_workbook(io.BytesIO(mine.content))["about"].iter_rows(min_row=2, values_only=True))
    assert about["agency"] == own


async def test_the_cli_writes_the_report(stack, tmp_path):
    q = (await settled(stack))["quarter"]
    env = {**stack["env"], "NEWNORMAL_REPORTS_API_KEY_FILE": str(stack["reports_key_file"])}
    out = tmp_path / "รายงาน.xlsx"
    done = subprocess.run([sys.executable, "-m", "services.cli", "report", "quarterly", "--fiscal-year",
                           str(q.fiscal_year), "--quarter", str(q.quarter), "--agency", "dga", "--out", str(out)],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    about = dict(load_workbook(out)["about"].iter_rows(min_row=2, values_only=True))
    assert (about["fiscal_year"], about["quarter"], about["agency"]) == (q.fiscal_year, q.quarter, "dga")


async def test_scheduled_delivery_emails_the_archived_pdf_to_the_programme_office(stack, tmp_path):
    await settled(stack)
    smtp = SmtpSink().__enter__()
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump({
        "recipients": {"pmo": {"email": "pmo@opdc.go.th"}},
        "routes": [{"name": "quarterly-report", "match": {"type": ["quarterly_report"]}, "recipients": ["pmo"],
                    "channels": ["email"]}]}), encoding="utf-8")
    port, notifier_port = px.free_port(), px.free_port()
    base = f"http://127.0.0.1:{port}"
    po_key = stack["po_key"]
    procs = []
    try:
        procs.append(px.service("notifier", notifier_port, {
            **stack["env"], "NEWNORMAL_NOTIFIER_ROUTES_FILE": str(routes), "NEWNORMAL_NOTIFIER_SMTP_PORT": str(smtp.port),
            "NEWNORMAL_NOTIFIER_ALERTMANAGER_TOKEN": "am-token-for-the-report-test", "NEWNORMAL_NOTIFIER_REPORTS_URL": base,
            "NEWNORMAL_NOTIFIER_REPORTS_API_KEY": po_key}, LOGS).start())
        # A second reports service with the schedule on: day 1, so the quarter that ended last is due now.
        procs.append(px.service("reports", port, {
            **stack["env"], "NEWNORMAL_REPORTS_API_KEY_FILE": str(stack["reports_key_file"]),
            "NEWNORMAL_REPORTS_CACHE_SECONDS": "0", "NEWNORMAL_REPORTS_PUBLIC_URL": base,
            "NEWNORMAL_REPORTS_QUARTERLY_SCHEDULE_ENABLED": "true", "NEWNORMAL_REPORTS_QUARTERLY_SCHEDULE_DAY": "1",
            "NEWNORMAL_REPORTS_QUARTERLY_CHECK_SECONDS": "1"}, LOGS / "scheduled").start())

        async def mailed():
            return smtp.to("pmo@opdc.go.th")

        (mail,) = await poll(mailed, timeout=180, interval=0.5, what="quarterly report e-mail")
        attachments = [p for p in mail.walk() if p.get_filename()]
        assert len(attachments) == 1 and attachments[0].get_content_type() == "application/pdf"
        pdf = attachments[0].get_payload(decode=True)
        name = attachments[0].get_filename()
        assert "รายงานความก้าวหน้า" in str(mail["Subject"]) and name.endswith("-all.pdf")
        async with httpx.AsyncClient(base_url=base, timeout=30) as rp:
            archived = await rp.get(f"/v1/reports/quarterly/archive/{name}", headers={"X-API-Key": po_key})
            assert archived.status_code == 200
            assert hashlib.sha256(archived.content).hexdigest() == hashlib.sha256(pdf).hexdigest()
            # The programme's archived report is not an agency's record: 404, as for another agency's id.
            other = await rp.get(f"/v1/reports/quarterly/archive/{name}", headers={"X-API-Key": stack["keys"]["dga"]})
            assert other.status_code == 404
        text = mail.get_body(("plain",)).get_content()
        assert f"{base}/v1/reports/quarterly/archive/{name}" in text
    finally:
        for proc in reversed(procs):
            proc.stop()
        smtp.__exit__(None, None, None)

