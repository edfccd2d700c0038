"""TrainingService and the xAPI intake over in-memory fakes (tests/fakes_training.py): the consumer's batch handler
counts each learner once and each completion once across redelivery, retractions in either order, a failing store
that makes the batch raise (so it is redelivered) and a next delivery that finishes the write; readiness and
laggards read what was counted; xAPI statements are decided by their id, published, voided and read back."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from fakes_training import MemoryPublisher, MemoryTrainingRepository
from ledger_fakes import Crash
from prometheus_client import CollectorRegistry
from pymongo.errors import ServerSelectionTimeoutError
from xapi_examples import statement

from services.common.auth import Principal, Role
from services.common.consumer import Batch
from services.contracts.envelope import make_event
from services.contracts.events import TRAINING_COMPLETION_VOIDED, TRAINING_COURSE_COMPLETED, TRAINING_TARGET_SET
from services.training import domain, xapi
from services.training.handlers import Pseudonymiser, TrainingService, XapiIntake
from services.training.metrics import TrainingMetrics

NOW = datetime(2026, 4, 1, 3, 0, tzinfo=UTC)  # FY 2569, about half elapsed
SECRET = "unit-learner-secret"
DGA = Principal("dga", Role.agency, "k-dga")
pseudonymise = Pseudonymiser(SECRET)  # the consumer's prepare hook


class Fixture:
    def __init__(self, repo: MemoryTrainingRepository | None = None):
        self.registry = CollectorRegistry()
        self.metrics = TrainingMetrics(self.registry)
        self.repo = repo or MemoryTrainingRepository(lambda: NOW)
        self.publisher = MemoryPublisher()
        ticks = itertools.count()  # every reading a second later: statements get distinct `stored` times
        self.intake = XapiIntake(self.repo, self.publisher, self.metrics,  # type: ignore[arg-type]
                                 lambda: NOW + timedelta(seconds=next(ticks)), 50, SECRET)
        self.service = TrainingService(self.repo, self.metrics, lambda: NOW, xapi=self.intake)

    async def deliver(self, events: list, prepare: bool = True) -> list:
        """One batch as the consumer hands it over (pseudonymised first); returns the refusals."""
        return await self.service.handle_batch(Batch([pseudonymise(e) if prepare else e for e in events]))

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    async def row(self, fy: int = 2569, agency: str = "dga", competency: str = "digital_technology") -> dict:
        rows = (await self.service.readiness(fy, agency, competency))["rows"]
        return rows[0] if rows else {"completions": 0, "ready_learners": 0}


def completed(learner: str, course: str, passed: bool = True, hours: float = 6, on: str = "2026-02-10",
              agency: str = "dga", competency: str = "digital_technology", id: str | None = None):
    data = {"agency": agency, "learner_ref": learner, "course_id": course, "competency": competency, "hours": hours,
            "completed_on": on, "passed": passed}
    return make_event(TRAINING_COURSE_COMPLETED, data, agency=agency, source=f"/agencies/{agency}/lms",
                      id=id or f"{learner}-{course}", time=NOW)


def retracted(completion, id: str | None = None):
    data = {"agency": completion.agency, "voided_source": completion.source, "voided_id": completion.id}
    return make_event(TRAINING_COMPLETION_VOIDED, data, agency=completion.agency, source=completion.source,
                      id=id or f"void-{completion.id}", time=NOW)


def target(agency: str, headcount: int, at: str, competency: str = "digital_technology"):
    data = {"agency": agency, "competency": competency, "fiscal_year": 2569, "headcount": headcount}
    return make_event(TRAINING_TARGET_SET, data, agency=agency, source=f"/agencies/{agency}/plan",
                      id=f"t-{agency}-{headcount}", time=datetime.fromisoformat(at))


def first_batch() -> list:
    """As the integration test sends them: emp-1 passes three courses (one learner), emp-2 fails, emp-3 finished
    in FY 2568, one duplicate; dga's target set twice (the later one stands), an ocsc target with no progress."""
    e1 = completed("emp-1", "DG-1")
    return [target("dga", 4, "2026-01-05T09:00:00+07:00"), target("dga", 10, "2025-10-05T09:00:00+07:00"),
            e1, e1, completed("emp-1", "DG-2", hours=3), completed("emp-1", "DG-3", hours=1),
            completed("emp-2", "DG-1", passed=False), completed("emp-3", "DG-1", on="2025-09-30"),
            target("ocsc", 50, "2026-01-05T09:00:00+07:00", competency="mindset")]


