"""Ease and trust (optional 1-5 items): rolled up with their own answer counts, reported per cell and overall
like satisfaction, suppressed for agency readers by their own answer counts as well as the responses'."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from services.contracts.envelope import make_event
from services.feedback import disclosure, domain
from services.feedback.metrics import build_families

TYPE = "feedback.response.submitted"


def event(**data):
    base = {"agency": "dga", "service_name": "ต่อใบอนุญาต", "channel": "online_web", "satisfaction": 4,
            "tech_difficulty": "none", "aware_of_digital_channels": True, "age_group": "25_34", "submitted_at": "2026-03-01T10:00:00+07:00"}
    base.update({k: v for k, v in data.items() if v is not None})
    return make_event(TYPE, base, agency="dga", source="/agencies/dga/survey", id=uuid.uuid4().hex,
                      time=datetime.now(UTC))


def stored(**data):
    return domain.response_document(domain.prepare(event(**data)))


def test_items_are_counted_over_the_responses_that_answered_them():
    docs = [stored(ease=5, trust=2), stored(ease=4), stored(trust=5), stored()]
    totals, daily = domain.rollup_deltas(docs)
    inc = totals["online_web|25_34"].inc
    assert {k: v for k, v in inc.items() if k.startswith(("ease", "trust"))} == \
        {"ease_5": 1, "ease_4": 1, "ease_sum": 9, "trust_2": 1, "trust_5": 1, "trust_sum": 7}
    assert daily["2026-03-01|*"].inc["cells.online_web|25_34.ease_sum"] == 9
    cell = domain.Cell.from_counts("25_34", "online_web", inc).as_dict()
    assert cell["responses"] == 4 and cell["ease_responses"] == 2 and cell["trust_responses"] == 2
    assert cell["mean_ease"] == 4.5 and cell["share_ease_agree"] == 1.0
    assert cell["mean_trust"] == 3.5 and cell["share_trust_agree"] == 0.5
    assert cell["trust_levels"] == {"1": 0, "2": 1, "3": 0, "4": 0, "5": 1}
    none = domain.Cell.from_counts("25_34", "online_web", {"responses": 3, "sat_4": 3, "satisfaction_sum": 12}).as_dict()
    assert none["mean_ease"] is None and none["share_trust_agree"] is None and none["ease_responses"] == 0


answers = st.lists(st.tuples(st.sampled_from(["online_web", "walk_in"]), st.sampled_from(["25_34", "60_plus"]),
                             st.none() | st.integers(1, 5), st.none() | st.integers(1, 5)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(answers)
def test_overall_and_cells_equal_a_direct_computation_and_the_metrics(rows):
    docs = [stored(channel=c, age_group=a, ease=e, trust=t) for c, a, e, t in rows]
    totals, _ = domain.rollup_deltas(docs)
    cells = [domain.Cell.from_counts(d.keys["age_group"], d.keys["channel"], d.inc) for d in totals.values()]
    total = domain.overall(cells).as_dict()
    for item, index in (("ease", 2), ("trust", 3)):
        given_answers = [r[index] for r in rows if r[index] is not None]
        assert total[f"{item}_responses"] == len(given_answers)
        if given_answers:
            assert total[f"mean_{item}"] == round(sum(given_answers) / len(given_answers), 3)
            assert total[f"share_{item}_agree"] == round(sum(a >= 4 for a in given_answers) / len(given_answers), 4)
        else:
            assert total[f"mean_{item}"] is None
        docs_for_metrics = [{**d.keys, **d.inc} for d in totals.values()]
        fam = {f.name: f for f in build_families(docs_for_metrics)}[f"newnormal_feedback_{item}"]
        count = sum(s.value for s in fam.samples if s.name.endswith("_count"))
        summed = sum(s.value for s in fam.samples if s.name.endswith("_sum"))
        assert (count, summed) == (len(given_answers), sum(given_answers))


def cell(age, channel, n, ease_answers=0, trust_answers=None):
    trust_answers = n if trust_answers is None else trust_answers
    return domain.Cell(age, channel, n, n, 5 * n, 0, n, (0, 0, 0, 0, n),
                       ease=domain.ItemCounts((0, 0, 0, 0, ease_answers), 5 * ease_answers),
                       trust=domain.ItemCounts((0, 0, 0, 0, trust_answers), 5 * trust_answers))


def test_few_answers_in_a_published_cell_hide_that_item_with_a_complement_and_nothing_else():
    # Every cell is big enough to publish; only 2 people answered ease in the first.
    cells = [cell("25_34", "walk_in", 40, ease_answers=2), cell("25_34", "online_web", 40, ease_answers=12),
             cell("60_plus", "walk_in", 40, ease_answers=30)]
    plan = disclosure.plan(cells, 10)
    assert plan.cells == frozenset() and not plan.overall
    shown = [disclosure.cell_dict(c, plan) for c in cells]
    # The 2 answers and the next smallest (12) are hidden: overall minus the published cell is 14 answers.
    assert [s["mean_ease"] for s in shown] == [None, None, 5.0]
    assert [s["ease_responses"] for s in shown] == [None, None, 30]
    assert all(s["mean_trust"] == 5.0 and s["responses"] == 40 and not s["suppressed"] for s in shown)
    total = disclosure.overall_dict(domain.overall(cells), plan)
    assert total["mean_ease"] == 5.0 and total["ease_responses"] == 44
    assert plan.as_dict()["items"] == {"ease": {"suppressed_cells": 2, "overall_suppressed": False},
                                       "trust": {"suppressed_cells": 0, "overall_suppressed": False}}


def test_a_cell_hidden_for_its_responses_hides_its_items_and_few_answers_overall_hide_the_overall_item():
    cells = [cell("25_34", "walk_in", 3, ease_answers=3), cell("25_34", "online_web", 40, ease_answers=4),
             cell("60_plus", "walk_in", 40, ease_answers=2)]
    plan = disclosure.plan(cells, 10)
    shown = {(c.age_group, c.channel): disclosure.cell_dict(c, plan) for c in cells}
    assert all(s["mean_ease"] is None for s in shown.values())
    total = disclosure.overall_dict(domain.overall(cells), plan)
    assert plan.hides(cells[0]) and not plan.overall
    assert total["mean_ease"] is None and total["ease_responses"] is None  # 9 answers in all: fewer than 10
    assert total["mean_trust"] is not None


def test_the_programme_office_sees_every_item_figure():
    cells = [cell("25_34", "walk_in", 1, ease_answers=1)]
    shown = disclosure.cell_dict(cells[0], disclosure.NONE)
    assert shown["mean_ease"] == 5.0 and shown["ease_responses"] == 1


def test_a_plain_suppression_without_item_plans_hides_the_items():
    plan = disclosure.Suppression(10, frozenset(), False)
    shown = disclosure.cell_dict(cell("25_34", "walk_in", 40, ease_answers=40), plan)
    assert shown["responses"] == 40 and shown["mean_ease"] is None


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 60), st.integers(0, 60)), min_size=1, max_size=8), st.integers(2, 15))
def test_no_hidden_item_group_is_smaller_than_the_threshold(sizes, k):
    cells = [cell(age, ch, n, ease_answers=min(e, n))
             for (n, e), (age, ch) in zip(sizes, [(a, c) for a in ("25_34", "60_plus") for c in
                                                  ("online_web", "walk_in", "mobile_app", "call_center")], strict=False)]
    plan = disclosure.plan(cells, k)
    shown = [disclosure.cell_dict(c, plan) for c in cells]
    total = disclosure.overall_dict(domain.overall(cells), plan)
    published = [s for s in shown if s["ease_responses"] is not None]
    for s in published:
        assert s["ease_responses"] == 0 or s["ease_responses"] >= k
    if total["ease_responses"] is not None:
        residual = total["ease_responses"] - sum(s["ease_responses"] for s in published)
        assert residual == 0 or residual >= k
        assert total["ease_responses"] == 0 or total["ease_responses"] >= k
