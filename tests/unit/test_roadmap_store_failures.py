"""The roadmap batch handler over a store that fails on demand: a failure raises out of `handle` (the consumer does
not commit the offset and redelivers the batch), and the redelivery, with the watcher's rescan where the failure came
after the milestones were written, ends where a clean run does: the same milestones, each alert published once."""

from __future__ import annotations

import inspect
from datetime import date
from typing import Any

import pytest
from fakes_roadmap import FakePublisher, FakeRepo
from test_roadmap_handlers import NOW, Clock, ev, plan, service

from services.common.consumer import Batch
from services.common.ledger import LedgerStore
from services.roadmap.adapters import MilestoneRepository, MilestoneStore

# M1 is already past its due date (missed at once), M2 depends on it (at risk), M3 is on track with progress.
BATCH = [plan("M1", date(2026, 2, 1)), plan("M2", date(2026, 9, 30), deps=["M1"]), plan("M3", date(2026, 6, 30)),
         ev("progressed", {"milestone_id": "M3", "percent_complete": 40, "as_of": NOW.isoformat()}, id="p1")]
ALERTS = ["at_risk:M2:2026-09-30", "missed:M1:2026-02-01"]
# Bookkeeping of when a write happened, not what the milestone is.
_VOLATILE = ("rev", "updated_at", "status_since", "created_at", "facts_at")


def milestones(repo: FakeRepo) -> dict[str, dict[str, Any]]:
    return {i: {k: v for k, v in d.items() if k not in _VOLATILE} for i, d in repo.docs.items()}


def world() -> tuple[FakeRepo, FakePublisher, Any]:
    repo, pub = FakeRepo(), FakePublisher()
    return repo, pub, service(repo, pub, Clock(NOW))


@pytest.fixture
async def clean() -> dict[str, dict[str, Any]]:
    repo, pub, svc = world()
    assert await svc.handle(Batch(BATCH)) == []
    assert sorted(e.id for e in pub.sent) == ALERTS and milestones(repo)["M2"]["status"] == "at_risk"
    return milestones(repo)


@pytest.mark.parametrize("method", ["read", "dependencies_of", "dependency_states", "write_revisions"])
async def test_a_failure_before_the_write_leaves_nothing_and_the_redelivery_alone_gives_the_clean_result(clean, method):
    repo, pub, svc = world()
    repo.fail_next, repo.fail_on = ConnectionError("mongo unreachable"), method
    with pytest.raises(ConnectionError):
        await svc.handle(Batch(BATCH))
    assert repo.docs == {} and repo.claims == {} and pub.sent == []
    assert await svc.handle(Batch(BATCH)) == []  # the redelivered batch
    assert milestones(repo) == clean
    assert sorted(e.id for e in pub.sent) == ALERTS  # each once


@pytest.mark.parametrize("method", ["claimed_ids", "claim"])
async def test_a_failure_after_the_write_loses_no_alert_and_raises_none_twice(clean, method):
    repo, pub, svc = world()
    repo.fail_next, repo.fail_on = ConnectionError("mongo unreachable"), method
    with pytest.raises(ConnectionError):
        await svc.handle(Batch(BATCH))
    assert milestones(repo) == clean and pub.sent == []  # stored, but no alert out yet
    # The redelivery finds every fact known: it changes nothing, and still raises what the stored states call for
    # (the failed delivery never got that far) ...
    assert await svc.handle(Batch(BATCH)) == []
    assert milestones(repo) == clean
    assert sorted(e.id for e in pub.sent) == ALERTS
    # ... and the watcher's rescans add none twice.
    await svc.rescan()
    await svc.rescan()
    assert sorted(e.id for e in pub.sent) == ALERTS
    assert {c["state"] for c in repo.claims.values()} == {"published"}


async def test_an_unrecorded_publish_is_sent_again_under_the_same_id(clean):
    """At least once, not exactly once: the claim stays `claimed` when its publish cannot be recorded, and the rescan
    republishes it with the alert's deterministic id, which the consumers deduplicate on."""
    repo, pub, svc = world()
    repo.fail_next, repo.fail_on = ConnectionError("mongo unreachable"), "mark_published"
    with pytest.raises(ConnectionError):
        await svc.handle(Batch(BATCH))
    [first] = pub.sent
    assert repo.claims[first.id]["state"] == "claimed"
    assert await svc.handle(Batch(BATCH)) == []
    await svc.rescan()
    await svc.rescan()
    assert milestones(repo) == clean
    assert sorted(e.id for e in pub.sent) == sorted([*ALERTS, first.id])
    assert {c["state"] for c in repo.claims.values()} == {"published"}


async def test_a_failure_in_the_dependency_cascade_is_made_good_by_the_redelivery_and_rescan(clean):
    repo, pub, svc = world()
    repo.fail_next, repo.fail_on = ConnectionError("mongo unreachable"), "dependants"
    with pytest.raises(ConnectionError):
        await svc.handle(Batch(BATCH))
    await svc.handle(Batch(BATCH))
    await svc.rescan()
    assert milestones(repo) == clean
    assert sorted(e.id for e in pub.sent) == ALERTS


async def test_the_fake_fails_once_and_only_on_the_method_named():
    repo, _pub, svc = world()
    repo.fail_next, repo.fail_on = ConnectionError("mongo unreachable"), "write_revisions"
    with pytest.raises(ConnectionError):
        await svc.handle(Batch(BATCH))
    assert repo.called[:1] == ["dependencies_of"] and repo.called[-1] == "write_revisions"
    assert repo.fail_next is None and repo.fail_on is None


def test_the_repository_and_the_fake_both_conform_to_the_protocol():
    """Every method the service layer may call, with the Protocol's parameters, in MongoDB and in memory; and the
    store of the roadmap's journal."""
    from pymongo import AsyncMongoClient

    wanted = {n: inspect.signature(f) for n, f in vars(MilestoneStore).items()
              if inspect.isfunction(f) and not n.startswith("_")}
    assert len(wanted) == 30
    for impl in (MilestoneRepository, FakeRepo):
        assert {n: list(inspect.signature(getattr(impl, n)).parameters) for n in wanted} == \
            {n: list(s.parameters) for n, s in wanted.items()}, impl
    assert set(MilestoneStore.__annotations__) == {"ledger_store"}
    client = AsyncMongoClient("mongodb://127.0.0.1:1", connect=False)
    for repo in (MilestoneRepository(client["unused"]), FakeRepo()):
        assert all(callable(getattr(repo.ledger_store, n, None)) for n in vars(LedgerStore) if not n.startswith("_")), repo
