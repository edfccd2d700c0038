"""Dependencies as a graph (issue 17.5): cycles refused, propagation at any depth in one round trip per
level, unknown dependencies kept and flagged until planned. Pure graph functions and the service over fakes."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from fakes_roadmap import FakePublisher, FakeRepo
from test_roadmap_handlers import NOW, Clock, ev, plan, service

from services.common.consumer import Batch
from services.roadmap import dependencies

DUE = date(2026, 12, 31)


def edges(graph):
    calls = []

    async def load(ids):
        calls.append(set(ids))
        return {i: graph[i] for i in ids if i in graph}
    return load, calls


async def test_cycle_path_finds_two_and_long_cycles_and_self():
    load, calls = edges({"Y": ["X"]})
    assert await dependencies.cycle_path("X", ["Y"], load) == ["X", "Y", "X"]
    chain = {f"C{i}": [f"C{i + 1}"] for i in range(50)}  # C0 -> C1 -> ... -> C50
    load, calls = edges(chain)
    assert await dependencies.cycle_path("C50", ["C0"], load) == ["C50", *[f"C{i}" for i in range(51)]]
    assert len(calls) == 50  # one load per level (C0 … C49; C49 names C50)
    assert await dependencies.cycle_path("X", ["X"], edges({})[0]) == ["X", "X"]
    # No cycle: a diamond and unknown ids terminate (visited set) without a false alarm.
    load, calls = edges({"A": ["B", "C"], "B": ["D"], "C": ["D"], "D": []})
    assert await dependencies.cycle_path("X", ["A", "NOPE"], load) is None
    assert sum(len(c) for c in calls) == 5  # A, NOPE, B, C, D: each loaded once (D reached twice)


async def test_cycle_path_sees_the_same_batch_overlay():
    load, _ = edges({})
    assert await dependencies.cycle_path("X", ["Y"], load, overlay={"Y": ["Z"], "Z": ["X"]}) == ["X", "Y", "Z", "X"]
    # Overlay edges count besides the stored ones: which plan becomes current is decided later, by event time.
    load, _ = edges({"Y": ["X"]})
    assert await dependencies.cycle_path("X", ["Y"], load, overlay={"Y": ["Q"]}) == ["X", "Y", "X"]


async def test_one_cache_per_batch_reads_each_stored_milestone_once():
    chain = {f"C{i}": [f"C{i - 1}"] for i in range(1, 200)}  # C199 -> ... -> C0
    load, calls = edges(chain)
    cache: dict = {}
    for i in range(199, 100, -1):  # a re-import of the upper half of the chain, one plan after another
        assert await dependencies.cycle_path(f"C{i}", [f"C{i - 1}"], load, cache=cache) is None
    assert sum(len(c) for c in calls) == 199  # C198 … C0 once each, not once per plan


def test_unknown_dependencies_and_propagation_bound():
    assert dependencies.unknown_dependencies(["A", "B", "C"], {"A": "planned", "B": "unplanned"}) == ["B", "C"]
    walk = dependencies.Propagation(["A"])
    for _ in range(10):  # a cycle that slipped through keeps changing: the bound stops it
        walk.advance(["A", "B"])
    assert walk.done and walk.frontier


class CountingRepo(FakeRepo):
    def __init__(self):
        super().__init__()
        self.calls = 0

    async def dependants(self, ids):
        self.calls += 1
        return await super().dependants(ids)

    async def load_many(self, ids):
        self.calls += 1
        return await super().load_many(ids)


@pytest.fixture
def world():
    repo, pub, clock = CountingRepo(), FakePublisher(), Clock(NOW)
    return repo, service(repo, pub, clock)


async def test_cycles_are_dead_lettered_and_change_nothing(world):
    repo, svc = world
    assert await svc.handle(Batch([plan("X", DUE, deps=["Y"]), plan("Y", DUE)])) == []
    replan = ev("planned", {"milestone_id": "Y", "title_th": "ย", "workstream": "technology_access",
                            "owner_agency": "dga", "due_date": DUE.isoformat(), "depends_on": ["X"]}, id="replan-Y")
    before = repo.docs["Y"]["rev"]
    [refused] = await svc.handle(Batch([replan]))
    assert refused.error.reason == "dependency_cycle" and "Y -> X -> Y" in refused.error.detail
    assert repo.docs["Y"]["rev"] == before and repo.docs["Y"]["depends_on"] == []
    # A cycle closed inside one batch (neither stored yet) is refused too: the later plan.
    [refused] = await svc.handle(Batch([plan("P", DUE, deps=["Q"]), plan("Q", DUE, deps=["R"]),
                                        plan("R", DUE, deps=["P"])]))
    assert refused.event.data.milestone_id == "R" and refused.error.reason == "dependency_cycle"
    assert "R" not in repo.docs and repo.docs["Q"]["depends_on"] == ["R"]


async def test_a_missed_root_puts_a_chain_of_100_at_risk_in_linear_round_trips(world):
    repo, svc = world
    chain = [plan("L0", NOW.date() + timedelta(days=1))] + [plan(f"L{i}", DUE, deps=[f"L{i - 1}"]) for i in range(1, 100)]
    assert await svc.handle(Batch(chain)) == []
    assert {d["status"] for d in repo.docs.values()} == {"planned"}
    svc.clock.now = NOW + timedelta(days=3)  # L0's deadline has passed
    repo.calls = 0
    assert await svc.sweep() >= 1
    statuses = [repo.docs[f"L{i}"]["status"] for i in range(100)]
    assert statuses == ["missed"] + ["at_risk"] * 99
    assert repo.docs["L99"]["blocked_by"] == ["L98"]
    assert repo.calls <= 2 * 100 + 10, repo.calls  # a dependants query and a load per level: linear, not 100²
    # Completing the root clears the whole chain again.
    done = ev("completed", {"milestone_id": "L0", "completed_on": (NOW + timedelta(days=2)).date().isoformat()})
    await svc.handle(Batch([done]))
    assert {repo.docs[f"L{i}"]["status"] for i in range(1, 100)} == {"planned"}


async def test_unknown_dependencies_are_flagged_counted_and_cleared_when_planned(world):
    repo, svc = world
    await svc.handle(Batch([plan("A", DUE, deps=["GHOST", "B"]), plan("B", DUE)]))
    assert repo.docs["A"]["unknown_dependencies"] == ["GHOST"] and repo.docs["B"]["unknown_dependencies"] == []
    stats = await svc.refresh_stats()
    assert stats["milestones_with_unknown_dependencies"] == 1
    # Facts for GHOST before its plan: still not a planned milestone.
    await svc.handle(Batch([ev("progressed", {"milestone_id": "GHOST", "percent_complete": 5,
                                              "as_of": NOW.isoformat()})]))
    assert repo.docs["A"]["unknown_dependencies"] == ["GHOST"]
    await svc.handle(Batch([plan("GHOST", DUE)]))
    assert repo.docs["A"]["unknown_dependencies"] == []
    assert (await svc.refresh_stats())["milestones_with_unknown_dependencies"] == 0


def test_a_risk_that_only_comes_back_round_a_cycle_does_not_count():
    own = {"status": "missed", "status_reasons": ["deadline_passed"]}
    via_x = {"status": "at_risk", "status_reasons": [dependencies.DEPENDENCY_REASON], "risk_roots": ["X"]}
    assert dependencies.as_seen_from("Y", {"X": own}) == {"X": "missed"}
    assert dependencies.risk_roots("Y", ["X"], {"X": own}) == ["X"]
    assert dependencies.as_seen_from("X", {"Y": via_x}) == {"Y": "planned"}  # X's own risk coming back
    assert dependencies.as_seen_from("Z", {"Y": via_x}) == {"Y": "at_risk"}
    assert dependencies.risk_roots("Z", ["Y"], {"Y": via_x}) == ["X"]
    legacy = {"status": "at_risk", "status_reasons": [dependencies.DEPENDENCY_REASON]}  # stored before risk_roots
    assert dependencies.as_seen_from("X", {"Y": legacy}) == {"Y": "at_risk"}


async def test_a_cycle_that_slipped_in_does_not_hold_itself_at_risk(world):
    repo, svc = world
    await svc.handle(Batch([plan("X", NOW.date() + timedelta(days=1), deps=["Y"]), plan("Y", DUE)]))

    async def no_check(events):  # two replicas planning X->Y and Y->X at the same instant
        return {}
    svc._cycles = no_check
    replan = ev("planned", {"milestone_id": "Y", "title_th": "ย", "workstream": "technology_access",
                            "owner_agency": "dga", "due_date": DUE.isoformat(), "depends_on": ["X"]}, id="replan-Y")
    assert await svc.handle(Batch([replan])) == []
    svc.clock.now = NOW + timedelta(days=3)
    await svc.sweep()
    assert (repo.docs["X"]["status"], repo.docs["Y"]["status"]) == ("missed", "at_risk")
    assert repo.docs["Y"]["risk_roots"] == ["X"]
    moved = ev("rescheduled", {"milestone_id": "X", "new_due_date": DUE.isoformat(), "reason": "งบ"}, id="move-X",
               time=svc.clock.now)
    assert await svc.handle(Batch([moved])) == []
    assert (repo.docs["X"]["status"], repo.docs["Y"]["status"]) == ("planned", "planned")
    assert repo.docs["X"]["risk_roots"] == repo.docs["Y"]["risk_roots"] == []
