"""Rebuilds while the services run, over the real broker and database: `feedback recount` and `roadmap rebuild` run
(as the command line runs them, from a second process's objects) while events keep arriving; a counter or a
milestone that had drifted is right afterwards, nothing sent during the rebuild is lost or counted twice."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from support import cloudevent, db_of, kiosk_response, poll, produce_events, running

from services.contracts import topics
from services.feedback.adapters import JOURNAL, TOTALS, FeedbackRepository
from services.feedback.main import create_app as feedback_app
from services.feedback.settings import FeedbackSettings
from services.roadmap.adapters import MilestoneRepository
from services.roadmap.handlers import RoadmapService
from services.roadmap.main import create_app as roadmap_app
from services.roadmap.metrics import RoadmapMetrics
from services.roadmap.settings import RoadmapSettings

pytestmark = pytest.mark.integration


def response(i: int) -> dict[str, Any]:
    return kiosk_response(i, "live")


async def test_feedback_recount_while_responses_arrive_loses_and_doubles_nothing(settings_for):
    settings = settings_for(FeedbackSettings)
    db = db_of(settings)
    app = feedback_app(settings)
    try:
        async with running(app):
            await produce_events(settings.kafka_bootstrap_servers, topics.FEEDBACK_EVENTS, [response(i) for i in range(200)])
            await poll(lambda: _at_least(db.events.count_documents({}), 200), 60, what="the first 200 stored")
            await db[TOTALS].update_many({}, {"$inc": {"responses": 3}})  # drift

            async def keep_sending() -> None:
                # Paced by the consumer, not a clock: each batch goes once the one before is in the audit trail, so
                # the rebuild falls among the batches (one sent during the pause waits for it and goes on after).
                for start in range(200, 600, 50):
                    await produce_events(settings.kafka_bootstrap_servers, topics.FEEDBACK_EVENTS,
                                         [response(i) for i in range(start, start + 50)])
                    await poll(lambda n=start + 50: _at_least(db.events.count_documents({}), n), 90,
                               what=f"responses up to {start + 50} stored")

            operator = FeedbackRepository(db)  # as `newnormal feedback recount` builds it
            sending = asyncio.ensure_future(keep_sending())
            figures = await operator.recount(timedelta(seconds=settings.feedback_sweep_grace_seconds))
            await sending
            assert figures["responses"] >= 200
            await poll(lambda: _at_least(db.events.count_documents({}), 600), 90, what="all 600 stored")
            # The drift is gone and what arrived during the rebuild is counted once: the rollups equal a recount.
            await poll(lambda: _empty(operator.rollup_differences()), 60, what="rollups equal to a recount")
            assert await db[f"{JOURNAL}_pause"].count_documents({}) == 0  # writes go on: the pause is lifted
    finally:
        await db.client.close()


async def test_roadmap_rebuild_while_events_arrive_restores_a_drifted_milestone(settings_for):
    settings = settings_for(RoadmapSettings)
    db = db_of(settings)
    app = roadmap_app(settings)

    def plan(mid: str, due: date, deps: list[str] | None = None) -> dict[str, Any]:
        return cloudevent("roadmap.milestone.planned", {
            "milestone_id": mid, "title_th": f"งาน {mid}", "workstream": "technology_access", "owner_agency": "dga",
            "due_date": due.isoformat(), "depends_on": deps or []}, agency="dga", id=f"plan-{mid}")

    def progress(mid: str, n: int) -> dict[str, Any]:
        return cloudevent("roadmap.milestone.progressed", {
            "milestone_id": mid, "percent_complete": float(n), "as_of": datetime.now(UTC).isoformat()},
            agency="dga", id=f"progress-{mid}-{n}")

    try:
        async with running(app):
            plans = [plan(f"M{i}", date(2027, 1, 1 + i), [f"M{i - 1}"] if i else None) for i in range(20)]
            await produce_events(settings.kafka_bootstrap_servers, topics.ROADMAP_EVENTS, plans)
            await poll(lambda: _at_least(db.milestones.count_documents({}), 20), 60, what="20 milestones")
            await db.milestones.update_one({"_id": "M3"}, {"$set": {"percent_complete": 99.0, "status": "completed"}})
            await db.milestones.delete_one({"_id": "M7"})

            async def keep_sending() -> None:  # paced by the consumer, as in the feedback test above
                for n in range(1, 11):
                    await produce_events(settings.kafka_bootstrap_servers, topics.ROADMAP_EVENTS,
                                         [progress(f"M{i}", n * 5) for i in range(0, 20, 2)])
                    await poll(lambda n=n: _at_least(db.events.count_documents({}), 20 + 10 * n), 90,
                               what=f"progress round {n} in the audit trail")

            operator = RoadmapService(MilestoneRepository(db), None, RoadmapMetrics(CollectorRegistry()),  # type: ignore[arg-type]
                                      settings)  # as `newnormal roadmap rebuild` builds it
            sending = asyncio.ensure_future(keep_sending())
            result = await operator.rebuild(cascade=False)
            await sending
            assert result["milestones"] == 20

            async def settled() -> dict[str, dict[str, Any]] | None:
                docs = {d["_id"]: d async for d in db.milestones.find({})}
                done = len(docs) == 20 and all(docs[f"M{i}"].get("percent_complete") == 50 for i in range(0, 20, 2))
                return docs if done else None

            docs = await poll(settled, 90, what="every progress report applied once")
            assert docs["M3"]["status"] != "completed" and docs["M3"].get("percent_complete", 0) == 0
            assert "M7" in docs and docs["M7"]["depends_on"] == ["M6"]
            assert all(len({f["key"] for f in d["facts"]}) == len(d["facts"]) for d in docs.values())  # none twice
    finally:
        await db.client.close()


async def _at_least(count, n: int) -> bool:
    return (await count) >= n


async def _empty(differences) -> bool:
    return await differences == []
