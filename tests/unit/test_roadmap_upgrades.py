"""The roadmap's one-time upgrade of what was stored before free text was redacted on arrival (2026-12-02): the
audit records and the milestones lose the personal data they held, a re-send of such an event stays a duplicate,
and an old record the contracts no longer take costs nothing else."""

from __future__ import annotations

from datetime import date

from fakes_roadmap import FakePublisher, FakeRepo
from test_migrations import Migrations
from test_roadmap_handlers import NOW, Clock, ev, service
from test_roadmap_rebuild import audited

from services.common.consumer import Batch
from services.contracts.envelope import CONTENT_HASH_FIELD, document_id
from services.roadmap import privacy, upgrades

PII = ("081-234-5678", "1-1037-02071-92-7", "somchai.probe@example.co.th")
TEXT = "โทร 081-234-5678 บัตร 1-1037-02071-92-7 somchai.probe@example.co.th"


def old_events() -> list:
    """As agencies sent them, stored unredacted by the roadmap before 2026-12-02 (no `prepare`)."""
    return [ev("planned", {"milestone_id": "M-OLD", "title_th": f"หมุดหมาย {TEXT}", "workstream": "technology_access",
                           "owner_agency": "dga", "due_date": date(2026, 9, 30).isoformat()}, id="plan-old"),
            ev("progressed", {"milestone_id": "M-OLD", "percent_complete": 40, "as_of": NOW.isoformat(),
                              "note": TEXT}, id="progress-old"),
            ev("planned", {"milestone_id": "M-CLEAN", "title_th": "ไม่มีข้อมูลส่วนบุคคล", "workstream": "technology_access",
                           "owner_agency": "dga", "due_date": date(2026, 9, 30).isoformat()}, id="plan-clean")]


async def test_stored_personal_data_is_redacted_in_the_audit_trail_and_the_milestones():
    repo, pub = FakeRepo(), FakePublisher()
    svc = service(repo, pub, Clock(NOW))
    events = old_events()
    await svc.handle(Batch(audited(repo, events)))
    assert any(s in str(repo.docs["M-OLD"]) for s in PII)  # the state this upgrade is for
    clean_before = repo.docs["M-CLEAN"]["title_th"]

    assert await upgrades.redact_stored_free_text(svc) == {"records_redacted": 2, "records_unreadable": 0}
    for text in (str(repo.audit), str(repo.docs)):
        assert not any(s in text for s in PII)
    assert "[REDACTED:PHONE]" in repo.docs["M-OLD"]["title_th"] and repo.docs["M-CLEAN"]["title_th"] == clean_before
    # Each record's hash is that of the event as it arrives now (redacted): a re-send is a duplicate.
    by_id = {d["_id"]: d for d in repo.audit}
    for event in events:
        assert by_id[document_id(event.source, event.id)][CONTENT_HASH_FIELD] == privacy.prepare(event).content_hash()
    assert await upgrades.redact_stored_free_text(svc) == {"records_redacted": 0, "records_unreadable": 0}


async def test_an_old_record_the_contracts_no_longer_take_is_left_and_counted_and_the_rest_is_redacted():
    repo, pub = FakeRepo(), FakePublisher()
    svc = service(repo, pub, Clock(NOW))
    await svc.handle(Batch(audited(repo, old_events())))
    odd = dict(repo.audit[-1], _id="odd", id="odd-1", data={"milestone_id": "M-CLEAN", "percent_complete": "lots"},
               type="roadmap.milestone.progressed")
    repo.audit.append(odd)
    assert await upgrades.redact_stored_free_text(svc) == {"records_redacted": 2, "records_unreadable": 1}
    assert not any(s in str(repo.docs) for s in PII)


async def test_the_upgrade_runs_once_per_database():
    repo, pub = FakeRepo(), FakePublisher()
    svc = service(repo, pub, Clock(NOW))
    await svc.handle(Batch(audited(repo, old_events())))
    migrations = Migrations()
    await upgrades.upgrade(svc, migrations)
    assert migrations.docs[upgrades.REDACT_FREE_TEXT]["done"] is True
    repo.audit[0]["data"]["title_th"] = TEXT  # as if written again the old way: not this upgrade's to see twice
    await upgrades.upgrade(svc, migrations)
    assert TEXT in str(repo.audit)
