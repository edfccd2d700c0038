"""Authority from the key's role, not the agency code (issue 17.6): the intake's marker, the ownership rule
on stored facts, `milestone_id_taken`, and the programme office re-planning any milestone."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import pytest
from fakes_roadmap import FakePublisher, FakeRepo
from test_roadmap_handlers import NOW, Clock, ev, plan, service

from services.common.auth import Principal, Role
from services.common.consumer import Batch
from services.contracts.envelope import AUTHORITY, PROGRAMME_OFFICE_AUTHORITY, with_authority
from services.roadmap import domain

DUE = date(2026, 12, 31)
PO = Principal("opdc", Role.programme_office, "k-po")
OPDC_AGENCY = Principal("opdc", Role.agency, "k-opdc")


def cancel(mid: str, agency: str, eid: str):
    return ev("cancelled", {"milestone_id": mid, "reason": "มติ"}, agency=agency, id=eid)


def test_only_a_programme_office_key_marks_its_events_and_nobody_sends_the_marker():
    event = cancel("M", "dga", "c1")
    assert PO.may_submit(event) is None and PO.stamp(event).extensions[AUTHORITY] == PROGRAMME_OFFICE_AUTHORITY
    own = cancel("M", "opdc", "c2")
    assert OPDC_AGENCY.may_submit(own) is None and AUTHORITY not in OPDC_AGENCY.stamp(own).extensions
    assert OPDC_AGENCY.may_submit(event).reason == "agency_not_allowed"  # its own agency's events only
    forged = with_authority(own, PROGRAMME_OFFICE_AUTHORITY)  # as a client would send it in the JSON
    assert OPDC_AGENCY.may_submit(forged).reason == "reserved_attribute"
    assert PO.may_submit(forged).reason == "reserved_attribute"


def test_ownership_rule_reads_the_authority_not_the_agency_code():
    assert domain.may_report("dga", "opdc", PROGRAMME_OFFICE_AUTHORITY)
    assert not domain.may_report("dga", "opdc") and not domain.may_report("dga", "opdc", "anything else")
    plan_fact = {"kind": "planned", "agency": "dopa", "data": {"owner_agency": "dopa"}}
    assert domain.refusal(None, plan_fact) is None and domain.refusal("dopa", plan_fact) is None
    assert domain.refusal("dga", plan_fact) == domain.ID_TAKEN == "milestone_id_taken"
    assert domain.refusal("dga", {**plan_fact, "authority": PROGRAMME_OFFICE_AUTHORITY}) is None


@pytest.fixture
def world():
    repo, pub, clock = FakeRepo(), FakePublisher(), Clock(NOW)
    return repo, service(repo, pub, clock)


async def test_opdc_agency_key_cannot_cancel_another_agencys_milestone_programme_office_can(world):
    repo, svc = world
    await svc.handle(Batch([plan("M", DUE)]))
    [refused] = await svc.handle(Batch([OPDC_AGENCY.stamp(cancel("M", "opdc", "c1"))]))
    assert refused.error.reason == "agency_not_owner" and repo.docs["M"]["status"] == "planned"
    assert await svc.handle(Batch([PO.stamp(cancel("M", "opdc", "c2"))])) == []
    assert repo.docs["M"]["status"] == "cancelled"
    [fact] = [f for f in repo.docs["M"]["facts"] if f["kind"] == "cancelled"]
    assert fact["authority"] == PROGRAMME_OFFICE_AUTHORITY  # stored with the fact: project() stays pure


async def test_a_second_agencys_plan_is_milestone_id_taken_and_changes_nothing(world):
    repo, svc = world
    await svc.handle(Batch([plan("M", DUE)]))
    before = dict(repo.docs["M"])
    squat = plan("M", DUE + timedelta(days=30), agency="dopa")
    [refused] = await svc.handle(Batch([squat]))
    assert refused.error.reason == "milestone_id_taken" and "dga" in refused.error.detail
    assert repo.docs["M"]["rev"] == before["rev"] and repo.docs["M"]["owner_agency"] == "dga"
    # The owner re-plans freely; the programme office re-plans for any agency.
    replan = ev("planned", {"milestone_id": "M", "title_th": "ใหม่", "workstream": "technology_access",
                            "owner_agency": "dga", "due_date": (DUE + timedelta(days=1)).isoformat()}, id="replan")
    assert await svc.handle(Batch([replan])) == []
    assert await svc.handle(Batch([PO.stamp(plan("M2", DUE, agency="rd"))])) == []
    assert repo.docs["M2"]["owner_agency"] == "rd"


async def test_programme_office_gives_a_squatted_id_back(world):
    repo, svc = world
    await svc.handle(Batch([plan("M", DUE, agency="dopa")]))  # dopa took an id that is rd's
    await svc.handle(Batch([ev("progressed", {"milestone_id": "M", "percent_complete": 40, "as_of": NOW.isoformat()},
                               agency="dopa", id="p-dopa")]))
    fixed = PO.stamp(ev("planned", {"milestone_id": "M", "title_th": "ของ rd", "workstream": "technology_access",
                                    "owner_agency": "rd", "due_date": DUE.isoformat()}, agency="rd", id="po-fix",
                        time=NOW + timedelta(minutes=1)))
    assert await svc.handle(Batch([fixed])) == []
    doc = repo.docs["M"]
    assert doc["owner_agency"] == "rd" and doc["percent_complete"] == 0
    assert {(i["event"], i["reason"]) for i in doc["ignored"]} == {("/agencies/dopa/pm|p-dopa", "agency_not_owner")}
    again = ev("planned", {"milestone_id": "M", "title_th": "x", "workstream": "technology_access",
                           "owner_agency": "dopa", "due_date": DUE.isoformat()}, agency="dopa", id="again",
               time=NOW + timedelta(minutes=2))
    [refused] = await svc.handle(Batch([again]))
    assert refused.error.reason == "milestone_id_taken"


def test_fold_is_order_independent_with_squats_and_transfers():
    t0 = NOW
    facts = [
        domain.make_fact(type_="roadmap.milestone.planned", source="/agencies/dopa/pm", event_id="p1", agency="dopa",
                         time=t0, data={"milestone_id": "M", "title_th": "x", "workstream": "technology_access",
                                        "owner_agency": "dopa", "due_date": DUE.isoformat()}),
        domain.make_fact(type_="roadmap.milestone.planned", source="/agencies/dga/pm", event_id="p2", agency="dga",
                         time=t0 + timedelta(minutes=1), data={"milestone_id": "M", "title_th": "y",
                                                               "workstream": "technology_access",
                                                               "owner_agency": "dga", "due_date": DUE.isoformat()}),
        domain.make_fact(type_="roadmap.milestone.planned", source="/agencies/rd/pm", event_id="p3", agency="rd",
                         time=t0 + timedelta(minutes=2), authority=PROGRAMME_OFFICE_AUTHORITY,
                         data={"milestone_id": "M", "title_th": "z", "workstream": "technology_access",
                               "owner_agency": "rd", "due_date": DUE.isoformat()}),
        domain.make_fact(type_="roadmap.milestone.progressed", source="/agencies/rd/pm", event_id="g", agency="rd",
                         time=t0 + timedelta(minutes=3), data={"milestone_id": "M", "percent_complete": 30,
                                                               "as_of": (t0 + timedelta(minutes=3)).isoformat()}),
    ]
    docs = {repr(domain.project("M", list(order), t0 + timedelta(days=1), {})) for order in itertools.permutations(facts)}
    assert len(docs) == 1
    doc = domain.project("M", facts, t0 + timedelta(days=1), {})
    assert doc["owner_agency"] == "rd" and doc["percent_complete"] == 30 and doc["title_th"] == "z"
    assert doc["ignored"] == [{"event": "/agencies/dga/pm|p2", "kind": "planned", "reason": "milestone_id_taken"}]


def test_facts_stored_before_facts_carried_an_authority_keep_their_reading():
    def progress(eid: str, pct: float) -> dict:
        return domain.make_fact(type_="roadmap.milestone.progressed", source="/agencies/opdc/pm", event_id=eid,
                                agency="opdc", time=NOW + timedelta(days=1),
                                data={"milestone_id": "M", "percent_complete": pct, "as_of": NOW.isoformat()})
    planned = domain.make_fact(type_="roadmap.milestone.planned", source="/agencies/dga/pm", event_id="p", agency="dga",
                               time=NOW, data={"milestone_id": "M", "title_th": "x", "workstream": "technology_access",
                                               "owner_agency": "dga", "due_date": DUE.isoformat()})
    new = progress("new", 40)
    assert new["authority"] is None  # every fact stored now says it: None is "its own agency only"
    legacy = {k: v for k, v in progress("old", 20).items() if k != "authority"}  # stored before the field
    assert domain.fact_authority(legacy) == PROGRAMME_OFFICE_AUTHORITY and domain.fact_authority(new) is None
    doc = domain.project("M", [planned, legacy, new], NOW + timedelta(days=2), {})
    assert doc["percent_complete"] == 20  # the upgrade changes no stored record; the new unmarked report is ignored
    assert doc["ignored"] == [{"event": "/agencies/opdc/pm|new", "kind": "progressed", "reason": "agency_not_owner"}]