# --- the batch handler -----------------------------------------------------------------------------------------
async def test_a_learner_counts_once_and_a_redelivered_batch_adds_nothing():
    f = Fixture()
    assert await f.deliver(first_batch()) == []
    row = await f.row()
    assert (row["completions"], row["passed_completions"], row["ready_learners"]) == (4, 3, 1)
    assert row["hours"] == 6 + 3 + 1 and row["all_hours"] == 6 + 3 + 1 + 6
    assert row["target"] == 4 and row["ratio"] == 0.25 and [h["headcount"] for h in row["target_history"]] == [10, 4]
    old = await f.row(2568)
    assert old["ready_learners"] == 1 and old["target"] is None
    assert f.metric("newnormal_training_events_applied_total", type=TRAINING_COURSE_COMPLETED) == 5
    assert f.metric("newnormal_training_duplicate_completions_total") == 1  # e1 twice in one batch

    assert await f.deliver(first_batch()) == []
    assert await f.row() == row and await f.row(2568) == old
    assert f.metric("newnormal_training_events_applied_total", type=TRAINING_COURSE_COMPLETED) == 5
    assert f.metric("newnormal_training_duplicate_completions_total") == 1 + 6
    readiness = await f.service.readiness(2569, "dga")
    assert readiness["total"]["target"] == 4 and readiness["national"]["target"] == 4 + 50
    assert await f.repo.differences() == [] and f.repo.open_entries() == []
    # Learners are stored by their keyed hash only.
    assert {d["data"]["learner_ref"] for d in f.repo.completions()} == {
        domain.learner_hash(SECRET, "dga", learner) for learner in ("emp-1", "emp-2", "emp-3")}


async def test_a_completion_whose_learner_was_not_pseudonymised_is_refused_and_not_stored():
    f = Fixture()
    clear = completed("emp-1", "DG-1")
    refused = await f.deliver([clear, completed("emp-2", "DG-1")], prepare=False)
    assert [(r.event.id, r.error.reason) for r in refused] == [(clear.id, "not_pseudonymised"),
                                                              ("emp-2-DG-1", "not_pseudonymised")]
    assert f.repo.completions() == [] and (await f.row())["completions"] == 0


async def test_retractions_take_completions_back_out_once_in_either_order():
    f = Fixture()
    dg1, dg2, dg3 = completed("emp-1", "DG-1"), completed("emp-1", "DG-2"), completed("emp-1", "DG-3")
    await f.deliver([dg1, dg2, dg3, completed("emp-2", "DG-1")])
    assert (await f.row())["ready_learners"] == 2
    await f.deliver([retracted(dg1)])
    row = await f.row()
    assert row["completions"] == 3 and row["ready_learners"] == 2  # emp-1 still has two passes
    await f.deliver([retracted(dg1, id="void-again"), retracted(dg2), retracted(dg3)])  # dg1 a second time
    row = await f.row()
    assert row["completions"] == 1 and row["ready_learners"] == 1  # emp-1's last pass went: no longer ready
    assert f.metric("newnormal_training_events_applied_total", type=TRAINING_COMPLETION_VOIDED) == 3
    # A retraction that arrives before its completion: the completion is stored (its audit record) and never counts.
    late = completed("emp-4", "DG-9")
    await f.deliver([retracted(late)])
    await f.deliver([late])
    assert (await f.row())["ready_learners"] == 1
    assert [d["id"] for d in f.repo.completions() if d["id"] == late.id] == [late.id]
    [state] = [d for d in f.repo.memory.docs(domain.STATES) if d["_id"] == late.document_id]
    assert (state["stored"], state["voided"]) == (1, 1) and not domain.is_live(state)
    # A completion and its retraction in one batch cancel out.
    both = completed("emp-5", "DG-1")
    await f.deliver([both, retracted(both)])
    assert (await f.row())["completions"] == 1
    assert await f.repo.differences() == []


