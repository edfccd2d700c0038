"""The xAPI LRS over the real broker and database: IFI identity, atomic id conflicts, voiding, reading back."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from fakes_training import completion_record
from ledger_fakes import Crash, CrashingStore
from support import cloudevent, db_of, make_key, poll, produce_events, running

from services.common.ledger_mongo import MongoLedgerStore
from services.contracts.topics import TRAINING_EVENTS
from services.contracts.training import TrainingCourseCompleted
from services.training import domain, xapi
from services.training.adapters import TrainingRepository
from services.training.main import create_app
from services.training.settings import TrainingSettings

pytestmark = pytest.mark.integration

START = datetime(2026, 4, 1, 3, 0, tzinfo=UTC)  # FY 2569
XAPI = {xapi.VERSION_HEADER: "1.0.3"}


def ticking():
    """A clock that moves one second per reading, so statements get distinct `stored` times."""
    counter = itertools.count()
    return lambda: START + timedelta(seconds=next(counter))


def statement(actor: dict, course: str, sid: str | None = None, success=True, competency="mindset") -> dict:
    st = {"timestamp": "2026-03-01T10:00:00+07:00", "actor": actor,
          "verb": {"id": xapi.VERB_COMPLETED, "display": {"en-US": "completed"}},
          "object": {"id": course, "definition": {"name": {"en-US": course.rsplit("/", 1)[-1]}}},
          "result": {"success": success, "duration": "PT2H"},
          "context": {"extensions": {xapi.EXT_COMPETENCY: competency}}}
    if sid:
        st["id"] = sid
    return st


def account(home: str, name: str) -> dict:
    return {"objectType": "Agent", "account": {"homePage": home, "name": name}}


async def test_identity_conflicts_voiding_and_reading_back(settings_for):
    settings = settings_for(TrainingSettings, learner_hmac_secret="lrs-integration-secret")
    app = create_app(settings, clock=ticking())
    key = await make_key(settings, "dga")
    db = db_of(settings)
    basic = "Basic " + base64.b64encode(f"lms:{key}".encode()).decode()
    h = {**XAPI, "Authorization": basic}  # LRS clients send the key as the HTTP Basic password
    async with running(app) as client:
        async def readiness(competency: str) -> dict:
            r = await client.get("/v1/readiness", params={"fiscal_year": 2569, "agency": "dga", "competency": competency},
                                 headers={"X-API-Key": key})
            rows = r.json()["rows"]
            return rows[0] if rows else {"completions": 0, "ready_learners": 0}

        # Identity: one account name on two LMSs is two learners; one mailbox in two cases is one.
        batch = [statement(account("https://lms.dga.or.th", "emp-1"), "https://lms.dga.or.th/c/1"),
                 statement(account("https://moodle.dga.or.th", "emp-1"), "https://moodle.dga.or.th/c/1"),
                 statement({"mbox": "mailto:Somchai@DGA.or.th"}, "https://lms.dga.or.th/c/2"),
                 statement({"mbox": "mailto:Somchai@dga.OR.TH"}, "https://lms.dga.or.th/c/3")]
        r = await client.post("/xapi/statements", json=batch, headers=h)
        assert r.status_code == 200 and len(r.json()) == 4, r.text
        ids = r.json()

        async def four():
            row = await readiness("mindset")
            return row if row["completions"] == 4 else None

        row = await poll(four, 60, what="four completions counted")
        assert row["ready_learners"] == 3

        # Strict types and refusals carry a reason, the path and the version header.
        r = await client.post("/xapi/statements", json=statement(account("https://lms.dga.or.th", "emp-9"),
                                                                 "https://lms.dga.or.th/c/1", success="false"), headers=h)
        assert r.status_code == 400 and r.json()["reason"] == "invalid_type" and "result.success" in r.json()["detail"]
        assert r.headers[xapi.VERSION_HEADER] == "1.0.3"
        deep = {"actor": {"mbox": "mailto:a@b.c"}, "verb": {"id": "http://x/y"}, "object": {"id": "http://x/z"}}
        deep["result"] = {"extensions": {"http://x/e": json.loads("[" * 60 + "]" * 60)}}
        r = await client.post("/xapi/statements", json=deep, headers=h)
        assert r.status_code == 400 and r.json()["reason"] in ("json_too_deep", "too_complex")
        assert r.headers[xapi.VERSION_HEADER] == "1.0.3"
        r = await client.put("/xapi/statements", params={"statementId": "not-a-uuid"}, json=deep, headers=h)
        assert r.status_code == 400 and r.json()["reason"] == "invalid_statement_id"
        assert r.headers[xapi.VERSION_HEADER] == "1.0.3"
        r = await client.post("/xapi/statements", headers={**XAPI, "Authorization": "Basic " + base64.b64encode(
            b"lms:nnk_dga_wrong").decode()}, json=deep)
        assert r.status_code == 401 and r.headers[xapi.VERSION_HEADER] == "1.0.3"

        # Ten concurrent requests of one id with different content: one 200, nine 409, and the stored
        # completion is the remembered statement.
        sid = str(uuid.uuid4())
        variants = [statement(account("https://lms.dga.or.th", f"racer-{i}"), f"https://lms.dga.or.th/race/{i}", sid,
                              competency="public_service") for i in range(10)]
        answers = await asyncio.gather(*[
            client.put("/xapi/statements", params={"statementId": sid}, json=v, headers=h) if i % 2 else
            client.post("/xapi/statements", json=v, headers=h) for i, v in enumerate(variants)])
        codes = sorted(a.status_code for a in answers)
        assert sum(c in (200, 204) for c in codes) == 1 and codes.count(409) == 9, codes
        winner = next(i for i, a in enumerate(answers) if a.status_code in (200, 204))
        got = await client.get("/xapi/statements", params={"statementId": sid}, headers=h)
        assert got.status_code == 200 and got.json()["object"]["id"] == f"https://lms.dga.or.th/race/{winner}"
        assert got.json()["id"] == sid and "racer" not in got.text  # actor stored as a keyed hash only

        async def raced():
            return (await readiness("public_service"))["completions"] == 1

        await poll(raced, 60, what="race winner counted")
        [stored] = [d async for d in db.events.find({"id": f"xapi:{sid}"})]
        assert stored["data"]["course_id"] == f"https://lms.dga.or.th/race/{winner}"

        # Voiding: not a StatementRef is refused; a voided completion stops counting, exactly once.
        voider = {"mbox": "mailto:registrar@dga.or.th"}
        r = await client.post("/xapi/statements", headers=h, json={
            "actor": voider, "verb": {"id": xapi.VERB_VOIDED}, "object": {"id": "https://lms.dga.or.th/c/1"}})
        assert r.status_code == 400 and r.json()["reason"] == "invalid_voiding"
        void_id = str(uuid.uuid4())
        voiding = {"id": void_id, "actor": voider, "verb": {"id": xapi.VERB_VOIDED, "display": {"en-US": "voided"}},
                   "object": {"objectType": "StatementRef", "id": ids[1]}}
        for _ in range(2):  # the LMS retries: same statement, nothing more happens
            r = await client.post("/xapi/statements", json=voiding, headers=h)
            assert r.status_code == 200 and r.json() == [void_id]

        async def voided():
            row = await readiness("mindset")
            return row if row["completions"] == 3 else None

        row = await poll(voided, 60, what="voided completion no longer counted")
        assert row["ready_learners"] == 2 and row["passed_completions"] == 3
        # The retraction redelivered (a batch applied again after a lost commit) takes nothing out twice.
        repo = app.state.training_repo
        ref = (f"/agencies/dga/xapi\x1fxapi:{ids[1]}", f"/agencies/dga/xapi\x1fxapi-void:{void_id}")
        assert await repo.void_completions([ref]) == 0
        assert (await readiness("mindset"))["completions"] == 3
        # A retraction sent as an event by the agency itself (HTTP intake), of a completion it sent over Kafka.
        kafka_completion = cloudevent("training.course.completed", {
            "agency": "dga", "learner_ref": "emp-kafka", "course_id": "K-1", "competency": "academic_knowledge",
            "hours": 3, "completed_on": "2026-03-02", "passed": True}, agency="dga", time=START.isoformat())
        await produce_events(settings.kafka_bootstrap_servers, TRAINING_EVENTS, [kafka_completion])

        async def academic(n: int):
            row = await readiness("academic_knowledge")
            return row if row["completions"] == n else None

        await poll(lambda: academic(1), 60, what="kafka completion counted")
        retract = cloudevent("training.course.completion_voided", {
            "agency": "dga", "voided_source": kafka_completion["source"], "voided_id": kafka_completion["id"]},
            agency="dga", time=START.isoformat())
        r = await client.post("/v1/events", json=[retract], headers={"X-API-Key": key,
                                                                      "Content-Type": "application/cloudevents-batch+json"})
        assert r.status_code == 202, r.text
        row = await poll(lambda: academic(0), 60, what="kafka completion retracted")
        assert row["ready_learners"] == 0
        # A retraction that arrives before its completion: the completion is stored voided, never counted.
        early = str(uuid.uuid4())
        r = await client.post("/xapi/statements", headers=h, json={
            "actor": voider, "verb": {"id": xapi.VERB_VOIDED}, "object": {"objectType": "StatementRef", "id": early}})
        assert r.status_code == 200
        early_void = r.json()[0]
        late = statement(account("https://lms.dga.or.th", "emp-late"), "https://lms.dga.or.th/c/9", early)
        r = await client.post("/xapi/statements", json=late, headers=h)
        assert r.status_code == 200

        async def late_settled():
            # Its record and its state, stored and voided, once the batch that stored it has finished.
            doc = await db.events.find_one({"id": f"xapi:{early}"}, {"_id": 1})
            state = doc and await db[domain.STATES].find_one({"_id": doc["_id"]})
            open_writes = await db.training_journal.count_documents({})
            return state if state and (state.get("stored"), state.get("voided")) == (1, 1) and not open_writes else None

        # Both orders end the same: stored, voided and not counted (in one batch: counted, then taken out).
        await poll(late_settled, 60, what="late completion stored and voided, and its batch finished")
        row = await readiness("mindset")
        assert row["completions"] == 3 and row["ready_learners"] == 2
        recount = await repo.recount(write=False)
        rollup = await db.training_readiness.find_one({"_id": "2569:dga:mindset"})
        assert {k: rollup[k] for k in recount["2569:dga:mindset"]} == recount["2569:dga:mindset"]

        # Reading back: voided by voidedStatementId only; filters; paging with `more`.
        r = await client.get("/xapi/statements", params={"statementId": ids[1]}, headers=h)
        assert r.status_code == 404 and r.headers[xapi.VERSION_HEADER] == "1.0.3"
        r = await client.get("/xapi/statements", params={"voidedStatementId": ids[1]}, headers=h)
        assert r.status_code == 200 and r.json()["id"] == ids[1]
        r = await client.get("/xapi/statements", headers=h,
                             params={"agent": json.dumps({"mbox": "mailto:somchai@dga.or.th"})})
        assert r.status_code == 200 and r.json()["statements"] == []  # the local part is case-sensitive
        r = await client.get("/xapi/statements", headers=h,
                             params={"agent": json.dumps({"mbox": "mailto:Somchai@dga.or.th"}), "ascending": "true"})
        # One request: one `stored` instant, so their order is the id's.
        assert [s["id"] for s in r.json()["statements"]] == sorted([ids[2], ids[3]])
        assert "X-Experience-API-Consistent-Through" in r.headers
        r = await client.get("/xapi/statements", params={"verb": xapi.VERB_VOIDED}, headers=h)
        assert {s["id"] for s in r.json()["statements"]} >= {void_id}
        r = await client.get("/xapi/statements", params={"activity": "https://lms.dga.or.th/c/2"}, headers=h)
        assert [s["id"] for s in r.json()["statements"]] == [ids[2]]
        seen: list[str] = []
        url, params = "/xapi/statements", {"limit": "2", "verb": xapi.VERB_COMPLETED}
        while url:
            r = await client.get(url, params=params, headers=h)
            assert r.status_code == 200 and len(r.json()["statements"]) <= 2
            seen += [s["id"] for s in r.json()["statements"]]
            url, params = r.json()["more"], None
        # Three pages; voided statements (voided after or before they arrived) are left out; the nine losers
        # were never stored; the two voiding statements meet `verb` through their completed targets (StatementRef
        # filter-through, the late target backfilling its earlier voiding statement).
        assert len(seen) == len(set(seen)) == 6 and ids[1] not in seen and early not in seen and sid in seen
        assert {void_id, early_void} <= set(seen)
        r = await client.get("/xapi/statements", params={"since": (START + timedelta(days=1)).isoformat()}, headers=h)
        assert r.json()["statements"] == []
        other = await make_key(settings, "ocsc")
        r = await client.get("/xapi/statements", params={"statementId": ids[0]}, headers={**XAPI, "X-API-Key": other})
        assert r.status_code == 404  # scoped by the key's agency
        about = await client.get("/xapi/about")
        assert "1.0.3" in about.json()["version"]
    await db.client.close()


async def test_retractions_survive_crashes_at_every_step_and_equal_recount(settings_for):
    settings = settings_for(TrainingSettings, learner_hmac_secret="lrs-integration-secret")
    db = db_of(settings)
    clock = [START]
    repo = TrainingRepository(db, lambda: clock[0], stale_claim_seconds=60)
    await repo.ensure_indexes()

    def doc(i: int, learner: str) -> dict:
        data = TrainingCourseCompleted(agency="dga", learner_ref=learner, course_id=f"C{i}", competency="mindset",
                                       hours=2, completed_on=date(2026, 1, 5), passed=True)
        return completion_record("/agencies/dga/t", f"e{i}", data, learner, clock[0])

    # L0 passed two courses, L1..L3 one each: 5 completions, 4 ready learners.
    batch = [doc(0, "L0"), doc(1, "L0")] + [doc(i, f"L{i - 1}") for i in (2, 3, 4)]
    assert len(await repo.add_completions(batch)) == 5

    # Retract one of L0's two passes (L0 stays ready), then L1's, L2's only pass (they stop being ready). A replica
    # whose process dies at the write path's call `at`: 0 opens the journal entry, 1 stores the retraction, 2-4 the
    # completion states (an insert that finds them stored, a read, a write), 5-6 the learners, 7-8 the rollups,
    # 9 closes the entry.
    for n, at in enumerate((2, 7, 9)):  # after the retraction is stored, after the learners, after the rollups
        ref = (f"/agencies/dga/t\x1fe{n + 1}", f"/agencies/dga/t\x1fretract-{n}")
        dying = TrainingRepository(db, lambda: clock[0], stale_claim_seconds=60,
                                   store=CrashingStore(MongoLedgerStore(db), at=at))
        with pytest.raises(Crash):
            await dying.void_completions([ref])
        assert await repo.void_completions([ref]) == 0  # redelivered: already voided by the first
        clock[0] += timedelta(seconds=61)
        assert await repo.sweep() == 1
        assert await repo.sweep() == 0
    rollup = await db.training_readiness.find_one({"_id": "2569:dga:mindset"})
    recount = await repo.recount(write=False)
    assert {k: rollup[k] for k in recount["2569:dga:mindset"]} == recount["2569:dga:mindset"]
    assert rollup["completions"] == 2 and rollup["ready_learners"] == 2  # L0 and L3
    # A new pass of a learner whose passes were all retracted makes it ready again.
    assert len(await repo.add_completions([doc(9, "L1")])) == 1
    rollup = await db.training_readiness.find_one({"_id": "2569:dga:mindset"})
    assert rollup["ready_learners"] == 3 and (await repo.recount(write=False))["2569:dga:mindset"]["ready_learners"] == 3
    await db.client.close()


async def test_statement_formats_over_the_real_servers(settings_for):
    """`format` (exact, ids, canonical with Accept-Language) on a single-statement GET and on a filtered page, and
    contextActivities always as arrays (xAPI 1.0.3 Communication 2.1.3, Data 2.4.6.2)."""
    settings = settings_for(TrainingSettings, learner_hmac_secret="lrs-format-secret")
    app = create_app(settings)
    key = await make_key(settings, "dga")
    h = {**XAPI, "X-API-Key": key}
    sid = str(uuid.uuid4())
    verb = f"http://lms.dga.or.th/verbs/{uuid.uuid4()}"
    st = {"id": sid, "actor": {"mbox": "mailto:format@dga.or.th", "name": "F"},
          "verb": {"id": verb, "display": {"en-US": "watched", "en-GB": "watched (uk)", "th": "ดู"}},
          "object": {"id": "https://lms.dga.or.th/c/video", "definition": {
              "name": {"en-US": "Video", "en-GB": "Video (uk)"}, "type": "http://adlnet.gov/expapi/activities/media"}},
          "context": {"contextActivities": {"category": {"id": "https://lms.dga.or.th/cat/media", "definition": {
              "name": {"en-US": "Media", "th": "สื่อ"}}}}}}
    async with running(app) as client:
        r = await client.post("/xapi/statements", json=st, headers=h)
        assert r.status_code == 200, r.text

        async def one(fmt: str | None, lang: str | None) -> dict:
            params = {"statementId": sid} | ({"format": fmt} if fmt else {})
            headers = h | ({"Accept-Language": lang} if lang else {})
            async def fetched() -> dict | None:
                resp = await client.get("/xapi/statements", params=params, headers=headers)
                return resp.json() if resp.status_code == 200 else None
            return await poll(fetched, timeout=30, what=f"statement readable as {fmt}")

        exact = await one(None, "en-GB")
        assert exact["verb"]["display"] == st["verb"]["display"]  # format absent: exact, Accept-Language unused
        assert exact["context"]["contextActivities"]["category"][0]["id"] == "https://lms.dga.or.th/cat/media"
        canonical = await one("canonical", "th;q=0.5, en-GB")
        assert canonical["verb"]["display"] == {"en-GB": "watched (uk)"}
        assert canonical["object"]["definition"]["name"] == {"en-GB": "Video (uk)"}
        assert canonical["context"]["contextActivities"]["category"][0]["definition"]["name"] == {"th": "สื่อ"}
        ids = await one("ids", None)
        assert ids["verb"] == {"id": verb} and ids["object"] == {"id": "https://lms.dga.or.th/c/video"}
        assert ids["context"]["contextActivities"] == {"category": [{"id": "https://lms.dga.or.th/cat/media"}]}
        assert set(ids["actor"]) == {"objectType", "account"}
        page = await client.get("/xapi/statements", params={"verb": verb, "format": "canonical"},
                                headers=h | {"Accept-Language": "en"})
        assert [s["verb"]["display"] for s in page.json()["statements"]] == [{"en-US": "watched"}]
        bad = await client.get("/xapi/statements", params={"statementId": sid, "format": "pretty"}, headers=h)
        assert bad.status_code == 400 and bad.json()["reason"] == "invalid_parameter"
        assert bad.headers[xapi.VERSION_HEADER] == "1.0.3"
        # A parameter given twice: which one counts would be each reader's choice, so none does.
        other = "7fbd600f-d17c-4c74-801a-2ec2e53231c2"
        twice = await client.get("/xapi/statements", params=[("statementId", sid), ("statementId", other)], headers=h)
        assert twice.status_code == 400 and twice.json()["reason"] == "invalid_parameter", twice.text
        assert "statementId is given more than once" in twice.json()["detail"]
        twice = await client.get("/xapi/statements", params=[("verb", verb), ("verb", verb)], headers=h)
        assert twice.status_code == 400 and twice.json()["reason"] == "invalid_parameter", twice.text
        put_twice = await client.put("/xapi/statements", params=[("statementId", other), ("statementId", sid)],
                                     json={}, headers=h)
        assert put_twice.status_code == 400 and put_twice.json()["reason"] == "invalid_statement_id", put_twice.text
        assert put_twice.headers[xapi.VERSION_HEADER] == "1.0.3"
