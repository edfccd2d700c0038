"""The roadmap's GET /v1/overview (figures computed in MongoDB for the reports service) against the same rule run
over the full milestone list (services.reports.domain.roadmap_digest), on the real database; the moved=true list
filter; who reads what; bad parameters."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest
from support import db_of, make_key, poll, running

from services.contracts.common_types import Workstream
from services.reports import domain as reports_domain
from services.reports import quarterly
from services.roadmap import domain
from services.roadmap.main import create_app
from services.roadmap.settings import RoadmapSettings

pytestmark = pytest.mark.integration
NOW = datetime(2026, 2, 10, 5, tzinfo=UTC)  # Q2 FY2569: the previous quarter ended 31 Dec 2025
TODAY, PREV_END = date(2026, 2, 10), date(2025, 12, 31)


def milestone_docs(n: int, seed: int = 3) -> list[dict]:
    """Milestones derived by the roadmap's own rule from plans, progress, completions (on time, late, after the
    previous quarter's end) and reschedules, due around both counting days; stored as a real run stores them."""
    rnd = random.Random(seed)
    docs = []
    for m in range(n):
        mid, agency = f"OV-{m:04d}", ("dga", "ocsc", "nso")[m % 3]
        ws = list(Workstream)[m % 5].value
        due = TODAY + timedelta(days=rnd.randint(-120, 90))
        start = NOW - timedelta(days=150)

        def fact(kind: str, data: dict, t: datetime, k: str, mid=mid, agency=agency) -> dict:
            return domain.make_fact(type_=f"roadmap.milestone.{kind}", source=f"/agencies/{agency}/t", event_id=f"{mid}-{k}",
                                    agency=agency, time=t, data={"milestone_id": mid, **data})

        facts = [fact("planned", {"title_th": f"หมุดหมาย {m}", "workstream": ws, "owner_agency": agency,
                                  "due_date": due.isoformat(), "weight": 1}, start, "plan")]
        facts.append(fact("progressed", {"percent_complete": rnd.choice([5, 40, 90]),
                                         "as_of": (NOW - timedelta(days=3)).isoformat()}, NOW - timedelta(days=3), "p"))
        roll = rnd.random()
        if roll < 0.3:
            done = due + timedelta(days=rnd.randint(-10, 60))
            if done <= TODAY:
                facts.append(fact("completed", {"completed_on": done.isoformat()}, NOW - timedelta(days=1), "done"))
        elif roll < 0.55:
            facts.append(fact("rescheduled", {"new_due_date": (due + timedelta(days=rnd.randint(10, 90))).isoformat(),
                                              "reason": rnd.choice(["รองบประมาณ", ""]) or "งานล่าช้า"},
                              NOW - timedelta(days=5), "r"))
        docs.append({"_id": mid, "version": 1, "facts": facts, **domain.project(mid, facts, NOW, {}),
                     "status_since": NOW, "updated_at": NOW, "created_at": NOW})
    return docs


async def all_items(http, headers, **params) -> list[dict]:
    items, offset = [], 0
    while True:
        r = await http.get("/v1/milestones", params={"limit": 1000, "offset": offset, **params}, headers=headers)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        offset += 1000
        if offset >= r.json()["total"]:
            return items


def comparable(answer: dict, late: int) -> dict:
    """Counts and overdue figures as they are; the late lists as ids, the first `late` of each."""
    return {ws: {"counts": e["counts"], "open_overdue_at": e["open_overdue_at"],
                 **{s: [i["milestone_id"] for i in e.get(s, [])][:late] for s in ("missed", "at_risk")}}
            for ws, e in answer["workstreams"].items() if e["counts"]}


def _refreshes(service) -> float:
    """How many refreshes of the figures have finished (the last thing a refresh does is observe its duration)."""
    return sum(sample.value for metric in service.metrics.figures_refresh_seconds.collect()
               for sample in metric.samples if sample.name.endswith("_count"))


