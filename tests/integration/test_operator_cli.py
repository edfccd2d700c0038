"""The operators' commands over a real database, as a person runs them: `newnormal feedback|training verify`
finds a rollup that drifted from the records (exit 1, the document named), `recount` rebuilds it, `verify` is then
clean (exit 0); `newnormal notifier failed` lists what could not be delivered."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime

import pytest
from fakes_training import completion_record
from support import db_of, point_cli_at

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
async def operator_db(settings_for, monkeypatch):
    """`operator_db(SettingsClass)`: the service's database, with the command line pointed at it as an operator's
    environment does."""
    clients = []

    def open_db(settings_class):
        settings = settings_for(settings_class)
        point_cli_at(monkeypatch, settings)
        db = db_of(settings)
        clients.append(db.client)
        return db

    yield open_db
    for client in clients:
        await client.close()


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


async def drift_verify_recount(capsys, db, service: str, collection: str, doc_id: str, counter: str) -> dict:
    """verify is clean; a counter of one rollup document drifts; verify names that document (exit 1); recount
    (whose figures are returned) repairs it; verify is clean again."""
    assert await run_cli(capsys, service, "verify") == (0, json.dumps({"differences": 0}) + "\n")
    await db[collection].update_one({"_id": doc_id}, {"$inc": {counter: 5}})
    code, out = await run_cli(capsys, service, "verify")
    assert code == 1 and f"{collection}/{doc_id}" in out and json.loads(out.splitlines()[-1])["differences"] >= 1
    code, out = await run_cli(capsys, service, "recount")
    assert code == 0
    assert (await run_cli(capsys, service, "verify"))[0] == 0
    return json.loads(out)


async def test_feedback_verify_finds_drift_and_recount_repairs_it(operator_db, capsys):
    db = operator_db(FeedbackSettings)
    repo = FeedbackRepository(db, clock=lambda: NOW)
    await repo.ensure_indexes()
    assert len(await repo.store(feedback_events(30))) == 30
    drifted = await db[TOTALS].find_one({})
    figures = await drift_verify_recount(capsys, db, "feedback", TOTALS, drifted["_id"], "responses")
    assert figures["responses"] == 30


async def test_training_verify_finds_drift_and_recount_repairs_it(operator_db, capsys):
    db = operator_db(TrainingSettings)
    repo = TrainingRepository(db, lambda: NOW)
    await repo.ensure_indexes()
    docs = [completion_record("/agencies/dga/lms", f"e{i}", TrainingCourseCompleted(
        agency="dga", learner_ref=f"L{i % 4}", course_id=f"C{i}", competency="mindset", hours=2,
        completed_on=date(2026, 1, 5), passed=True), f"L{i % 4}", NOW) for i in range(12)]
    assert len(await repo.add_completions(docs)) == 12
    figures = await drift_verify_recount(capsys, db, "training", training_domain.ROLLUPS, "2569:dga:mindset",
                                         "completions")
    assert figures["written"] is True and figures["completions"] == 12 and figures["ready_learners"] == 4


async def test_notifier_failed_lists_undelivered_notifications(operator_db, capsys):
    db = operator_db(NotifierSettings)
    assert await run_cli(capsys, "notifier", "failed") == (0, "")  # nothing failed yet: nothing listed
    await db.notifications.insert_many([
        {"_id": "n-1", "state": "failed", "channel": "email", "milestone_id": "M-1", "attempts": 8,
         "created_at": NOW, "updated_at": NOW},
        {"_id": "n-2", "state": "sent", "channel": "email", "milestone_id": "M-2", "attempts": 1,
         "created_at": NOW, "updated_at": NOW}])
    code, out = await run_cli(capsys, "notifier", "failed")
    listed = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [item["id"] for item in listed] == ["n-1"]
