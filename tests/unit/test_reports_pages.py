"""The public pages and their SVG charts, over fake read APIs (httpx.MockTransport): figures, languages,
text alternatives, escaping, suppression, upstream failure, the answer cache and hostile paths."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.reports import domain, svg
from services.reports.adapters import ReadApis
from services.reports.entrypoints import build_router
from services.reports.handlers import ReportsService
from services.reports.settings import ReportsSettings

NOW = datetime(2026, 2, 10, 3, 0, tzinfo=UTC)  # Q2 FY2569
HOSTILE = '<script>alert(1)</script>"'


def fake_apis(fail: set[str] = frozenset(), calls: list[str] | None = None):
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["X-API-Key"] == "po-key-for-tests-0123456789"
        path, params = request.url.path, dict(request.url.params)
        service = {8101: "roadmap", 8102: "training", 8103: "feedback"}[request.url.port]
        if calls is not None:
            calls.append(f"{service}{path}")
        if service in fail:
            return httpx.Response(503, json={"reason": "unavailable"})
        if path == "/v1/summary":
            return httpx.Response(200, json={"workstreams": {"regulation_reform": {
                "counts": {"missed": 1}, "confidence": {"rating": "amber_red", "reasons": ["missed_share>=10%"]}}},
                "programme": {"confidence": {"rating": "red", "reasons": []}}})
        if path == "/v1/milestones":
            items = [{"milestone_id": "M-1", "status": "missed", "due_date": "2026-01-20", "baseline_due_date": "2025-12-01",
                      "workstream": "regulation_reform", "owner_agency": "ocsc", "title_th": "แก้ระเบียบ " + HOSTILE,
                      "title_en": "Revise rules " + HOSTILE, "status_reasons": ["deadline_passed"]}]
            items = items if params.get("agency") in (None, "ocsc") else []
            return httpx.Response(200, json={"total": len(items), "items": items if params["offset"] == "0" else []})
        if path.startswith("/v1/milestones/"):
            return httpx.Response(200, json={"due_history": [{"reason": "รอความเห็นกฤษฎีกา"}]})
        if path == "/v1/readiness":
            return httpx.Response(200, json={"rows": [{"agency": "ocsc", "competency": "mindset", "target": 120,
                                                       "ready_learners": 48}]})
        if path == "/v1/readiness/laggards":
            return httpx.Response(200, json={"agencies": [{"agency": "ocsc", "rank": 1, "target": 120, "ready_learners": 48,
                                                           "expected": 60.5, "gap": 12.5}]})
        if path in ("/v1/experience", "/v1/experience/gaps"):
            cells = [{"age_group": "60_plus", "channel": "walk_in", "responses": 40, "mean_satisfaction": 3.1,
                      "share_satisfied": 0.4, "share_tech_difficulty": 0.55, "awareness_rate": 0.3},
                     {"age_group": "60_plus", "channel": "mobile_app", "responses": 3, "mean_satisfaction": 1.0,
                      "share_satisfied": 0.0, "share_tech_difficulty": 1.0, "awareness_rate": 0.0},
                     {"age_group": "25_34", "channel": "online_web", "responses": 9, "mean_satisfaction": 4.5,
                      "share_satisfied": 0.9, "share_tech_difficulty": 0.0, "awareness_rate": 1.0},
                     {"age_group": "25_34", "channel": "mobile_app", "responses": 200, "mean_satisfaction": 4.4,
                      "share_satisfied": 0.88, "share_tech_difficulty": 0.05, "awareness_rate": 0.9}]
            overall = {"responses": 252, "share_satisfied": 0.7612, "mean_satisfaction": 4.1, "awareness_rate": 0.7698}
            if path.endswith("gaps"):
                return httpx.Response(200, json={"overall": overall, "gaps": [{"age_group": "60_plus", "channel": "walk_in"}]})
            return httpx.Response(200, json={"overall": overall, "cells": cells})
        return httpx.Response(404)
    return httpx.MockTransport(handler)


def make_service(fail=frozenset(), calls=None, cache_seconds=60.0) -> ReportsService:
    settings = ReportsSettings(reports_api_key="po-key-for-tests-0123456789", reports_cache_seconds=cache_seconds)
    return ReportsService(ReadApis(settings, transport=fake_apis(fail, calls)), settings, clock=lambda: NOW)


def client_for(service: ReportsService) -> TestClient:
    app = FastAPI()
    app.include_router(build_router(service, runtime=None))  # the public pages need no key store
    return TestClient(app)


class Figures(HTMLParser):
    """data-figure -> data-value, and every data-cell of the SVG heat maps."""

    def __init__(self, html: str):
        super().__init__()
        self.figures: dict[str, str] = {}
        self.cells: dict[str, dict[str, str]] = {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-figure" in a and "data-value" in a:
            self.figures[a["data-figure"]] = a["data-value"]
        if "data-cell" in a:
            self.cells.setdefault(a["data-cell"], a)


def test_overview_shows_the_apis_figures_with_suppression_and_gaps():
    html = client_for(make_service()).get("/").text
    f = Figures(html)
    assert f.figures["access-share-satisfied"] == "0.7612" and f.figures["access-responses"] == "252"
    assert f.figures["readiness-ready"] == "48" and f.figures["readiness-target"] == "120"
    assert f.figures["regulation-missed"] == "1"
    # 3 and 9 responses are under 10: hidden, with no value in the page at all.
    assert f.cells["60_plus|mobile_app"].get("data-suppressed") == "true" and "data-value" not in f.cells["60_plus|mobile_app"]
    assert f.cells["25_34|online_web"].get("data-suppressed") == "true"
    assert f.cells["60_plus|walk_in"]["data-value"] == "3.1" and f.cells["60_plus|walk_in"].get("data-gap") == "true"
    assert "1.0" not in re.findall(r'data-value="([^"]*)"', html.split('id="access"')[1].split("</svg>")[0])
    assert 'data-rating="amber_red"' in html and "รอความเห็นกฤษฎีกา" in html  # stated reason from the due history
    assert 'data-not-reported="mean_trust"' in html and "ยังไม่มีรายงาน" in html


def test_thai_first_english_switch_and_buddhist_era_dates():
    client = client_for(make_service())
    th = client.get("/")
    assert th.headers["content-language"] == "th" and '<html lang="th">' in th.text
    assert "ไตรมาส 2/2569" in th.text and "20 ม.ค. 2569" in th.text and 'href="?lang=en"' in th.text
    en = client.get("/?lang=en")
    assert '<html lang="en">' in en.text and "Q2 FY2569" in en.text and "20 Jan 2569 BE" in en.text
    assert "Revise rules" in en.text and 'href="/agencies/ocsc?lang=en"' in en.text
    assert client.get("/?lang=xx").headers["content-language"] == "th"


def test_pages_escape_what_upstream_says_and_carry_no_script():
    html = client_for(make_service()).get("/").text
    assert "<script" not in html and "&lt;script&gt;" in html
    response = client_for(make_service()).get("/")
    assert "default-src 'none'" in response.headers["content-security-policy"]


def test_no_personal_data_or_contact_details_on_public_pages():
    for path in ("/", "/agencies/ocsc", "/?lang=en"):
        html = client_for(make_service()).get(path).text
        assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", html), "an e-mail address"
        assert not re.search(r"\b0\d{1,2}[- ]?\d{3}[- ]?\d{4}\b", html), "a phone number"
        assert not re.search(r"\b\d{13}\b", html), "an ID number"


def test_agency_page_and_hostile_paths():
    client = client_for(make_service())
    page = client.get("/agencies/ocsc")
    assert page.status_code == 200 and "สำนักงาน" in page.text and 'data-milestone="M-1"' in page.text
    for path in ("/agencies/nope", "/agencies/" + "x" * 5000, "/agencies/%3Cscript%3E", "/agencies/..%2F..%2Fetc",
                 "/agencies/ocsc%00", "/agencies/" + "ก" * 300):
        r = client.get(path)
        assert r.status_code == 404, path
        if "%2F" not in path:  # a decoded "/" leaves the route: the framework's plain 404 answers it
            assert r.headers["content-type"].startswith("text/html"), path
        assert "<script" not in r.text and "x" * 100 not in r.text


def test_a_failed_service_leaves_its_sections_not_reported():
    service = make_service(fail={"feedback"})
    response = client_for(service).get("/")
    assert response.status_code == 200 and 'data-unavailable="feedback"' in response.text
    metrics = service.metrics.renders.labels("overview", "partial")._value.get()
    assert metrics == 1
    f = Figures(response.text)
    assert "access-share-satisfied" not in f.figures and f.figures["readiness-ready"] == "48"


def test_answers_are_cached_for_the_configured_time():
    calls: list[str] = []
    client = client_for(make_service(calls=calls))
    client.get("/")
    first = len(calls)
    client.get("/")
    assert first > 0 and len(calls) == first, "the second view is served from the cache"
    uncached: list[str] = []
    client = client_for(make_service(calls=uncached, cache_seconds=0))
    client.get("/")
    client.get("/")
    assert len(uncached) == 2 * first


def test_heatmap_svg_has_a_text_alternative_and_marks():
    hm = domain.HeatMap("mean_satisfaction", ("ความพึงพอใจ", "Satisfaction"), "mean", True, True, {
        ("60_plus", "walk_in"): domain.HeatCell("60_plus", "walk_in", 3.1, 40, False, True),
        ("18_24", "online_web"): domain.HeatCell("18_24", "online_web", None, None, True, False)})
    out = svg.heatmap(hm, "en")
    assert 'role="img"' in out and "<title" in out and "<desc" in out
    assert "Walk-in office, 60 and over: 3.10 ▼" in out and "Website, 18–24: hidden" in out
    assert 'data-value="3.1"' in out and 'data-suppressed="true"' in out


def test_sparkline_and_bars():
    spark = svg.sparkline([None, 0.5, 0.6], ["Q4", "Q1", "Q2"], "share", "en", "Satisfied")
    assert "Q4: –; Q1: 50.0%; Q2: 60.0%" in spark and spark.count("<circle") == 2
    assert "<polyline" not in svg.sparkline([None, None], ["a", "b"], "share", "en", "x")
    bar = svg.progress_bar(48, 120, 0.5, "th", "กรอบความคิด")
    assert "พร้อม 48 จากเป้าหมาย 120 (40.0%)" in bar


@pytest.mark.parametrize(("value", "kind", "text"), [(0.7612, "share", "76.1%"), (4.1, "mean", "4.10"),
                                                     (1234, "count", "1,234"), (None, "share", "–")])
def test_number_formats(value, kind, text):
    assert svg.fmt(value, kind) == text


async def test_refresh_ahead_fetches_anew_and_the_next_view_is_served_from_the_cache():
    calls: list[str] = []
    service = make_service(calls=calls)
    await service.overview()
    first = len(calls)
    await service.refresh_overview()
    assert len(calls) == 2 * first, "every answer of the front page fetched again"
    await service.overview()
    assert len(calls) == 2 * first, "and the next view finds them cached"
    await service.source.close()
