"""The simulated world: reproducible, valid against the contracts, and realistic where dashboards look."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, date, datetime

import httpx
import pytest

from services.contracts.common_types import AgeGroup, Workstream
from services.contracts.envelope import validate_attributes
from services.simulator.model import MAX_MILESTONES, MIN_MILESTONES, Adoption, World
from services.simulator.sender import Pacer, Sender

START = datetime(2026, 3, 15, 3, 0, tzinfo=UTC)  # FY 2569, 5.5 months in


def _validate(event: dict) -> None:
    validate_attributes({k: v for k, v in event.items() if k != "data"}, event["data"])


def _live(world: World, n: int) -> list[dict]:
    stream = world.stream(clock_step=60.0)
    return [next(stream)[1] for _ in range(n)]


def test_same_seed_same_events_and_different_seed_different_events():
    a, b, c = World(11, START), World(11, START), World(12, START)
    ea, eb, ec = a.initial_events() + _live(a, 500), b.initial_events() + _live(b, 500), c.initial_events() + _live(c, 500)
    assert ea == eb
    assert [e["id"] for e in ea] != [e["id"] for e in ec]
    assert len({(e["source"], e["id"]) for e in ea}) == len(ea), "ids must be unique"


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_plan_has_40_to_60_milestones_over_five_workstreams_with_slips_reschedules_and_misses(seed):
    world = World(seed, START)
    plan = world.plan_events()
    assert MIN_MILESTONES <= len(plan) <= MAX_MILESTONES
    assert {e["data"]["workstream"] for e in plan} == {w.value for w in Workstream}
    first, last = world.fy_first, world.fy_last
    dues = [date.fromisoformat(e["data"]["due_date"]) for e in plan]
    assert sum(first <= d <= last for d in dues) >= 0.8 * len(dues)
    fates = Counter(m.fate for m in world.milestones)
    assert 2 <= fates["missed"] <= 0.2 * len(plan) and fates["rescheduled"] >= 2 and fates["slipping"] >= 1
    history = world.roadmap_history()
    completed = {e["data"]["milestone_id"] for e in history if e["type"] == "roadmap.milestone.completed"}
    rescheduled = {e["data"]["milestone_id"] for e in history if e["type"] == "roadmap.milestone.rescheduled"}
    for m in world.milestones:
        if m.fate == "missed":  # due date passed, never completed
            assert m.due < world.today and m.milestone_id not in completed
        if m.fate == "rescheduled":
            assert m.milestone_id in rescheduled
    assert all(datetime.fromisoformat(e["time"]) <= START for e in world.initial_events())


def test_every_generated_event_is_valid_against_the_contracts():
    world = World(3, START, agencies=20)
    events = world.initial_events() + _live(world, 2000)
    for event in events:
        _validate(event)
    assert {e["type"] for e in events} >= {"roadmap.milestone.planned", "roadmap.milestone.progressed",
                                            "roadmap.milestone.completed", "roadmap.milestone.rescheduled",
                                            "training.target.set", "training.course.completed",
                                            "feedback.response.submitted"}
    assert len({e["agency"] for e in events}) == 20


def test_targets_cover_every_agency_and_competency_and_history_follows_each_agency_curve():
    world = World(5, START, agencies=10)
    targets = world.target_events()
    assert len(targets) == 10 * 4 and {e["data"]["fiscal_year"] for e in targets} == {2569}
    history = world.training_history(limit=100_000)
    done = Counter(e["agency"] for e in history)
    f = world.fy_fraction(START)
    for agency in world.agencies:
        expected = sum(round(n * world.adoption[agency].share(f)) for (a, _), n in world.targets.items() if a == agency)
        assert done[agency] == expected
    shares = sorted(world.adoption[a].share(f) for a in world.agencies)
    assert shares[-1] - shares[0] > 0.2, "agencies adopt at visibly different speeds"
    # The history limit scales everything down proportionally.
    assert len(World(5, START, agencies=10).training_history(limit=200)) <= 220


def test_adoption_curve_is_increasing_and_bounded():
    curve = Adoption(ceiling=0.9, midpoint=0.5, steepness=10)
    values = [curve.share(f / 10) for f in range(11)]
    assert values == sorted(values) and 0 < values[0] < 0.1 and 0.85 < values[-1] < 0.9
    assert curve.rate(0.5) > curve.rate(0.1) and curve.rate(0.5) > curve.rate(0.9)


def test_older_citizens_use_walk_in_and_call_centre_more_report_more_difficulty_and_know_digital_less():
    world = World(9, START)
    responses = [world.feedback_response(START)["data"] for _ in range(12_000)]
    by_age: dict[str, list[dict]] = {}
    for r in responses:
        by_age.setdefault(r["age_group"], []).append(r)

    def share(age: AgeGroup, pred) -> float:
        rows = by_age[age.value]
        return sum(1 for r in rows if pred(r)) / len(rows)

    offline = lambda r: r["channel"] in ("walk_in", "call_center")
    difficulty = lambda r: r["tech_difficulty"] != "none"
    aware = lambda r: r["aware_of_digital_channels"]
    young, old = AgeGroup.age_25_34, AgeGroup.age_60_plus
    assert share(old, offline) > share(young, offline) + 0.3
    assert share(old, difficulty) > share(young, difficulty) + 0.2
    assert share(old, aware) < share(young, aware) - 0.2
    assert share(AgeGroup.age_45_59, offline) > share(AgeGroup.age_35_44, offline)
    severe = [r["satisfaction"] for r in responses if r["tech_difficulty"] == "severe"]
    none = [r["satisfaction"] for r in responses if r["tech_difficulty"] == "none"]
    assert sum(severe) / len(severe) < sum(none) / len(none), "difficulty lowers satisfaction"


def test_stream_clock_advances_by_the_mean_step():
    world = World(1, START)
    stream = world.stream(clock_step=2.0)
    offsets = [next(stream)[0] for _ in range(5000)]
    assert offsets == sorted(offsets)
    assert 9000 < offsets[-1] < 11000  # 5000 events x 2 s on average


async def test_pacer_holds_the_rate():
    now = [0.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer(100.0, clock=lambda: now[0])
    original = asyncio.sleep
    asyncio.sleep = fake_sleep  # type: ignore[assignment]
    try:
        for _ in range(10):
            await pacer.admit(50)
    finally:
        asyncio.sleep = original  # type: ignore[assignment]
    assert now[0] == pytest.approx(5.0)  # 500 events at 100 ev/s


async def test_sender_resends_only_what_kafka_did_not_take_after_503_and_uses_the_right_keys():
    world = World(4, START)
    plan = world.plan_events()[:10]
    feedback = [world.feedback_response(START) for _ in range(30)]
    keys = {a: f"key-{a}" for a in world.agencies} | {"programme_office": "key-po"}
    seen: list[tuple[str, str, list[str]]] = []
    failed_once: set[str] = set()

    def handler(request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)
        seen.append((request.url.host, request.headers["x-api-key"], [e["id"] for e in events]))
        accepted = [{"id": e["id"], "source": e["source"]} for e in events if e["id"] in failed_once or e["id"][0] > "7"]
        not_taken = [{"id": e["id"], "source": e["source"]} for e in events if e["id"] not in failed_once and e["id"][0] <= "7"]
        failed_once.update(e["id"] for e in events)
        if not_taken:
            return httpx.Response(503, json={"accepted": accepted, "not_accepted": not_taken}, headers={"Retry-After": "0.01"})
        return httpx.Response(202, json={"accepted": accepted, "rejected": []})

    sender = Sender(urls={"roadmap": "http://roadmap", "training": "http://training", "feedback": "http://feedback"},
                    keys=keys, kafka_settings=None, kafka_share=0.0, seed=1, transport=httpx.MockTransport(handler))
    try:
        await sender.send(plan, plan_key=True)
        await sender.send(feedback)
    finally:
        await sender.stop()
    assert sender.stats.sent == 40 and sender.stats.errors == 0 and sender.stats.retries >= 1
    posted = Counter(i for _, _, ids in seen for i in ids)
    assert all(n <= 2 for n in posted.values()), "accepted events are not sent again"
    assert {k for host, k, _ in seen if host == "roadmap"} == {"key-po"}
    assert all(k == f"key-{e['agency']}" for host, k, ids in seen if host == "feedback"
               for e in feedback if e["id"] in ids)


def test_newnormal_simulate_is_registered_and_localrun_starts_it_until_stopped(tmp_path):
    from pathlib import Path

    from services.cli import build_parser
    from services.simulator.localrun import simulator_process

    args = build_parser().parse_args(["simulate", "--seed", "3", "--agencies", "5", "--rate", "100", "--duration", "2",
                                      "--speedup", "60"])
    assert (args.seed, args.agencies, args.rate, args.duration, args.speedup) == (3, 5, 100.0, 2.0, 60.0)
    with pytest.raises(SystemExit):  # --duration and --until-stopped exclude each other
        build_parser().parse_args(["simulate", "--duration", "2", "--until-stopped"])
    env = {"NEWNORMAL_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "NEWNORMAL_ROADMAP_URL": "http://127.0.0.1:2"}
    proc = simulator_process(env, {"kafka": 1, "roadmap": 2, "training": 3, "feedback": 4}, tmp_path / "keys.json", tmp_path)
    assert proc.name == "simulator"
    assert "--until-stopped" in proc.args and str(tmp_path / "keys.json") in proc.args
    assert proc.env["NEWNORMAL_TRAINING_URL"] == "http://127.0.0.1:3" and proc.env["NEWNORMAL_ROADMAP_URL"] == "http://127.0.0.1:2"
    assert Path(proc.log_path).name == "simulator.log"