# The write path's calls for a batch of completions: 0 opens the journal entry, 1 stores the completions, 2 inserts
# their states (new ones: no read first), 3-4 read and write the learners, 5-6 the rollups, 7 closes the entry.
@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("at", range(8))
async def test_a_crash_in_the_write_fails_the_batch_and_its_redelivery_finishes_it(at, after):
    f = Fixture(MemoryTrainingRepository(lambda: NOW, crash_at=at, crash_after=after))
    batch = [completed(f"emp-{i % 7}", f"C{i}", passed=i % 5 != 0) for i in range(20)]
    with pytest.raises(Crash):
        await f.deliver(batch)
    assert f.repo.crashing.crashes == 1
    done = {step: at > step or (at == step and after) for step in range(8)}  # which calls had landed
    assert len(f.repo.completions()) == (20 if done[1] else 0)
    assert (await f.row())["completions"] == (16 + 4 if done[6] else 0)
    assert await f.deliver(batch) == []
    row = await f.row()
    assert (row["completions"], row["passed_completions"], row["ready_learners"]) == (20, 16, 7)
    assert await f.repo.differences() == [] and f.repo.open_entries() == []
    assert await f.deliver(batch) == [] and await f.row() == row


async def test_an_unreachable_store_fails_the_batch_and_the_next_delivery_writes_it():
    f = Fixture()
    f.repo.fail_next = ServerSelectionTimeoutError("no server")
    with pytest.raises(ServerSelectionTimeoutError):
        await f.deliver([completed("emp-1", "DG-1")])
    assert f.repo.completions() == []
    await f.deliver([completed("emp-1", "DG-1")])
    assert (await f.row())["ready_learners"] == 1


async def test_a_retraction_that_fails_after_its_batch_counted_the_completions_is_applied_on_redelivery():
    f = Fixture()
    keep, gone = completed("emp-1", "DG-1"), completed("emp-2", "DG-1")
    batch = [keep, gone, retracted(gone)]
    f.repo.fail_next, f.repo.fail_on = ServerSelectionTimeoutError("no server"), "void_completions"
    with pytest.raises(ServerSelectionTimeoutError):
        await f.deliver(batch)
    assert (await f.row())["ready_learners"] == 2  # the completions are in; their retraction is not yet
    await f.deliver(batch)
    row = await f.row()
    assert row["completions"] == 1 and row["ready_learners"] == 1 and await f.repo.differences() == []


# --- reads -----------------------------------------------------------------------------------------------------
async def test_laggards_rank_agencies_by_their_gap_to_a_linear_path():
    f = Fixture()
    await f.deliver(first_batch())
    lag = await f.service.laggards(2569)
    assert [a["agency"] for a in lag["agencies"]] == ["ocsc", "dga"] and lag["agencies_ranked"] == 2
    assert 0.4 < lag["elapsed_ratio"] < 0.6 and lag["as_of"] == NOW.isoformat()
    assert lag["agencies"][0]["gap"] == pytest.approx(50 * lag["elapsed_ratio"], abs=0.01)
    own = await f.service.laggards(2569, agency="dga")
    assert [(a["agency"], a["rank"]) for a in own["agencies"]] == [("dga", 2)] and own["agencies_ranked"] == 2
    assert (await f.service.laggards(2569, limit=1))["agencies"][0]["agency"] == "ocsc"
    assert (await f.service.laggards(2570))["agencies"] == []


# --- xAPI intake -----------------------------------------------------------------------------------------------


def voiding(sid: str, target: str) -> dict:
    return {"id": sid, "actor": {"objectType": "Agent", "account": {"homePage": "https://lms.dga.or.th", "name": "admin"}},
            "verb": {"id": xapi.VERB_VOIDED, "display": {"en-US": "voided"}},
            "object": {"objectType": "StatementRef", "id": target}}


