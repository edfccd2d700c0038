"""The quarterly report over fake read APIs (httpx.MockTransport): validation of the quarter, schedule changes
and their flag, one content object rendered as HTML, PDF (read back with pdftotext) and XLSX (read back with
openpyxl), hostile text from agencies, and the route's key rules."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from datetime import UTC, date, datetime

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from prometheus_client import CollectorRegistry

from services.cli import main as cli_main
from services.common.auth import ApiKeyAuth, Principal, Role
from services.reports import domain, pages, quarterly
from services.reports.adapters import ReadApis
from services.reports.handlers import ReportsService
from services.reports.quarterly_delivery import QuarterlyDelivery, due_quarter
from services.reports.quarterly_routes import QuarterlyMetrics, quarterly_router
from services.reports.quarterly_service import QuarterlyReports, render
from services.reports.settings import ReportsSettings

NOW = datetime(2026, 4, 3, 2, 30, tzinfo=UTC)  # Q3 FY2569 has begun: Q2 (Jan-Mar 2026) is complete
KEY = "po-key-for-tests-0123456789"
HOSTILE = '=HYPERLINK("http://x.invalid","ok")<script>alert(1)</script>\x07'

MILESTONES = [
    # slipped 61 days with a stated reason
    {"milestone_id": "REG-1", "status": "missed", "due_date": "2026-03-01", "baseline_due_date": "2025-12-31",
     "workstream": "regulation_reform", "owner_agency": "ocsc", "title_th": "แก้ไขระเบียบงานสารบรรณ",
     "title_en": "Revise the records rules"},
    # slipped 45 days, no reason: flagged
    {"milestone_id": "RD-7", "status": "at_risk", "due_date": "2026-05-15", "baseline_due_date": "2026-03-31",
     "workstream": "technology_access", "owner_agency": "rd", "title_th": HOSTILE, "title_en": HOSTILE},
    # slipped 10 days, no reason: listed, not flagged
    {"milestone_id": "DGA-2", "status": "in_progress", "due_date": "2026-06-10", "baseline_due_date": "2026-05-31",
     "workstream": "roadmap_governance", "owner_agency": "dga", "title_th": "ระบบกลาง", "title_en": "Core system"},
    # on its baseline: not a schedule change
    {"milestone_id": "DGA-3", "status": "completed", "due_date": "2026-01-31", "baseline_due_date": "2026-01-31",
     "completed_on": "2026-01-30", "workstream": "public_awareness", "owner_agency": "dga", "title_th": "สื่อประชาสัมพันธ์",
     "title_en": "Campaign"},
]
HISTORY = {
    "REG-1": [{"change": "baseline", "due_date": "2025-12-31", "reason": None},
              {"change": "rescheduled", "due_date": "2026-03-01", "reason": "รอความเห็น\nคณะกรรมการกฤษฎีกา"}],
    "RD-7": [{"change": "baseline", "due_date": "2026-03-31", "reason": None},
             {"change": "rescheduled", "due_date": "2026-05-15", "reason": "  "}],
    "DGA-2": [{"change": "baseline", "due_date": "2026-05-31"}, {"change": "replanned", "due_date": "2026-06-10"}],
}
CELLS = [
    {"age_group": "60_plus", "channel": "walk_in", "responses": 40, "mean_satisfaction": 3.1, "share_satisfied": 0.4,
     "share_tech_difficulty": 0.55, "awareness_rate": 0.3, "mean_trust": 3.4, "mean_ease": 2.9,
     "trust_responses": 40, "ease_responses": 40},
    {"age_group": "60_plus", "channel": "mobile_app", "responses": 3, "mean_satisfaction": 1.0, "share_satisfied": 0.0,
     "share_tech_difficulty": 1.0, "awareness_rate": 0.0, "mean_trust": 1.0, "mean_ease": 1.0,
     "trust_responses": 3, "ease_responses": 3},
    {"age_group": "25_34", "channel": "mobile_app", "responses": 200, "mean_satisfaction": 4.4, "share_satisfied": 0.88,
     "share_tech_difficulty": 0.05, "awareness_rate": 0.9, "mean_trust": 4.2, "mean_ease": 4.5,
     "trust_responses": 200, "ease_responses": 200},
]
ACKS = {"episodes": 12, "acknowledged": 9, "acknowledged_share": 0.75, "median_hours_to_acknowledge": 5.5,
        "p90_hours_to_acknowledge": 40.0, "unacknowledged": {"under_1d": 1, "1d_to_3d": 0, "3d_to_7d": 2, "7d_or_more": 0},
        "escalations_by_level": {"1": 3, "2": 1},
        "agencies": [{"agency": "rd", "episodes": 4, "acknowledged": 1, "acknowledged_share": 0.25,
                      "median_hours_to_acknowledge": 30.0},
                     {"agency": "dga", "episodes": 8, "acknowledged": 8, "acknowledged_share": 1.0,
                      "median_hours_to_acknowledge": 2.0}]}
OVERALL = {"responses": 243, "share_satisfied": 0.7893, "mean_satisfaction": 4.17, "awareness_rate": 0.79}


def fake_apis(fail: frozenset[str] = frozenset(), calls: list[str] | None = None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-API-Key"] == KEY
        path, params = request.url.path, dict(request.url.params)
        service = {8101: "roadmap", 8102: "training", 8103: "feedback", 8104: "notifier"}[request.url.port]
        if calls is not None:
            calls.append(f"{service}{path}")
        if service in fail or (path.startswith("/v1/milestones/") and "detail" in fail):
            return httpx.Response(503)
        if path == "/v1/summary":
            return httpx.Response(200, json={
                "workstreams": {"regulation_reform": {"counts": {"missed": 1}, "progress_ratio": 0.42,
                                                      "confidence": {"rating": "amber_red", "reasons": ["missed_share>=10%"]}}},
                "programme": {"confidence": {"rating": "amber", "reasons": []}}})
        if path == "/v1/milestones":
            items = [m for m in MILESTONES if params.get("agency") in (None, m["owner_agency"])]
            return httpx.Response(200, json={"total": len(items), "items": items if params["offset"] == "0" else []})
        if path.startswith("/v1/milestones/"):
            return httpx.Response(200, json={"due_history": HISTORY.get(path.rsplit("/", 1)[1], [])})
        if path == "/v1/readiness":
            return httpx.Response(200, json={"rows": [{"agency": "ocsc", "competency": "mindset", "target": 1200,
                                                       "ready_learners": 487},
                                                      {"agency": "ocsc", "competency": "digital_technology", "target": 800,
                                                       "ready_learners": 512}]})
        if path == "/v1/readiness/laggards":
            return httpx.Response(200, json={"agencies": [{"agency": "ocsc", "rank": 1, "target": 2000,
                                                           "ready_learners": 999, "expected": 1000.5, "gap": 1.5}]})
        if path == "/v1/experience/gaps":
            return httpx.Response(200, json={"overall": OVERALL, "gaps": [{"age_group": "60_plus", "channel": "walk_in"}]})
        if path == "/v1/experience":
            return httpx.Response(200, json={"overall": OVERALL, "cells": CELLS})
        if path == "/v1/acknowledgements/summary":
            return httpx.Response(200, json=ACKS)
        return httpx.Response(404)
    return httpx.MockTransport(handler)


def make_reports(fail: frozenset[str] = frozenset(), calls: list[str] | None = None) -> QuarterlyReports:
    settings = ReportsSettings(reports_api_key=KEY)
    return QuarterlyReports(ReportsService(ReadApis(settings, transport=fake_apis(fail, calls)), settings,
                                           clock=lambda: NOW))


async def build(agency: str | None = None, fail: frozenset[str] = frozenset()) -> quarterly.QuarterlyReport:
    return await make_reports(fail).build(2569, 2, agency)


# --- validation ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("fy", "q", "reason"), [
    (2026, 2, "invalid_fiscal_year"), (0, 1, "invalid_fiscal_year"), (99999, 1, "invalid_fiscal_year"),
    (2569, 0, "invalid_quarter"), (2569, 5, "invalid_quarter"), (-1, -1, "invalid_fiscal_year"),
    (2569, 4, "quarter_not_started"), (2570, 1, "quarter_not_started"),
])
def test_request_validation_names_the_reason(fy, q, reason):
    with pytest.raises(quarterly.ReportRequestError) as err:
        quarterly.validate_request(fy, q, date(2026, 4, 3))
    assert err.value.reason == reason


def test_quarters_follow_the_thai_fiscal_year():
    q = quarterly.validate_request(2569, 1, date(2026, 4, 3))
    assert (q.start, q.end) == (date(2025, 10, 1), date(2025, 12, 31))
    q = quarterly.validate_request(2569, 3, date(2026, 4, 3))  # running: allowed, covers up to today
    assert (q.start, q.end) == (date(2026, 4, 1), date(2026, 6, 30))


# --- content -----------------------------------------------------------------------------------------

async def test_schedule_changes_have_variance_reason_and_flag():
    report = await build()
    slips = {s.milestone_id: s for s in report.slips}
    assert list(slips) == ["REG-1", "RD-7", "DGA-2"]  # largest slip first; DGA-3 never moved
    assert (slips["REG-1"].variance_days, slips["REG-1"].reason, slips["REG-1"].flagged) == (
        60, "รอความเห็น คณะกรรมการกฤษฎีกา", False)
    assert (slips["RD-7"].variance_days, slips["RD-7"].reason, slips["RD-7"].flagged) == (45, None, True)
    assert (slips["DGA-2"].variance_days, slips["DGA-2"].flagged) == (10, False)
    assert report.flagged == 1 and report.slips_total == 3


async def test_an_unknown_history_is_not_flagged_and_the_report_says_roadmap_was_partial():
    report = await build(fail=frozenset({"detail"}))
    assert not any(s.flagged for s in report.slips)
    assert "roadmap" in report.unavailable


async def test_agency_report_holds_only_that_agencys_milestones():
    report = await build("ocsc")
    assert [s.milestone_id for s in report.slips] == ["REG-1"]
    assert report.overview.agency == "ocsc"


def test_sheet_columns_are_the_published_ones():
    cols = quarterly.sheet_columns()
    assert list(cols) == ["about", "summary", "roadmap", "roadmap_late", "regulation", "regulation_late", "readiness",
                          "readiness_laggards", "access", "awareness", "schedule_changes", "acknowledgements",
                          "acknowledgements_agencies"]
    assert cols["acknowledgements"] == ("figure", "figure_th", "value")
    assert cols["schedule_changes"] == ("milestone_id", "title_th", "title_en", "workstream", "owner_agency", "status",
                                        "baseline_due_date", "current_due_date", "variance_days", "stated_reason",
                                        "flag_over_30_days_no_reason")


# --- the three formats -------------------------------------------------------------------------------

async def test_xlsx_holds_the_same_figures_as_the_content_and_defuses_formulas():
    report = await build()
    book = load_workbook(io.BytesIO(render(report, "xlsx")))
    sheets = quarterly.tables(report)
    assert book.sheetnames == list(sheets)
    for name, table in sheets.items():
        rows = list(book[name].iter_rows(values_only=True))
        assert rows[0] == table.columns
        assert len(rows) - 1 == len(table.rows)
    schedule = {r[0]: r for r in book["schedule_changes"].iter_rows(min_row=2, values_only=True)}
    assert schedule["REG-1"][8] == 60 and schedule["RD-7"][10] is True
    cell = next(c for c in book["schedule_changes"]["B"] if c.value and "HYPERLINK" in str(c.value))
    assert cell.data_type == "s" and "\x07" not in cell.value  # text, not a formula; no control characters
    readiness = {r[1]: r for r in book["readiness"].iter_rows(min_row=2, values_only=True)}
    assert readiness["mindset"][3:5] == (1200, 487) and readiness["all"][3:5] == (2000, 999)
    access = {(r[0], r[1], r[2]): r for r in book["access"].iter_rows(min_row=2, values_only=True)}
    assert access[("mean_trust", "25_34", "mobile_app")][3] == 4.2
    assert access[("mean_satisfaction", "60_plus", "mobile_app")][3:6] == (None, None, True)  # small cell suppressed


async def test_html_is_the_same_document_and_escapes_agency_text():
    report = await build()
    html = render(report, "html").decode()
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    for key in ("roadmap", "regulation", "readiness", "access", "awareness", "schedule"):
        assert f'id="{key}"' in html
    assert "487" in html and "78.9%" in html and "รอความเห็น คณะกรรมการกฤษฎีกา" in html
    assert 'class="flag"' in html  # RD-7's slip is marked
    assert "ข้อมูล ณ 3 เม.ย. 2569 09:30 น." in html  # Buddhist-era date, Bangkok time


def pdftotext(pdf: bytes) -> str:
    return subprocess.run(["pdftotext", "-layout", "-", "-"], input=pdf, capture_output=True, check=True).stdout.decode()


_MARKS = dict.fromkeys([0x0E31, *range(0x0E34, 0x0E3B), *range(0x0E47, 0x0E4F), 0x20])


def thai_letters(text: str) -> str:
    """Consonants and vowels in order, without the marks: the fonts draw SARA AM and lowered tone marks as
    glyph variants that pdftotext maps back to a sibling character (a ToUnicode limit, not a shaping error;
    the pages are checked by eye as PNG), so titles are compared on their letters."""
    return text.replace("\u0e33", "\u0e32").translate(_MARKS)


async def test_pdf_is_a4_with_thai_titles_figures_fonts_and_page_numbers(tmp_path):
    report = await build()
    pdf = render(report, "pdf")
    assert pdf.startswith(b"%PDF")
    text = pdftotext(pdf)
    for title in ("การปรับปรุงกฎระเบียบ", "การเข้าถึงเทคโนโลยีของประชาชน", "สารบัญ"):
        assert title in text  # these come back exactly
    for title in [*(t[0] for t in pages.SECTION_TITLES.values()), "การเปลี่ยนแปลงกำหนดส่งมอบ", "ข้อมูล ณ"]:
        assert thai_letters(title) in thai_letters(text)
    assert "487" in text and "1,200" in text and "78.9%" in text
    assert "3 เม.ย. 2569" in text and "หน้า 2 /" in text
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, check=True, text=True).stdout
    assert "595.28 x 841.89" in info or "595.276 x 841.89" in info  # A4 in points
    fonts = subprocess.run(["pdffonts", str(path)], capture_output=True, check=True, text=True).stdout
    thai = [line for line in fonts.splitlines() if any(f in line for f in ("Laksaman", "Garuda", "Loma"))]
    assert thai and all(" yes yes " in line for line in thai)  # embedded subsets


async def test_a_failed_source_still_gives_a_document_that_says_so():
    report = await build(fail=frozenset({"feedback"}))
    assert report.overview.access.status == "not_reported" and report.unavailable == ("feedback",)
    html = render(report, "html").decode()
    assert "feedback" in html and domain.STATUS_LABELS["not_reported"][0] in html


# --- the route: key rules and parameters ---------------------------------------------------------------

class KeysInMemory(ApiKeyAuth):
    """The real authentication rules over a dict of keys instead of the key store."""

    KEYS = {"nn_opdc_" + "p" * 40: Principal("opdc", Role.programme_office, "po"),
            "nn_ocsc_" + "a" * 40: Principal("ocsc", Role.agency, "ag"),
            "nn_ocsc_" + "s" * 40: Principal("ocsc", Role.survey, "sv")}

    def __init__(self):
        super().__init__(lambda: None)

    async def lookup(self, key: str) -> Principal | None:
        return self.KEYS.get(key)


PO, AGENCY, SURVEY = (f"nn_{a}_{c * 40}" for a, c in (("opdc", "p"), ("ocsc", "a"), ("ocsc", "s")))


@pytest.fixture
def client():
    app = FastAPI()
    registry = CollectorRegistry()
    app.include_router(quarterly_router(make_reports(), KeysInMemory(), QuarterlyMetrics(registry)))
    with TestClient(app) as c:
        c.registry = registry
        yield c


def get(client, key: str | None, **params):
    params = {"fiscal_year": 2569, "quarter": 2, **params}
    return client.get("/v1/reports/quarterly", params=params, headers={"X-API-Key": key} if key else {})


@pytest.mark.parametrize(("key", "params", "status", "reason"), [
    (None, {}, 401, "missing_api_key"),
    ("nn_opdc_" + "x" * 40, {}, 401, "invalid_api_key"),
    (SURVEY, {}, 403, "role_not_allowed"),
    (AGENCY, {"agency": "rd"}, 403, "agency_not_allowed"),
    (PO, {"fiscal_year": 2026}, 400, "invalid_fiscal_year"),
    (PO, {"quarter": 9}, 400, "invalid_quarter"),
    (PO, {"quarter": 4}, 404, "quarter_not_started"),
])
def test_route_refuses_with_the_shared_reasons(client, key, params, status, reason):
    answer = get(client, key, **params)
    assert answer.status_code == status
    assert answer.json()["detail"]["reason"] == reason


def test_route_bad_types_are_refused_before_any_fetch(client):
    for params in ({"fiscal_year": "2569abc"}, {"format": "docx"}, {"agency": "../etc"}):
        assert get(client, PO, **params).status_code == 422  # 400 invalid_request in the service app


def test_route_serves_the_three_formats_to_the_programme_office(client):
    pdf = get(client, PO, format="pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    assert pdf.headers["content-type"] == "application/pdf"
    assert 'attachment; filename="newnormal-quarterly-2569-q2-all.pdf"' == pdf.headers["content-disposition"]
    assert pdf.headers["cache-control"] == "private, no-store"
    html = get(client, PO, format="html")
    assert html.headers["content-type"].startswith("text/html") and "script-src" not in html.headers[
        "content-security-policy"] and "default-src 'none'" in html.headers["content-security-policy"]
    xlsx = get(client, PO, format="xlsx")
    assert load_workbook(io.BytesIO(xlsx.content)).sheetnames[0] == "about"
    assert client.registry.get_sample_value("newnormal_reports_quarterly_documents_total",
                                            {"format": "pdf", "outcome": "ok"}) == 1


def test_an_agency_key_gets_its_own_agencys_report(client):
    own = get(client, AGENCY, format="xlsx")
    book = load_workbook(io.BytesIO(own.content))
    about = dict(book["about"].iter_rows(min_row=2, values_only=True))
    assert about["agency"] == "ocsc"
    assert [r[0] for r in book["schedule_changes"].iter_rows(min_row=2, values_only=True)] == ["REG-1"]
    assert get(client, AGENCY, agency="ocsc", format="html").status_code == 200


# --- the CLI without a stack ---------------------------------------------------------------------------

@pytest.mark.parametrize(("argv", "message"), [
    (["--out", "r.docx"], "cannot tell the format"),
    (["--out", "r.pdf", "--agency", "nope"], "unknown agency"),
])
def test_cli_refuses_bad_arguments(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = cli_main(["report", "quarterly", "--fiscal-year", "2569", "--quarter", "2", *argv])
    assert code == 2 and message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_cli_without_a_key_names_the_variable(capsys, tmp_path, monkeypatch):
    for name in ("NEWNORMAL_REPORTS_API_KEY", "NEWNORMAL_REPORTS_API_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    code = cli_main(["report", "quarterly", "--fiscal-year", "2569", "--quarter", "2", "--out", str(tmp_path / "r.pdf")])
    assert code == 2 and "NEWNORMAL_REPORTS_API_KEY" in capsys.readouterr().err


# --- scheduled delivery ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("today", "day", "due"), [
    (date(2026, 4, 4), 5, None),  # Q2 ended, but the 5th has not come
    (date(2026, 4, 5), 5, (2569, 2)), (date(2026, 6, 30), 5, (2569, 2)),
    (date(2026, 1, 1), 1, (2569, 1)),  # Q1 (Oct-Dec 2025) on 1 January
    (date(2025, 10, 28), 28, (2568, 4)),  # Q4 of the previous fiscal year
])
def test_the_quarter_due_for_delivery(today, day, due):
    q = due_quarter(today, day)
    assert ((q.fiscal_year, q.quarter) if q else None) == due


class ArchiveInMemory:
    def __init__(self):
        self.docs: dict[str, dict] = {}

    async def claim(self, doc_id, now):
        doc = self.docs.setdefault(doc_id, {"_id": doc_id, "state": "generating"})
        if doc.get("mine") is None:
            doc["mine"] = True
            return dict(doc)
        return dict(doc) if doc["state"] == "archived" else None

    async def save(self, doc_id, documents, event, now):
        self.docs[doc_id].update(state="archived", event=event, **{f"doc_{k}": v for k, v in documents.items()})

    async def published(self, doc_id, now):
        self.docs[doc_id]["state"] = "published"


class PublisherInMemory:
    def __init__(self, fail_first: bool = False):
        self.events, self.fail_first = [], fail_first

    async def publish(self, event):
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("broker down")
        self.events.append(event)


async def test_delivery_archives_three_formats_and_announces_once():
    archive, publisher = ArchiveInMemory(), PublisherInMemory(fail_first=True)
    delivery = QuarterlyDelivery(make_reports(), archive, publisher, day=3, base_url="https://reports.example.go.th/")
    with pytest.raises(RuntimeError):
        await delivery.tick()  # archived, not announced: the next pass announces the stored event
    assert archive.docs["2569-q2-all"]["state"] == "archived" and not publisher.events
    assert await delivery.tick() == "2569-q2-all"
    assert await delivery.tick() is None  # announced: never twice
    (event,) = publisher.events
    data = event.data_dict()
    assert event.type == "reports.quarterly.generated" and event.agency == "opdc" and event.id == "quarterly:2569-q2-all"
    assert data["pdf_url"] == "https://reports.example.go.th/v1/reports/quarterly/archive/2569-q2-all.pdf"
    pdf = archive.docs["2569-q2-all"]["doc_pdf"]
    assert data["pdf_sha256"] == hashlib.sha256(pdf).hexdigest() and data["pdf_bytes"] == len(pdf)
    assert data["flagged_slips"] == 1 and data["schedule_changes"] == 3
    assert data["section_status"]["regulation"] == "red"
    assert len(event.to_kafka().value) < 64 * 1024  # a link, not the document


def test_the_pdf_prints_flagged_changes_first_and_points_to_the_full_list():
    slips = [quarterly.Slip(f"M-{i:04d}", "t", "t", "roadmap_governance", "dga", "in_progress", "2026-01-01",
                            "2026-03-01", i, None if i % 100 == 0 else "ok", i % 100 == 0 and i > 30)
             for i in range(1, 1001)]
    printed = quarterly.printed_slips(slips, 20)
    assert [s.milestone_id for s in printed[:10]] == [f"M-{i:04d}" for i in range(1000, 0, -100)]  # all 10 flagged
    assert [s.variance_days for s in printed[10:]] == list(range(999, 989, -1))  # then the largest slips


async def test_a_long_schedule_is_complete_in_xlsx_and_html_and_capped_in_the_pdf(monkeypatch):
    extra = [{"milestone_id": f"B-{i:04d}", "status": "in_progress", "due_date": "2026-08-30",
              "baseline_due_date": "2026-07-01", "workstream": "technology_access", "owner_agency": "dga",
              "title_th": f"หมุดหมาย {i}", "title_en": f"M {i}"} for i in range(400)]
    monkeypatch.setattr(sys.modules[__name__], "MILESTONES", MILESTONES + extra)
    monkeypatch.setattr(quarterly, "PDF_SCHEDULE_ROWS", 30)
    report = await build()
    assert len(report.slips) == report.slips_total == 403
    book = load_workbook(io.BytesIO(render(report, "xlsx")))
    assert book["schedule_changes"].max_row == 404
    assert render(report, "html").decode().count("<tr") > 403
    text = pdftotext(render(report, "pdf"))
    assert "RD-7" in text and "schedule_changes" in text and "403" in text
    assert "B-0000" in text and "B-0399" not in text  # the flagged one, then the largest slips (ties by id)


async def test_the_lists_latest_reason_spares_a_detail_request_per_moved_milestone(monkeypatch):
    listed = [{**m, "latest_reason": HISTORY.get(m["milestone_id"], [{}])[-1].get("reason") or None} for m in MILESTONES]
    monkeypatch.setattr(sys.modules[__name__], "MILESTONES", listed)
    calls: list[str] = []
    report = await make_reports(calls=calls).build(2569, 2, None)
    slips = {s.milestone_id: s for s in report.slips}
    assert (slips["REG-1"].reason, slips["RD-7"].reason, slips["RD-7"].flagged) == (
        "รอความเห็น คณะกรรมการกฤษฎีกา", None, True)
    assert slips["DGA-2"].reason is None and not slips["DGA-2"].flagged  # 10 days: listed, not flagged
    details = [c for c in calls if c.startswith("roadmap/v1/milestones/")]
    assert set(details) <= {"roadmap/v1/milestones/REG-1", "roadmap/v1/milestones/RD-7"}  # the late lists' own


async def test_the_acknowledgement_section_holds_the_notifiers_figures_in_every_format():
    report = await build()
    sheets = quarterly.tables(report)
    figures = {row[0]: row[2] for row in sheets["acknowledgements"].rows}
    assert figures["episodes_notified"] == 12 and figures["acknowledged_share"] == 0.75
    assert figures["unacknowledged_3d_to_7d"] == 2 and figures["escalations_level_2"] == 1
    assert [r[0] for r in sheets["acknowledgements_agencies"].rows] == ["rd", "dga"]  # least responsive first
    book = load_workbook(io.BytesIO(render(report, "xlsx")))
    assert [c.value for c in book["acknowledgements"][1]] == ["figure", "figure_th", "value"]
    html = render(report, "html").decode()
    assert "7. การรับทราบการแจ้งเตือนของหน่วยงาน" in html and "75.0%" in html
    # The notifier away: the section says so, the rest of the report stands.
    away = await build(fail=frozenset({"notifier"}))
    assert away.acknowledgements is None and "notifier" in away.unavailable
    assert quarterly.tables(away)["acknowledgements"].rows == ()
    assert "ยังไม่มีรายงาน" in render(away, "html").decode()


async def test_the_pace_of_a_running_quarter_is_the_overview_pages_and_a_past_one_is_judged_at_its_end():
    """One figure for one moment: the running quarter's report, the overview page and the training service's
    laggards count the Bangkok days before today; a quarter that is over is judged at the end of its last day."""
    from services.contracts.thai_calendar import end_of_bangkok_day, fiscal_year_elapsed_ratio

    settings = ReportsSettings(reports_api_key=KEY)
    service = ReportsService(ReadApis(settings, transport=fake_apis(frozenset(), None)), settings, clock=lambda: NOW)
    page = await service.inputs(None)
    running = await service.inputs(None, quarter=domain.quarter_of(date(2026, 4, 3)), document=True)
    past = await service.inputs(None, quarter=domain.Quarter(2569, 2), document=True)
    assert page.elapsed_ratio == running.elapsed_ratio == fiscal_year_elapsed_ratio(2569, NOW)
    assert past.elapsed_ratio == fiscal_year_elapsed_ratio(2569, end_of_bangkok_day(date(2026, 3, 31)))
    assert past.elapsed_ratio < running.elapsed_ratio
