"""The overview snapshot (services.roadmap.overview): any day's figures read from a snapshot equal counting the
milestones by the rule, for every owner and for all; the listed items are the earliest due, longest overdue first."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.contracts.common_types import Workstream
from services.roadmap import overview
from services.roadmap.domain import Status

WORKSTREAMS = [w.value for w in Workstream]
STATUSES = [s.value for s in Status]
BASE = date(2026, 1, 1)
AT = datetime(2026, 3, 1, tzinfo=UTC)

day = st.integers(-200, 200).map(lambda n: (BASE + timedelta(days=n)).isoformat())
row = st.fixed_dictionaries({
    "owner_agency": st.sampled_from(["dga", "ocsc", "nso"]),
    "workstream": st.sampled_from(WORKSTREAMS),
    "status": st.sampled_from(STATUSES),
    "due_date": st.one_of(st.none(), day),
    "completed_on": st.one_of(st.none(), day),
    "open_deadline": st.one_of(st.none(), st.integers(0, 30).map(lambda h: AT + timedelta(hours=h))),
})


def counted(rows: list[dict], owner: str | None, days: list[date], late: int) -> dict:
    """The rule, stated directly (as the database count states it)."""
    out = {}
    for ws in WORKSTREAMS:
        mine = [r for r in rows if r["workstream"] == ws and (owner is None or r["owner_agency"] == owner)]
        counts: dict[str, int] = {}
        for r in mine:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        overdue = {d.isoformat(): sum(1 for r in mine if r["status"] not in overview.NOT_OPEN and r["due_date"]
                                      and r["due_date"] < d.isoformat()
                                      and not (r["completed_on"] and r["completed_on"] <= d.isoformat()))
                   for d in days}
        listed = {s: [r["_id"] for r in sorted((r for r in mine if r["status"] == s),
                                               key=lambda r: (r["due_date"] or "", r["_id"]))][:late]
                  for s in overview.LISTED}
        out[ws] = {"counts": counts, "open_overdue_at": overdue, **listed}
    return out


def answered(rows: list[dict], owner: str | None, days: list[date], late: int) -> dict:
    snapshots, ids = overview.build_snapshots(rows)
    items = {r["_id"]: r for r in rows if r["_id"] in ids}
    snapshots = overview.with_items(snapshots, items)
    snap = snapshots.get(owner or overview.ALL, {"workstreams": {}})
    body = overview.from_snapshot({**snap, "computed_at": AT}, owner, days, late)
    assert body["as_of"] == AT.isoformat() and body["at"] == [d.isoformat() for d in days]
    return {ws: {**e, **{s: [i["_id"] for i in e[s]] for s in overview.LISTED}} for ws, e in body["workstreams"].items()}


@settings(max_examples=200, deadline=None)
@given(st.lists(row, max_size=60), st.lists(st.integers(-220, 220), min_size=1, max_size=4),
       st.sampled_from([None, "dga", "nso"]), st.integers(0, 8))
def test_a_snapshot_answers_as_counting_does(raw, offsets, owner, late):
    rows = [{"_id": f"M-{i:03d}", **r} for i, r in enumerate(raw)]
    days = list(dict.fromkeys(BASE + timedelta(days=n) for n in offsets))
    assert answered(rows, owner, days, late) == counted(rows, owner, days, late)


def test_lists_keep_at_most_list_max_and_an_item_gone_since_is_left_out():
    rows = [{"_id": f"M-{i:04d}", "owner_agency": "dga", "workstream": WORKSTREAMS[0], "status": "missed",
             "due_date": (BASE + timedelta(days=i % 50)).isoformat(), "completed_on": None} for i in range(250)]
    snapshots, ids = overview.build_snapshots(rows)
    assert len(ids) == overview.LIST_MAX
    items = {r["_id"]: r for r in rows if r["_id"] in ids}
    gone = sorted(ids)[0]
    del items[gone]
    snaps = overview.with_items(snapshots, items)
    listed = snaps["*"]["workstreams"][WORKSTREAMS[0]]["missed"]
    assert len(listed) == overview.LIST_MAX - 1 and gone not in {i["_id"] for i in listed}
    assert [i["due_date"] for i in listed] == sorted(i["due_date"] for i in listed)


@settings(max_examples=100, deadline=None)
@given(st.lists(row, max_size=40), st.sampled_from([None, "dga", "nso"]))
def test_the_next_due_are_the_nearest_open_deadlines(raw, owner):
    rows = [{"_id": f"M-{i:03d}", **r} for i, r in enumerate(raw)]
    snapshots, ids = overview.build_snapshots(rows)
    snapshots = overview.with_items(snapshots, {r["_id"]: r for r in rows if r["_id"] in ids})
    got = [i["_id"] for i in snapshots.get(owner or overview.ALL, {"next_due": []})["next_due"]]
    open_ = sorted((r["open_deadline"], r["_id"]) for r in rows
                   if r["open_deadline"] is not None and (owner is None or r["owner_agency"] == owner))
    assert got == [mid for _, mid in open_[:overview.NEXT_DUE]]