async def test_overview_figures_equal_the_rule_over_the_whole_list(settings_for):
    # No deadline watcher: its first pass would publish alerts and write the snapshots again at its own moment.
    settings = settings_for(RoadmapSettings, watcher_enabled=False)
    docs = milestone_docs(600)
    db = db_of(settings)
    try:
        await db.milestones.insert_many(docs)
    finally:
        await db.client.close()
    po = {"X-API-Key": await make_key(settings, "opdc", "programme_office")}
    dga = {"X-API-Key": await make_key(settings, "dga")}
    statuses = {d["status"] for d in docs}
    assert {"missed", "at_risk", "completed", "in_progress"} <= statuses, statuses
    app = create_app(settings, clock=lambda: NOW)
    async with running(app) as http:
        items = await all_items(http, po)
        assert len(items) == 600
        days = [TODAY, PREV_END]
        at = [("at", d.isoformat()) for d in days]
        # Both ways of answering: counted in the database (no snapshot yet), then from the snapshots the
        # figures' refresh writes; each equals the rule run over the whole list.
        repo = app.state.roadmap.repo
        # The figures' first refresh, at start, writes the snapshots: it is over before they are taken away.
        await poll(lambda: _refreshes(app.state.roadmap) >= 1, 30, what="the figures' refresh at start finished")
        await repo.overview_snapshots.delete_many({})
        assert await repo.read_overview_snapshot("*") is None
        for way in ("counted", "snapshot"):
            if way == "snapshot":
                await app.state.roadmap.refresh_stats()
                assert (await repo.read_overview_snapshot("*"))["computed_at"]
            for agency, headers in ((None, po), ("ocsc", po), ("dga", dga)):
                params = at + [("late", "4")] + ([("agency", agency)] if agency else [])
                r = await http.get("/v1/overview", params=params, headers=headers)
                assert r.status_code == 200, r.text
                body = r.json()
                assert body["at"] == [d.isoformat() for d in days] and body["agency"] == agency
                assert (body["as_of"] is None) == (way == "counted"), (way, body["as_of"])
                expected = reports_domain.roadmap_digest(items, agency, days)
                assert comparable(body, 4) == comparable(expected, 4), way
                listed = [i for e in body["workstreams"].values() for s in ("missed", "at_risk") for i in e[s]]
                assert listed and all(agency is None or i["owner_agency"] == agency for i in listed)
                assert all("facts" not in i and "due_history" not in i and "timeline" not in i for i in listed)
                assert any(e["open_overdue_at"][PREV_END.isoformat()] for e in body["workstreams"].values())

        # An agency key reads its own figures without asking, and never another agency's.
        own = await http.get("/v1/overview", params=at, headers=dga)
        assert own.status_code == 200 and own.json()["agency"] == "dga"
        other = await http.get("/v1/overview", params={"agency": "ocsc"}, headers=dga)
        assert other.status_code == 403 and other.json()["reason"] == "agency_not_allowed"
        assert (await http.get("/v1/overview")).status_code == 401

        # moved=true: exactly the milestones whose due date left the baseline, as the quarterly report counts them.
        moved = await all_items(http, po, moved="true")
        assert {i["milestone_id"] for i in moved} == {i["milestone_id"] for i in quarterly.moved(items, None)}
        assert moved and len(moved) < len(items)
        unmoved = await all_items(http, po, moved="false")
        assert len(unmoved) + len(moved) == len(items)

        # The schedule changes: the same milestones in one read, largest slip first, as the report's rows.
        r = await http.get("/v1/schedule-changes", headers=po)
        assert r.status_code == 200, r.text
        rows = r.json()["items"]
        assert r.json()["total"] == len(rows) == len(moved)
        expected = [quarterly.slip_of(i, None) for i in quarterly.moved(moved, None)]
        assert [(x["milestone_id"], x["baseline_due_date"], x["due_date"], x["variance_days"]) for x in rows] == \
            [(e.milestone_id, e.baseline_due_date, e.due_date, e.variance_days) for e in expected]
        assert all(x["due_date_th"] and "facts" not in x and "title_th" in x for x in rows)
        few = (await http.get("/v1/schedule-changes", params={"limit": 3, "agency": "dga"}, headers=dga)).json()
        assert few["total"] == sum(1 for i in moved if i["owner_agency"] == "dga") and len(few["items"]) == 3
        assert {x["owner_agency"] for x in few["items"]} == {"dga"}
        assert (await http.get("/v1/schedule-changes", params={"agency": "ocsc"}, headers=dga)).status_code == 403

        for bad in ({"at": "2026-02-30"}, {"at": "0"}, {"late": "101"}, {"late": "-1"}, {"moved": "perhaps"},
                    [("at", f"2026-01-{d:02d}") for d in range(1, 10)]):
            path = "/v1/milestones" if "moved" in bad else "/v1/overview"
            r = await http.get(path, params=bad, headers=po)
            assert r.status_code == 400, (bad, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")