async def test_a_completion_statement_is_published_once_and_counted_by_the_consumer():
    f = Fixture()
    sid = str(uuid.uuid4())
    outcome = await f.intake.submit([statement(sid, "lms-77", "https://lms.dga.or.th/c/9")], DGA)
    assert (outcome.status, outcome.body) == (200, [sid])
    [event] = f.publisher.published
    assert (event.type, event.id, event.source) == (TRAINING_COURSE_COMPLETED, f"xapi:{sid}", "/agencies/dga/xapi")
    assert f.repo.statements[sid]["state"] == "stored"
    assert f.metric("newnormal_training_xapi_statements_total", outcome="accepted") == 1
    # Readable by its agency only, the learner as a keyed hash.
    readable = await f.intake.one(sid, False, "dga")
    assert readable is not None and readable["object"]["id"] == "https://lms.dga.or.th/c/9"
    assert "lms-77" not in json.dumps(readable) and await f.intake.one(sid, False, "rd") is None
    # The consumer counts what was published: 1.5 hours, one ready learner.
    assert await f.deliver(f.publisher.published) == []
    row = await f.row()
    assert (row["completions"], row["ready_learners"], row["hours"]) == (1, 1, 1.5)


async def test_a_statement_id_sent_again_is_a_duplicate_with_the_same_content_and_a_conflict_with_other():
    f = Fixture()
    sid = str(uuid.uuid4())
    first = statement(sid, "lms-77", "https://lms.dga.or.th/c/9")
    assert (await f.intake.submit(first, DGA)).status == 200
    again = await f.intake.submit(statement(sid, "lms-77", "https://lms.dga.or.th/c/9"), DGA)
    assert (again.status, again.body) == (200, [sid])
    assert (await f.intake.submit(dict(first), DGA, put_id=sid)).status == 204
    assert len(f.publisher.published) == 1  # stored already: nothing published again
    assert f.metric("newnormal_training_xapi_statements_total", outcome="duplicate") == 2
    stored = dict(f.repo.statements[sid])
    conflict = await f.intake.submit(statement(sid, "lms-78", "https://lms.dga.or.th/c/9"), DGA)
    assert (conflict.status, conflict.reason, conflict.extra) == (409, "statement_conflict", {"statement_ids": [sid]})
    assert f.repo.statements[sid] == stored and len(f.publisher.published) == 1
    assert f.metric("newnormal_training_xapi_statements_total", outcome="conflict") == 1
    # A batch holding a conflict stores none of its other statements either.
    other = str(uuid.uuid4())
    refused = await f.intake.submit([statement(other, "lms-1", "c:1"), statement(sid, "lms-79", "c:2")], DGA)
    assert refused.status == 409 and other not in f.repo.statements


async def test_a_voiding_statement_retracts_the_completion_and_hides_it_from_reads():
    f = Fixture()
    sid, vid = str(uuid.uuid4()), str(uuid.uuid4())
    await f.intake.submit(statement(sid, "lms-77", "https://lms.dga.or.th/c/9"), DGA)
    await f.deliver(f.publisher.published)
    assert (await f.row())["ready_learners"] == 1
    outcome = await f.intake.submit(voiding(vid, sid), DGA)
    assert (outcome.status, outcome.body) == (200, [vid])
    void_event = f.publisher.published[-1]
    assert void_event.type == TRAINING_COMPLETION_VOIDED and void_event.id == f"xapi-void:{vid}"
    assert void_event.data.voided_id == f"xapi:{sid}"
    assert await f.intake.one(sid, False, "dga") is None and await f.intake.one(sid, True, "dga") is not None
    page = await f.intake.query(xapi.parse_query({}), "dga", [])
    assert [s["id"] for s in page["statements"]] == [vid]  # the voided one left out, the voiding one readable
    await f.deliver([void_event])
    row = await f.row()
    assert (row["completions"], row["ready_learners"]) == (0, 0)
    # A voiding statement cannot itself be voided.
    refused = await f.intake.submit(voiding(str(uuid.uuid4()), vid), DGA)
    assert (refused.status, refused.reason) == (400, "invalid_voiding")


