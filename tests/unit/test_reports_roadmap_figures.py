"""The reports service reads the roadmap's figures from GET /v1/overview (computed by the roadmap in its database)
and the quarterly report's schedule changes from GET /v1/milestones?moved=true; a roadmap without that route
(404) is read through the whole list as before. Both roads give the same overview and the same report."""

from __future__ import annotations

from datetime import date

import httpx
from test_reports_quarterly import KEY, MILESTONES, NOW, fake_apis

from services.reports import domain, quarterly
from services.reports.adapters import ReadApis
from services.reports.handlers import ReportsService
from services.reports.quarterly_service import QuarterlyReports
from services.reports.settings import ReportsSettings
from services.roadmap import domain as roadmap_domain

MORE = [  # enough late ones that the route's `late` bound matters, and one overdue at the previous quarter's end
    {"milestone_id": f"LATE-{i}", "status": "missed", "due_date": f"2026-01-{i + 1:02d}", "baseline_due_date": "2025-12-20",
     "completed_on": None, "workstream": "regulation_reform", "owner_agency": "ocsc", "title_th": f"ล่าช้า {i}",
     "title_en": f"Late {i}", "latest_reason": None} for i in range(14)
] + [{"milestone_id": "DONE-LATE", "status": "completed", "due_date": "2025-12-01", "baseline_due_date": "2025-12-01",
      "completed_on": "2026-01-10", "workstream": "roadmap_governance", "owner_agency": "dga", "title_th": "เสร็จช้า"}]
ALL = MILESTONES + MORE


def roadmap_with_overview(calls: list[str], schedule_changes: bool = False) -> httpx.MockTransport:
    """The quarterly tests' fake APIs, with a roadmap that has GET /v1/overview and the moved filter (answered
    by the rule the roadmap runs in its database) and refuses to page through the whole list; with
    `schedule_changes`, also GET /v1/schedule-changes (the roadmap's own row rule)."""
    base = fake_apis().handler

    def handler(request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, request.url.params
        if request.url.port == 8101 and path == "/v1/schedule-changes" and schedule_changes:
            calls.append(str(request.url))
            rows = sorted((roadmap_domain.schedule_change(m) for m in quarterly.moved(ALL, params.get("agency"))),
                          key=lambda r: (-r["variance_days"], r["milestone_id"]))
            limit = int(params["limit"])
            return httpx.Response(200, json={"agency": params.get("agency"), "total": len(rows), "limit": limit,
                                             "items": rows[:limit]})
        if request.url.port == 8101 and path == "/v1/overview":
            calls.append(str(request.url))
            days = [date.fromisoformat(d) for d in params.get_list("at")]
            late = int(params["late"])
            body = domain.roadmap_digest(ALL, params.get("agency"), days)
            for entry in body["workstreams"].values():
                entry["missed"], entry["at_risk"] = entry["missed"][:late], entry["at_risk"][:late]
            return httpx.Response(200, json=body)
        if request.url.port == 8101 and path == "/v1/milestones":
            calls.append(str(request.url))
            assert params.get("moved") == "true", "the whole list is not read when the roadmap has /v1/overview"
            items = [m for m in quarterly.moved(ALL, params.get("agency"))]
            return httpx.Response(200, json={"total": len(items), "items": items if params["offset"] == "0" else []})
        if path.startswith("/v1/milestones/"):
            calls.append(path)
        return base(request)
    return httpx.MockTransport(handler)


def roadmap_without_overview() -> httpx.MockTransport:
    base = fake_apis().handler

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.port == 8101 and request.url.path == "/v1/milestones":
            items = [m for m in ALL if request.url.params.get("agency") in (None, m["owner_agency"])]
            offset = request.url.params["offset"]
            return httpx.Response(200, json={"total": len(items), "items": items if offset == "0" else []})
        return base(request)  # /v1/overview: 404, as from a roadmap older than it
    return httpx.MockTransport(handler)


def service(transport: httpx.MockTransport) -> ReportsService:
    settings = ReportsSettings(reports_api_key=KEY)
    return ReportsService(ReadApis(settings, transport=transport), settings, clock=lambda: NOW)


def section_figures(view: domain.Overview) -> list:
    return [(s.status, s.trend.current, s.trend.previous, s.missed_total, s.at_risk_total, s.total,
             [(r.workstream, r.counts, r.rating) for r in s.workstreams],
             [(m.milestone_id, m.days_late, m.latest_reason) for m in s.late]) for s in (view.roadmap, view.regulation)]


async def test_overview_from_the_roadmap_figures_equals_the_one_from_the_whole_list():
    for agency in (None, "ocsc", "dga", "nso"):
        calls: list[str] = []
        new = await service(roadmap_with_overview(calls)).overview(agency)
        old = await service(roadmap_without_overview()).overview(agency)
        assert section_figures(new) == section_figures(old), agency
        assert not new.unavailable
        asked = [c for c in calls if "/v1/overview" in c]
        assert len(asked) == 1 and "at=2026-04-03" in asked[0] and "at=2026-03-31" in asked[0] and "late=10" in asked[0]
        assert not [c for c in calls if "/v1/milestones?" in c]  # the overview reads no list at all
        # Details only for listed items that do not state their latest reason (LATE-* carry latest_reason).
        assert not [c for c in calls if c.startswith("/v1/milestones/LATE-")]
    whole = await service(roadmap_with_overview([])).overview(None)
    assert whole.regulation.missed_total == 15 and len(whole.regulation.late) == 10  # listed: 10 of 15
    # Open past their due date at the end of 31 Mar and of today: REG-1 and the 14 LATE ones (DONE-LATE was done).
    assert whole.regulation.trend.previous == whole.regulation.trend.current == 15


async def test_quarterly_report_reads_only_the_moved_milestones():
    calls: list[str] = []
    new = await QuarterlyReports(service(roadmap_with_overview(calls))).build(2569, 2, None)
    old = await QuarterlyReports(service(roadmap_without_overview())).build(2569, 2, None)
    assert [(s.milestone_id, s.variance_days, s.reason, s.flagged) for s in new.slips] == \
        [(s.milestone_id, s.variance_days, s.reason, s.flagged) for s in old.slips]
    assert new.slips_total == old.slips_total == len(quarterly.moved(ALL, None))
    assert any("moved=true" in c for c in calls)
    assert section_figures(new.overview) == section_figures(old.overview)


async def test_quarterly_report_reads_the_schedule_changes_in_one_request():
    for agency in (None, "ocsc"):
        calls: list[str] = []
        new = await QuarterlyReports(service(roadmap_with_overview(calls, schedule_changes=True))).build(2569, 2, agency)
        old = await QuarterlyReports(service(roadmap_without_overview())).build(2569, 2, agency)
        assert [(s.milestone_id, s.baseline_due_date, s.due_date, s.variance_days, s.reason, s.flagged)
                for s in new.slips] == [(s.milestone_id, s.baseline_due_date, s.due_date, s.variance_days, s.reason,
                                         s.flagged) for s in old.slips], agency
        assert new.slips and new.slips_total == old.slips_total == len(quarterly.moved(ALL, agency))
        assert len([c for c in calls if "/v1/schedule-changes" in c]) == 1
        assert not [c for c in calls if "/v1/milestones?" in c]  # no list page at all


async def test_a_failed_roadmap_leaves_its_sections_not_reported():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.port == 8101:
            return httpx.Response(503)
        return fake_apis().handler(request)
    view = await service(httpx.MockTransport(handler)).overview(None)
    assert view.roadmap.status == view.regulation.status == "not_reported" and "roadmap" in view.unavailable
