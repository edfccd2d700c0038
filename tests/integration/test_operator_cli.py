"""The operators' commands over a real database, as a person runs them: `newnormal feedback|training verify`
finds a rollup that drifted from the records (exit 1, the document named), `recount` rebuilds it, `verify` is then
clean (exit 0); `newnormal notifier failed` lists what could not be delivered."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime

import pytest
from support import db_of

from services import cli
from services.contracts.envelope import make_event
from services.contracts.training import TrainingCourseCompleted
from services.feedback.adapters import TOTALS, FeedbackRepository
from services.feedback.domain import prepare
from services.feedback.settings import FeedbackSettings
from services.notifier.settings import NotifierSettings
from services.training import domain as training_domain
from services.training.adapters import TrainingRepository
from services.training.settings import TrainingSettings

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def operator_env(monkeypatch):
    """Point the command line at a service's settings, as an operator's environment does."""

    def point(settings) -> None:
        monkeypatch.setenv("NEWNORMAL_MONGO_URI", settings.mongo_uri.get_secret_value())
        monkeypatch.setenv("NEWNORMAL_MONGO_DB", settings.mongo_db)

    return point


async def run_cli(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(argv))  # the command runs its own event loop
    return code, capsys.readouterr().out


def feedback_events(n: int) -> list:
    return [prepare(make_event("feedback.response.submitted", {
        "agency": "dga", "service_name": "ต่ออายุใบอนุญาต", "channel": ["online_web", "walk_in"][i % 2],
        "age_group": ["18_24", "60_plus"][i % 2], "satisfaction": 1 + i % 5, "tech_difficulty": "none",
        "aware_of_digital_channels": bool(i % 2), "submitted_at": f"2026-03-{1 + i % 20:02d}T09:30:00+07:00"},
        agency="dga", source="/agencies/dga/kiosk", id=f"r-{i}", time=NOW)) for i in range(n)]


async def test_feedback_verify_finds_drift_and_recount_repairs_it(settings_for, operator_env, capsys):
    settings = settings_for(FeedbackSettings)
    operator_env(settings)
    db = db_of(settings)
    try:
        repo = FeedbackRepository(db, clock=lambda: NOW)
        await repo.ensure_indexes()
        assert len(await repo.store(feedback_events(30))) == 30
        assert await run_cli(capsys, "feedback", "verify") == (0, json.dumps({"differences": 0}) + "\n")

        drifted = await db[TOTALS].find_one({})
        await db[TOTALS].update_one({"_id": drifted["_id"]}, {"$inc": {"responses": 1}})
        code, out = await run_cli(capsys, "feedback", "verify")
        assert code == 1 and f"{TOTALS}/{drifted['_id']}" in out and json.loads(out.splitlines()[-1])["differences"] >= 1

        code, out = await run_cli(capsys, "feedback", "recount")
        assert code == 0 and json.loads(out)["responses"] == 30
        assert (await run_cli(capsys, "feedback", "verify"))[0] == 0
    finally:
        await db.client.close()


async def test_training_verify_finds_drift_and_recount_repairs_it(settings_for, operator_env, capsys):
    settings = settings_for(TrainingSettings)
    operator_env(settings)
    db = db_of(settings)
    try:
        repo = TrainingRepository(db, lambda: NOW)
        await repo.ensure_indexes()
        docs = [training_domain.completion_doc("/agencies/dga/lms", f"e{i}", TrainingCourseCompleted(
            agency="dga", learner_ref=f"L{i % 4}", course_id=f"C{i}", competency="mindset", hours=2,
            completed_on=date(2026, 1, 5), passed=True), f"L{i % 4}", NOW) for i in range(12)]
        assert await repo.add_completions(docs) == 12
        assert (await run_cli(capsys, "training", "verify"))[0] == 0

        rollup_id = "2569:dga:mindset"
        await db[training_domain.ROLLUPS].update_one({"_id": rollup_id}, {"$inc": {"completions": 5}})
        code, out = await run_cli(capsys, "training", "verify")
        assert code == 1 and rollup_id in out

        code, out = await run_cli(capsys, "training", "recount")
        figures = json.loads(out)
        assert code == 0 and figures["written"] is True and figures["completions"] == 12 and figures["ready_learners"] == 4
        assert (await run_cli(capsys, "training", "verify"))[0] == 0
    finally:
        await db.client.close()


async def test_notifier_failed_lists_undelivered_notifications(settings_for, operator_env, capsys):
    settings = settings_for(NotifierSettings)
    operator_env(settings)
    db = db_of(settings)
    try:
        assert await run_cli(capsys, "notifier", "failed") == (0, "")  # nothing failed yet: nothing listed
        await db.notifications.insert_many([
            {"_id": "n-1", "state": "failed", "channel": "email", "milestone_id": "M-1", "attempts": 8,
             "created_at": NOW, "updated_at": NOW},
            {"_id": "n-2", "state": "sent", "channel": "email", "milestone_id": "M-2", "attempts": 1,
             "created_at": NOW, "updated_at": NOW}])
        code, out = await run_cli(capsys, "notifier", "failed")
        listed = [json.loads(line) for line in out.splitlines()]
        assert code == 0 and [item["id"] for item in listed] == ["n-1"]
    finally:
        await db.client.close()