async def test_a_voiding_statement_that_arrives_first_voids_its_target_when_it_comes():
    f = Fixture()
    sid = str(uuid.uuid4())
    assert (await f.intake.submit(voiding(str(uuid.uuid4()), sid), DGA)).status == 200
    assert (await f.intake.submit(statement(sid, "lms-77", "c:late"), DGA)).status == 200
    assert await f.intake.one(sid, True, "dga") is not None
    await f.deliver(f.publisher.published)  # the retraction before the completion, as published
    assert (await f.row())["completions"] == 0


async def test_kafka_down_answers_503_and_the_retry_publishes_the_same_event():
    f = Fixture()
    sid = str(uuid.uuid4())
    f.publisher.fail_next = ConnectionError("broker down")
    down = await f.intake.submit(statement(sid, "lms-77", "c:1"), DGA)
    assert (down.status, down.reason) == (503, "broker_unavailable") and f.repo.statements[sid]["state"] == "pending"
    assert await f.intake.one(sid, False, "dga") is None  # not readable until Kafka took it
    retry = await f.intake.submit(statement(sid, "lms-77", "c:1"), DGA)
    assert (retry.status, retry.body) == (200, [sid]) and f.repo.statements[sid]["state"] == "stored"
    [event] = f.publisher.published
    assert event.id == f"xapi:{sid}" and event.time == f.repo.statements[sid]["stored"]  # the first attempt's time


async def test_a_store_that_fails_answers_with_the_error_and_keeps_nothing_half_done():
    f = Fixture()
    sid = str(uuid.uuid4())
    f.repo.fail_next, f.repo.fail_on = ServerSelectionTimeoutError("no server"), "reserve_statements"
    with pytest.raises(ServerSelectionTimeoutError):
        await f.intake.submit(statement(sid, "lms-77", "c:1"), DGA)
    assert f.repo.statements == {} and f.publisher.published == []
    assert (await f.intake.submit(statement(sid, "lms-77", "c:1"), DGA)).status == 200


async def test_statements_are_queried_by_agent_verb_and_page():
    f = Fixture()
    ids = [*sorted(str(uuid.uuid4()) for _ in range(3)), str(uuid.uuid4())]  # one request's: stored at one time
    await f.intake.submit([statement(ids[0], "lms-1", "https://lms.dga.or.th/c/1"),
                           statement(ids[1], "lms-2", "https://lms.dga.or.th/c/1"),
                           statement(ids[2], "lms-1", "https://lms.dga.or.th/c/2",
                                     verb="http://adlnet.gov/expapi/verbs/attempted")], DGA)
    await f.intake.submit(statement(ids[3], "lms-1", "https://lms.dga.or.th/c/3"), DGA)
    agent = json.dumps({"account": {"homePage": "https://lms.dga.or.th", "name": "lms-1"}})

    async def found(agency: str | None = "dga", **params: str) -> list[str]:
        return [s["id"] for s in (await f.intake.query(xapi.parse_query(params), agency, ["dga", "rd"]))["statements"]]

    assert await found() == [ids[3], ids[2], ids[1], ids[0]]  # newest first, then by id
    assert await found(ascending="true") == ids
    assert await found(agent=agent) == [ids[3], ids[2], ids[0]]
    assert await found(agent=agent, verb=xapi.VERB_COMPLETED) == [ids[3], ids[0]]
    assert await found(activity="https://lms.dga.or.th/c/1") == [ids[1], ids[0]]
    assert await found(agency=None, agent=agent) == [ids[3], ids[2], ids[0]]  # the programme office: every agency
    assert await found(agency="rd") == []
    first = await f.intake.query(xapi.parse_query({"limit": "3"}), "dga", [])
    assert [s["id"] for s in first["statements"]] == [ids[3], ids[2], ids[1]] and first["more"]
    # The next page starts within the first request's statements (same `stored`): the id breaks the tie.
    rest = await f.intake.query(xapi.decode_cursor(first["more"].split("more=", 1)[1]), "dga", [])
    assert [s["id"] for s in rest["statements"]] == [ids[0]] and rest["more"] == ""
