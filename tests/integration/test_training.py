"""Training service over the real broker and database: HTTP, Kafka, xAPI and CSV agree in readiness and /metrics."""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from fakes_training import completion_record
from ledger_fakes import Crash, CrashingStore
from support import cloudevent, db_of, make_key, poll, produce_events, running
from xapi_examples import statement

from services.common.ledger_mongo import MongoLedgerStore
from services.contracts.topics import TRAINING_EVENTS
from services.contracts.training import TrainingCourseCompleted
from services.training import domain, xapi
from services.training.adapters import TrainingRepository
from services.training.importer import run_import
from services.training.main import create_app
from services.training.settings import TrainingSettings

pytestmark = pytest.mark.integration

NOW = datetime(2026, 4, 1, 3, 0, tzinfo=UTC)  # FY 2569, about half elapsed
XAPI = {xapi.VERSION_HEADER: "1.0.3"}


def completion(agency: str, learner: str, course: str, competency="digital_technology", passed=True, hours=6,
               on="2026-02-10") -> dict:
    return {"agency": agency, "learner_ref": learner, "course_id": course, "competency": competency, "hours": hours,
            "completed_on": on, "passed": passed}




def metric(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_http_kafka_and_xapi_agree_in_readiness_and_metrics(settings_for, kafka_bootstrap):
    settings = settings_for(TrainingSettings, learner_hmac_secret="integration-secret")
    app = create_app(settings, clock=lambda: NOW)
    dga_key = await make_key(settings, "dga")
    db = db_of(settings)
    async with running(app) as client:
        h = {"X-API-Key": dga_key, "Content-Type": "application/cloudevents-batch+json"}
        # Targets over HTTP: the later one replaces the earlier, both are in the history.
        t1 = cloudevent("training.target.set", {"agency": "dga", "competency": "digital_technology", "fiscal_year": 2569,
                                                "headcount": 10}, agency="dga", time="2025-10-05T09:00:00+07:00")
        t2 = cloudevent("training.target.set", {"agency": "dga", "competency": "digital_technology", "fiscal_year": 2569,
                                                "headcount": 4}, agency="dga", time="2026-01-05T09:00:00+07:00")
        national = cloudevent("training.course.completed", completion("dga", "1101700230708", "DG-1"), agency="dga")
        r = await client.post("/v1/events", json=[t2, t1], headers=h)
        assert r.status_code == 202, r.text
        r = await client.post("/v1/events", json=[national], headers=h)
        assert r.status_code == 400 and r.json()["errors"][0]["reason"] == "invalid_data"
        assert "national ID" in r.json()["errors"][0]["detail"]

        # Completions over Kafka: emp-1 passes three digital courses (counts once), emp-2 fails, one duplicate,
        # plus an ocsc target with no progress at all.
        e1 = cloudevent("training.course.completed", completion("dga", "emp-1", "DG-1"), agency="dga")
        kafka_events = [
            e1, dict(e1),
            cloudevent("training.course.completed", completion("dga", "emp-1", "DG-2", hours=3), agency="dga"),
            cloudevent("training.course.completed", completion("dga", "emp-1", "DG-3", hours=1), agency="dga"),
            cloudevent("training.course.completed", completion("dga", "emp-2", "DG-1", passed=False), agency="dga"),
            cloudevent("training.course.completed", completion("dga", "emp-3", "DG-1", on="2025-09-30"), agency="dga"),
            cloudevent("training.target.set", {"agency": "ocsc", "competency": "mindset", "fiscal_year": 2569,
                                               "headcount": 50}, agency="ocsc"),
        ]
        await produce_events(kafka_bootstrap, TRAINING_EVENTS, kafka_events)

        # xAPI: version header required, duplicates stored once, conflicts refused, other verbs ignored.
        sid = str(uuid.uuid4())
        xh = {**XAPI, "X-API-Key": dga_key}
        reader = {"X-API-Key": dga_key}
        office = {"X-API-Key": await make_key(settings, "opdc", "programme_office")}
        r = await client.post("/xapi/statements", json=statement(sid, "emp-1", "DG-4"), headers={"X-API-Key": dga_key})
        assert r.status_code == 400 and r.json()["reason"] == "xapi_version_required"
        r = await client.post("/xapi/statements", json=[statement(sid, "lms-77", "https://lms.dga.or.th/c/9")], headers=xh)
        assert r.status_code == 200 and r.json() == [sid] and r.headers[xapi.VERSION_HEADER] == "1.0.3"
        r = await client.post("/xapi/statements", json=statement(sid, "lms-77", "https://lms.dga.or.th/c/9"), headers=xh)
        assert r.status_code == 200 and r.json() == [sid]
        r = await client.put("/xapi/statements", params={"statementId": sid},
                             json=statement(sid, "lms-77", "https://lms.dga.or.th/c/9"), headers=xh)
        assert r.status_code == 204
        r = await client.post("/xapi/statements", json=statement(sid, "lms-78", "https://lms.dga.or.th/c/9"), headers=xh)
        assert r.status_code == 409 and r.json()["reason"] == "statement_conflict"
        dup = str(uuid.uuid4())
        r = await client.post("/xapi/statements", json=[statement(dup, "a", "c"), statement(dup, "a", "c")], headers=xh)
        assert r.status_code == 400 and r.json()["reason"] == "duplicate_statement_id"
        r = await client.post("/xapi/statements", json=statement(str(uuid.uuid4()), "1101700230708", "c"), headers=xh)
        assert r.status_code == 400 and r.json()["reason"] == "national_id"
        r = await client.post("/xapi/statements", json=statement(str(uuid.uuid4()), "x", "c", agency="ocsc"), headers=xh)
        assert r.status_code == 403
        other = str(uuid.uuid4())
        r = await client.post("/xapi/statements", headers=xh,
                              json=statement(other, "lms-77", "c", verb="http://adlnet.gov/expapi/verbs/attempted"))
        # Other verbs are stored in the LRS (readable) and not counted: the spec's plain array of ids.
        assert r.status_code == 200 and r.json() == [other]
        r = await client.post("/xapi/statements", json={"actor": {}}, headers=xh)
        assert r.status_code == 400 and r.json()["reason"] == "malformed_statement"

        async def settled():
            r = await client.get("/v1/readiness", params={"fiscal_year": 2569, "agency": "dga"}, headers=reader)
            rows = r.json()["rows"]
            return rows if rows and rows[0]["completions"] == 5 else None

        [row] = await poll(settled, 30, what="dga readiness settled")
        # emp-1 (3 courses) + lms-77 via xAPI; emp-2 failed; emp-3 finished in FY 2568.
        assert row["ready_learners"] == 2 and row["target"] == 4 and row["ratio"] == 0.5
        assert row["passed_completions"] == 4 and row["hours"] == 6 + 3 + 1 + 1.5
        assert [x["headcount"] for x in row["target_history"]] == [10, 4]
        old = (await client.get("/v1/readiness", params={"fiscal_year": 2568, "agency": "dga"}, headers=reader)).json()["rows"]
        assert old[0]["ready_learners"] == 1 and old[0]["target"] is None

        async def ocsc_target():
            r = await client.get("/v1/readiness/laggards", params={"fiscal_year": 2569}, headers=office)
            return r.json() if len(r.json()["agencies"]) == 2 else None

        lag = await poll(ocsc_target, 20, what="laggards")
        assert [a["agency"] for a in lag["agencies"]] == ["ocsc", "dga"]
        assert lag["agencies"][0]["gap"] == pytest.approx(50 * lag["elapsed_ratio"], abs=0.01)

        async def counted():  # the handler counts an applied batch after its last write
            text = (await client.get("/metrics")).text
            return text if metric(text, "newnormal_training_events_applied_total", type="training.course.completed") == 6 else None

        text = await poll(counted, 30, what="the completions counted as applied")
        lbl = {"agency": "dga", "competency": "digital_technology", "fiscal_year": "2569"}
        assert metric(text, "newnormal_training_ready_learners", **lbl) == 2
        assert metric(text, "newnormal_training_target_headcount", **lbl) == 4
        assert metric(text, "newnormal_training_readiness_ratio", **lbl) == 0.5
        assert metric(text, "newnormal_training_ready_learners", agency="dga", fiscal_year="2568") == 1
        assert metric(text, "newnormal_training_hours_total", competency="digital_technology") == 6 + 3 + 1 + 1.5 + 6
        assert metric(text, "newnormal_training_xapi_statements_total", outcome="duplicate") == 2
        assert metric(text, "newnormal_training_xapi_statements_total", outcome="conflict") == 1
        assert metric(text, "newnormal_training_events_applied_total", type="training.course.completed") == 6

        # Nothing stored can be joined back: no pseudonym in clear, only keyed hashes (audit trail included).
        stored = [d async for d in db.events.find()]
        assert all("emp-1" not in str(d) and "lms-77" not in str(d) for d in stored)
        assert {d["data"]["learner_ref"] for d in stored if d["type"] == "training.course.completed"} >= {
            domain.learner_hash("integration-secret", "dga", "emp-1"),
            domain.learner_hash("integration-secret", "dga", xapi.learner_ref_of(statement(sid, "lms-77", "c")["actor"]))}
        assert await db.events.count_documents({"id": f"xapi:{sid}"}) == 1

        # A CSV with bad rows: the good ones go through Kafka, the bad are listed with line and reason.
        with tempfile.TemporaryDirectory() as tmp:
            csv_file = Path(tmp) / "history.csv"
            csv_file.write_text(
                "agency,learner_ref,course_id,course_title,competency,hours,completed_on,passed,score\n"
                "dga,emp-9,DG-1,ดิจิทัล ๑,digital_technology,๓,๑๕/๐๓/๒๕๖๙,ผ่าน,๘๐\n"
                "dga,emp-9,DG-2,ดิจิทัล ๒,digital_technology,2,16 มี.ค. 2569,true,\n"
                "dga,1101700230708,DG-1,,digital_technology,3,2026-03-15,true,\n"
                "nope,emp-1,DG-1,,digital_technology,3,2026-03-15,true,\n"
                "dga,emp-8,DG-1,,digital_technology,3,31/02/2569,true,\n", encoding="utf-8")
            summary = (await run_import(csv_file, settings, progress=False)).as_dict()
            again = (await run_import(csv_file, settings, progress=False)).as_dict()
        assert summary["rows_read"] == 5 and summary["accepted"] == 2 and again["accepted"] == 2
        assert summary["rejected_by_reason"] == {"national_id": 1, "unknown_agency": 1, "invalid_date": 1}
        assert [e["line"] for e in summary["errors"]] == [4, 5, 6]

        async def csv_counted():
            rows = (await client.get("/v1/readiness", params={"fiscal_year": 2569, "agency": "dga",
                                                              "competency": "digital_technology"}, headers=reader)).json()["rows"]
            return rows[0] if rows[0]["completions"] == 7 else None

        row = await poll(csv_counted, 30, what="csv import counted once")
        assert row["ready_learners"] == 3
        repo: TrainingRepository = app.state.training_repo
        recount = await repo.recount(write=False)
        doc = await db.training_readiness.find_one({"_id": "2569:dga:digital_technology"})
        assert {k: doc[k] for k in recount["2569:dga:digital_technology"]} == recount["2569:dga:digital_technology"]
    await db.client.close()


async def test_counting_survives_crashes_at_every_step_and_equals_recount(settings_for):
    settings = settings_for(TrainingSettings)
    db = db_of(settings)
    clock = [NOW]
    repo = TrainingRepository(db, lambda: clock[0], stale_claim_seconds=60)
    await repo.ensure_indexes()

    def docs(n: int, learners: int, offset: int = 0) -> list[dict]:
        out = []
        for i in range(offset, offset + n):
            data = TrainingCourseCompleted(agency="dga", learner_ref=f"L{i % learners}", course_id=f"C{i}",
                                           competency="mindset", hours=2, completed_on=date(2026, 1, 5), passed=i % 5 != 0)
            out.append(completion_record("/agencies/dga/t", f"e{i}", data, f"L{i % learners}", clock[0]))
        return out

    # A replica whose process dies at the write path's call `at`: 0 opens the journal entry, 1 stores the
    # completions, 2 inserts their states (new ones: no read first), 3-4 the learners, 5-6 the rollups, 7 closes it.
    for n, at in enumerate((2, 5, 7)):  # after the completions, after the learners, after the rollups
        dying = TrainingRepository(db, lambda: clock[0], stale_claim_seconds=60,
                                   store=CrashingStore(MongoLedgerStore(db), at=at))
        with pytest.raises(Crash):
            await dying.add_completions(docs(20, 7, offset=n * 10))
        # Redelivery while the crashed write is still fresh: duplicates, nothing counted twice or lost later.
        assert await repo.add_completions(docs(20, 7, offset=n * 10)) == set()
        assert await repo.sweep() == 0  # not stale yet: it might still be running
        clock[0] = clock[0] + timedelta(seconds=61)
        assert await repo.sweep() == 1
        assert await repo.sweep() == 0
    recount = await repo.recount(write=False)
    doc = await db.training_readiness.find_one({"_id": "2569:dga:mindset"})
    assert {k: doc[k] for k in recount["2569:dga:mindset"]} == recount["2569:dga:mindset"]
    assert doc["completions"] == 40 and doc["ready_learners"] == 7
    assert await db.training_journal.count_documents({}) == 0
    assert await repo.differences() == []
    # Targets: redelivered and out-of-order target events converge on the latest one.
    t1, t2 = NOW - timedelta(days=30), NOW - timedelta(days=1)
    for fy_time, head, eid in ((t2, 12, "b"), (t1, 30, "a"), (t2, 12, "b")):
        await repo.set_target(2569, "dga", "mindset", head, fy_time, eid)
    doc = await db.training_readiness.find_one({"_id": "2569:dga:mindset"})
    assert doc["target"] == 12 and [h["headcount"] for h in doc["target_history"]] == [30, 12]
    await db.client.close()


def _passed(event_id: str, learner: str) -> dict:
    """dga's stored completion of a mindset course, passed."""
    return completion_record("/agencies/dga/t", event_id, TrainingCourseCompleted(
        agency="dga", learner_ref=learner, course_id=f"C-{event_id}", competency="mindset", hours=2,
        completed_on=date(2026, 1, 5), passed=True), learner, NOW)


async def test_completions_retracted_before_they_arrive_never_count(settings_for):
    settings = settings_for(TrainingSettings)
    db = db_of(settings)
    repo = TrainingRepository(db, lambda: NOW)
    await repo.ensure_indexes()
    docs = [_passed(f"e{i:03}", f"L{i}") for i in range(40)]
    early = [docs[i]["_id"] for i in (0, 7, 19, 39)]  # the batch's first and last among them
    outside = [_passed(f"z{i}", "Lz")["_id"] for i in range(5)]  # retractions of completions not in the batch
    assert await repo.void_completions([(cid, f"void-{cid}") for cid in early + outside]) == 9
    assert len(await repo.add_completions(docs)) == 40
    assert await repo.add_completions(docs) == set()  # redelivered: nothing new
    rollup = await db.training_readiness.find_one({"_id": "2569:dga:mindset"})
    assert rollup["completions"] == 36 and rollup["ready_learners"] == 36
    voided = {d["_id"] async for d in db[domain.STATES].find({"stored": 1, "voided": 1}, {"_id": 1})}
    assert voided == set(early)
    assert await repo.differences() == []
    await db.client.close()


def _legacy_completion(record: dict) -> dict:
    """A completion as LEGACY_COMPLETIONS kept it, beside its audit record (until 2026-12)."""
    data = record["data"]
    return {"_id": record["_id"], "source": record["source"], "id": record["id"], "agency": data["agency"],
            "competency": data["competency"], "fiscal_year": 2569, "learner_hash": data["learner_ref"],
            "course_id": data["course_id"], "hours": float(data["hours"]), "completed_on": data["completed_on"],
            "passed": data["passed"], "stored_at": NOW}


@pytest.mark.parametrize("layout", ["before states", "completions kept apart"])
async def test_an_older_database_is_rebuilt_once_at_startup_from_the_audit_records(settings_for, layout):
    """A database counted before the write path kept completion states, or one whose completions were kept apart
    from their audit records (with a write of the old version still open, and a batch whose audit records were
    stored but whose completions were not yet): the first replica to start rebuilds every book from the audit
    records and retractions, and the old collection is dropped; then the figures equal a recount, and later
    starts change nothing."""
    settings = settings_for(TrainingSettings)
    db = db_of(settings)
    repo = TrainingRepository(db, lambda: NOW)
    try:
        records = []
        for i in range(30):
            data = TrainingCourseCompleted(agency="dga", learner_ref=f"L{i % 4}", course_id=f"C{i}", competency="mindset",
                                           hours=1.5, completed_on=date(2026, 1, 5), passed=i % 3 != 0)
            records.append(completion_record("/agencies/dga/t", f"old{i}", data, f"L{i % 4}", NOW))
        await db.events.insert_many(records)  # the consumer stored every event's audit record before its handler
        await db[domain.LEGACY_COMPLETIONS].insert_many([_legacy_completion(r) for r in records[:28]])
        await db.training_voids.insert_one(domain.void_doc(records[1]["_id"], "r", NOW))
        await db.training_readiness.insert_one({"_id": "2569:dga:mindset", "fiscal_year": 2569, "agency": "dga",
                                                "competency": "mindset", "completions": 27, "ready_learners": 4,
                                                "applied": ["c-old"], "target": 10})
        if layout == "completions kept apart":
            await db[domain.STATES].insert_one({"_id": records[0]["_id"], "stored": 1, "rev": 1})
            await db.training_journal.insert_one({"_id": "old-write", "at": NOW, "kind": domain.LEGACY_COMPLETIONS,
                                                  "ids": [r["_id"] for r in records[26:]]})
        assert await repo.migrate() is True
        rollup = await db.training_readiness.find_one({"_id": "2569:dga:mindset"})
        assert rollup["completions"] == 29 and rollup["passed_completions"] == 19 and rollup["target"] == 10
        assert rollup["ready_learners"] == 4 and await repo.differences() == []
        assert domain.LEGACY_COMPLETIONS not in await db.list_collection_names()
        assert await db.training_journal.count_documents({}) == 0
        assert await repo.migrate() is False
        data = TrainingCourseCompleted(agency="dga", learner_ref="L9", course_id="C", competency="mindset", hours=1,
                                       completed_on=date(2026, 1, 5), passed=True)
        assert len(await repo.add_completions([completion_record("/agencies/dga/t", "new", data, "L9", NOW)])) == 1
        rollup = await db.training_readiness.find_one({"_id": "2569:dga:mindset"})
        assert rollup["completions"] == 30 and rollup["ready_learners"] == 5 and await repo.differences() == []
    finally:
        await db.client.close()
