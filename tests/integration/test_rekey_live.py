"""Records stored before keys were strings, over the real broker and database: a database written by the version
that keyed audit records, responses and idempotency claims by documents ({source, id}, {scope, key_sha256}) is moved
to the string keys when a service starts, an interrupted write listed under the old keys is finished, and the events
of that time redelivered afterwards are duplicates, never stored or counted a second time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support import cloudevent, db_of, kiosk_response, poll, produce_events, running

from services.common.idempotency import claim_id
from services.contracts import topics
from services.contracts.envelope import document_id
from services.feedback.adapters import JOURNAL, TOTALS, FeedbackRepository
from services.feedback.main import create_app as feedback_app
from services.feedback.settings import FeedbackSettings
from services.roadmap.main import create_app as roadmap_app
from services.roadmap.settings import RoadmapSettings

pytestmark = pytest.mark.integration


def response(i: int) -> dict[str, Any]:
    return kiosk_response(i, "old")


async def as_stored_before(collection, docs: list[dict[str, Any]], **extra: Any) -> None:
    """Put `docs` back as the old version stored them: keyed {source, id}."""
    await collection.delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
    await collection.insert_many([{**d, "_id": {"source": d["source"], "id": d["id"]}, **extra} for d in docs])


async def total_responses(db) -> int:
    return sum([d.get("responses", 0) async for d in db[TOTALS].find({})])


async def test_feedback_moves_old_keys_finishes_their_open_write_and_counts_redelivery_once(settings_for):
    settings = settings_for(FeedbackSettings)
    db = db_of(settings)
    try:
        async with running(feedback_app(settings)):
            await produce_events(settings.kafka_bootstrap_servers, topics.FEEDBACK_EVENTS, [response(i) for i in range(20)])
            await poll(lambda: _at_least(db.events.count_documents({}), 20), 60, what="20 responses stored")
            await poll(lambda: _at_least(total_responses(db), 20), 30, what="20 responses counted")
            await poll(lambda: _none_open(db), 30, what="the writes finished in every book")

        # The database as the old version left it, crashed in the middle of a write: two responses stored but not
        # yet counted, their journal entry open and listing them by their old keys; every other response old-keyed.
        docs = await db.events.find({}).to_list(None)
        interrupted, rest = docs[:2], docs[2:]
        await db.events.delete_many({"_id": {"$in": [d["_id"] for d in interrupted]}})
        await FeedbackRepository(db).recount(timedelta(seconds=1))  # the rollups without the two
        assert await total_responses(db) == 18
        token = uuid.uuid4().hex
        await as_stored_before(db.events, interrupted, rollup_token=token)
        await db[JOURNAL].insert_one({"_id": token, "at": datetime.now(UTC) - timedelta(days=1), "kind": "events",
                                      "responses": [{"source": d["source"], "id": d["id"]} for d in interrupted]})
        await as_stored_before(db.events, rest)
        claim = {"scope": "dga", "key_sha256": "ab" * 32}
        await db.feedback_idempotency_keys.insert_one({"_id": claim, "fingerprint": "f", "time": datetime.now(UTC),
                                                       "claimed_at": datetime.now(UTC)})

        async with running(feedback_app(settings)):
            assert await db.events.count_documents({"_id": {"$type": "object"}}) == 0
            assert {d["_id"] async for d in db.events.find({}, {"_id": 1})} == {document_id(d["source"], d["id"]) for d in docs}
            assert await db[JOURNAL].count_documents({}) == 0  # the interrupted write was finished at start
            assert await total_responses(db) == 20
            stored_claim = await db.feedback_idempotency_keys.find_one({})
            assert stored_claim["_id"] == f"dga {'ab' * 32}" and claim_id("dga", "k").startswith("dga ")

            # The old events come again (an agency's retry, a replayed topic), with one new one.
            await produce_events(settings.kafka_bootstrap_servers, topics.FEEDBACK_EVENTS, [response(i) for i in range(21)])
            await poll(lambda: _at_least(db.events.count_documents({}), 21), 60, what="the new response stored")
            await poll(lambda: _at_least(total_responses(db), 21), 30, what="the new response counted")
            # The totals are the first book of the write: the daily rollups follow, then the journal entry closes.
            await poll(lambda: _none_open(db), 30, what="the write finished in every book")
            operator = FeedbackRepository(db)
            assert await operator.rollup_differences() == []
            assert await db.events.count_documents({}) == 21 and await total_responses(db) == 21
    finally:
        await db.client.close()


async def test_the_audit_trail_moves_to_string_keys_and_an_old_event_redelivered_is_a_duplicate(settings_for):
    settings = settings_for(RoadmapSettings)
    db = db_of(settings)
    due = (datetime.now(UTC) + timedelta(days=90)).date().isoformat()

    def plan(mid: str) -> dict[str, Any]:
        return cloudevent("roadmap.milestone.planned", {
            "milestone_id": mid, "title_en": f"Milestone {mid}", "workstream": "technology_access",
            "owner_agency": "dga", "due_date": due}, agency="dga", id=f"plan-{mid}")

    try:
        async with running(roadmap_app(settings)):
            await produce_events(settings.kafka_bootstrap_servers, topics.ROADMAP_EVENTS, [plan("OLD-1"), plan("OLD-2")])
            await poll(lambda: _at_least(db.events.count_documents({}), 2), 60, what="two plans stored")
        await as_stored_before(db.events, await db.events.find({}).to_list(None))

        async with running(roadmap_app(settings)):
            assert await db.events.count_documents({"_id": {"$type": "object"}}) == 0
            await produce_events(settings.kafka_bootstrap_servers, topics.ROADMAP_EVENTS,
                                 [plan("OLD-1"), plan("OLD-2"), plan("NEW-3")])
            await poll(lambda: _at_least(db.events.count_documents({}), 3), 60, what="the new plan stored")
            # One partition (one agency): the new plan stored means the redelivered ones were handled before it.
            assert await db.events.count_documents({}) == 3
            assert sorted([d["id"] async for d in db.events.find({})]) == ["plan-NEW-3", "plan-OLD-1", "plan-OLD-2"]
    finally:
        await db.client.close()


async def _at_least(count, n: int) -> bool:
    return (await count) >= n


async def _none_open(db) -> bool:
    return await db[JOURNAL].count_documents({}) == 0
