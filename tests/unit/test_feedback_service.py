"""FeedbackService over an in-memory repository (tests/fakes_feedback.py): the consumer's batch handler stores and
counts each response once across redelivery, refuses a reused id, raises when the store fails (so the batch is
redelivered) and the next delivery finishes the write; experience and gaps read what was counted."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from fakes_feedback import MemoryFeedbackRepository
from fastapi import HTTPException
from ledger_fakes import Crash
from pymongo.errors import ServerSelectionTimeoutError

from services.common.auth import Principal, Role
from services.common.consumer import Batch
from services.contracts.envelope import EventError, make_event
from services.contracts.events import FEEDBACK_RESPONSE_SUBMITTED
from services.feedback.domain import prepare
from services.feedback.handlers import FeedbackService
from services.feedback.settings import FeedbackSettings

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
MARCH = (date(2026, 3, 1), date(2026, 3, 31))
OFFICE = Principal("opdc", Role.programme_office, "k-office")
DGA = Principal("dga", Role.agency, "k-dga")


def response(i: int, agency: str = "dga", **data) -> object:
    """Response i as the consumer hands it over (prepared: redacted, age group set)."""
    body = {"agency": agency, "service_name": "ต่ออายุใบอนุญาต", "channel": "online_web", "age_group": "60_plus",
            "satisfaction": 2, "tech_difficulty": "severe", "aware_of_digital_channels": False,
            "submitted_at": "2026-03-15T09:30:00+07:00", "comment": f"โทร 08{i % 10}-234-5678"}
    body.update(data)
    return prepare(make_event(FEEDBACK_RESPONSE_SUBMITTED, body, agency=agency, source=f"/agencies/{agency}/kiosk",
                              id=f"r-{i}", time=NOW))


def mixed(n: int, start: int = 0) -> list:
    """n responses spread over channels, age groups, levels and March days."""
    return [response(i, satisfaction=1 + i % 5, channel=("online_web", "walk_in", "call_center")[i % 3],
                     age_group=("18_24", "45_59", "60_plus")[i % 3], tech_difficulty=("none", "some", "severe")[i % 3],
                     submitted_at=f"2026-03-{1 + i % 28:02d}T23:30:00+07:00", **({"ease": 1 + i % 5} if i % 4 else {}))
            for i in range(start, start + n)]


def service(repo: MemoryFeedbackRepository, **settings) -> FeedbackService:
    return FeedbackService(repo, FeedbackSettings(**settings), lambda: NOW)


def counted(repo: MemoryFeedbackRepository) -> int:
    return sum(t.get("responses", 0) for t in repo.totals().values())


async def deliver(svc: FeedbackService, events: list) -> tuple[set, list]:
    batch = Batch(list(events))
    rejected = await svc.handle_batch(batch)
    return batch.new_keys, rejected


# --- write path ----------------------------------------------------------------------------------------------
async def test_a_batch_is_stored_and_counted_once_however_often_and_however_composed_it_comes():
    repo = MemoryFeedbackRepository(lambda: NOW)
    svc = service(repo)
    events = mixed(30)
    new, rejected = await deliver(svc, events)
    assert rejected == [] and new == {e.key for e in events}
    assert counted(repo) == 30 and len(repo.responses()) == 30
    # Redelivered as it was, then in another composition with five new responses: only those five are new.
    assert await deliver(svc, events) == (set(), [])
    more = mixed(5, start=30)
    new, rejected = await deliver(svc, events[10:20] + more + events[:3])
    assert rejected == [] and new == {e.key for e in more}
    assert counted(repo) == 35 and len(repo.responses()) == 35
    assert await repo.differences() == [] and repo.open_entries() == []
    # The stored response is the redacted audit record.
    assert all("REDACTED" in d["data"]["comment"] for d in repo.responses())


async def test_a_reused_id_with_other_content_is_not_stored_or_counted_and_the_first_one_stands():
    """The handler stores nothing new for it; refusing it (`id_conflict`) is the consumer's, after the handler
    returns (`test_consumer_isolation`, over MongoDB in `test_id_conflicts_live`)."""
    repo = MemoryFeedbackRepository(lambda: NOW)
    svc = service(repo)
    first = response(1, satisfaction=5)
    await deliver(svc, [first])
    changed, fresh = response(1, satisfaction=1), response(2, satisfaction=3)
    new, rejected = await deliver(svc, [changed, fresh, first])
    assert new == {fresh.key} and rejected == []
    assert [d["data"]["satisfaction"] for d in repo.responses() if d["id"] == first.id] == [5]
    assert sum(t.get("satisfaction_sum", 0) for t in repo.totals().values()) == 5 + 3
    assert counted(repo) == 2 and await repo.differences() == []


# The write path's calls, in order: 0 opens the journal entry, 1 stores the responses, 2-3 read and write the
# totals, 4-5 the day and month rollups, 6 closes the entry.
@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("at", range(7))
async def test_a_crash_in_the_write_fails_the_batch_and_its_redelivery_finishes_it(at, after):
    repo = MemoryFeedbackRepository(lambda: NOW, crash_at=at, crash_after=after)
    svc = service(repo)
    events = mixed(40)
    with pytest.raises(Crash):
        await deliver(svc, events)
    assert repo.crashing.crashes == 1
    done = {step: at > step or (at == step and after) for step in range(7)}  # which calls had landed
    landed = {(d["source"], d["id"]) for d in repo.responses()}
    assert len(landed) == (40 if done[1] else 0) and counted(repo) == (40 if done[3] else 0)
    assert (await repo.differences() == []) == (done[5] or not done[1])  # half counted until both books are
    assert (repo.open_entries() != []) == (done[0] and not done[6])
    new, rejected = await deliver(svc, events)
    assert rejected == [] and new == {e.key for e in events} - landed
    assert counted(repo) == 40 and await repo.differences() == [] and repo.open_entries() == []
    assert await deliver(svc, events) == (set(), []) and counted(repo) == 40


async def test_an_unreachable_store_fails_the_batch_and_the_next_delivery_writes_it():
    repo = MemoryFeedbackRepository(lambda: NOW)
    svc = service(repo)
    events = mixed(12)
    repo.fail_next = ServerSelectionTimeoutError("no server")
    with pytest.raises(ServerSelectionTimeoutError):
        await deliver(svc, events)
    assert repo.responses() == [] and counted(repo) == 0
    new, rejected = await deliver(svc, events)
    assert rejected == [] and new == {e.key for e in events} and counted(repo) == 12


# --- read path -----------------------------------------------------------------------------------------------
def gap_batch() -> list:
    """40 older citizens online, mostly dissatisfied; 160 younger ones on the app, mostly satisfied (as the
    integration test sends them over Kafka); 3 walk-in responses in February."""
    events = [response(i, satisfaction=2 if i % 4 else 4) for i in range(40)]
    events += [response(100 + i, age_group="25_34", channel="mobile_app", satisfaction=5 if i % 5 else 3,
                        tech_difficulty="none", aware_of_digital_channels=True) for i in range(160)]
    events += [response(300 + i, channel="walk_in", satisfaction=4, submitted_at="2026-02-25T10:00:00+07:00")
               for i in range(3)]
    return events


async def test_experience_reads_the_counted_cells_by_range_and_agency():
    repo = MemoryFeedbackRepository(lambda: NOW)
    svc = service(repo)
    await deliver(svc, gap_batch())
    body = await svc.experience(*MARCH, None, OFFICE)
    cells = {(c["age_group"], c["channel"]): c for c in body["cells"]}
    assert body["overall"]["responses"] == 200 and set(cells) == {("60_plus", "online_web"), ("25_34", "mobile_app")}
    older = cells[("60_plus", "online_web")]
    assert older["responses"] == 40 and older["cohort"] == "baby_boomer" and older["share_tech_difficulty"] == 1.0
    assert older["satisfaction_levels"] == {"1": 0, "2": 30, "3": 0, "4": 10, "5": 0}
    assert cells[("25_34", "mobile_app")]["awareness_rate"] == 1.0
    assert body["from"] == "2026-03-01" and body["to"] == "2026-03-31" and body["agency"] is None
    # A range across a month's edge reads February's last days and the whole of March.
    across = await svc.experience(date(2026, 2, 20), date(2026, 3, 31), None, OFFICE)
    assert across["overall"]["responses"] == 203
    assert (await svc.experience(date(2026, 3, 16), date(2026, 3, 31), None, OFFICE))["cells"] == []
    assert (await svc.experience(*MARCH, "rd", OFFICE))["overall"]["responses"] == 0
    # Default range: the last 30 Bangkok days of the clock (20 March) holds them all.
    assert (await svc.experience(None, None, None, OFFICE))["overall"]["responses"] == 203
    with pytest.raises(EventError) as refused:
        await svc.experience(date(2026, 3, 31), date(2026, 3, 1), None, OFFICE)
    assert refused.value.reason == "invalid_range"


async def test_an_agency_reader_sees_small_cells_suppressed_and_no_other_agency():
    repo = MemoryFeedbackRepository(lambda: NOW)
    svc = service(repo, feedback_min_published_cell=10)
    await deliver(svc, gap_batch())
    feb = (date(2026, 2, 1), date(2026, 2, 28))
    office = await svc.experience(*feb, "dga", OFFICE)
    dga = await svc.experience(*feb, "dga", DGA)
    assert [(c["responses"], c["suppressed"]) for c in office["cells"]] == [(3, False)]
    assert [(c["responses"], c["suppressed"]) for c in dga["cells"]] == [(None, True)]
    with pytest.raises(HTTPException) as refused:
        await svc.experience(*MARCH, "rd", DGA)
    assert refused.value.status_code == 403


async def test_gaps_name_the_cell_that_is_significantly_less_satisfied():
    repo = MemoryFeedbackRepository(lambda: NOW)
    svc = service(repo, feedback_gap_min_cell=30)
    await deliver(svc, gap_batch())
    gaps = await svc.gaps(*MARCH, None, OFFICE)
    assert [(g["age_group"], g["channel"]) for g in gaps["gaps"]] == [("60_plus", "online_web")]
    gap = gaps["gaps"][0]
    assert gap["z"] < 0 and gap["p_value"] < gaps["test"]["alpha_per_cell"] == 0.05 / 2
    assert gap["responses"] == 40 and gap["share_satisfied"] == 0.25
    assert gaps["test"]["cells_tested"] == 2 and gaps["test"]["cells_too_small"] == 0
    # Without the dissatisfied cell there is nothing to report.
    assert (await svc.gaps(*MARCH, "rd", OFFICE))["gaps"] == []
