"""Who may submit what: an agency only its own data; the programme office may plan roadmaps for any agency."""

from __future__ import annotations

from services.common.auth import Principal, Role, generate_key, hash_key
from services.contracts.envelope import make_event

TARGET = {"agency": "rd", "competency": "mindset", "fiscal_year": 2569, "headcount": 10}
PLAN = {"milestone_id": "RD-1", "title_en": "e-Filing for all", "workstream": "technology_access",
        "owner_agency": "rd", "due_date": "2026-09-30"}


def event(type_, data, agency="rd"):
    return make_event(type_, data, agency=agency, source=f"/agencies/{agency}/sys", id="x-1")


def test_agency_key_submits_only_its_own_agency():
    rd = Principal("rd", Role.agency, "k")
    dga = Principal("dga", Role.agency, "k")
    assert rd.may_submit(event("training.target.set", TARGET)) is None
    refusal = dga.may_submit(event("training.target.set", TARGET))
    assert refusal is not None and refusal.reason == "agency_not_allowed" and "'dga'" in refusal.detail


def test_programme_office_plans_for_any_agency_but_reports_nothing_else_for_them():
    office = Principal("opdc", Role.programme_office, "k")
    assert office.may_submit(event("roadmap.milestone.planned", PLAN)) is None
    assert office.may_submit(event("training.target.set", TARGET)).reason == "agency_not_allowed"


def test_keys_are_random_and_stored_as_hashes():
    a, b = generate_key("rd"), generate_key("rd")
    assert a != b and a.startswith("nnk_rd_") and len(a) > 40
    assert hash_key(a) != a and len(hash_key(a)) == 64 and hash_key(a) == hash_key(a)
